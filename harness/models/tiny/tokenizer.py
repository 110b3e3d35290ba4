"""Train a small byte-level BPE tokenizer on the fly and save it in HF layout.

Why: tests and the demo must build tiny MLLMs with NO network, and every family's processor
looks its placeholder tokens up in the tokenizer (a Qwen processor given a tokenizer without
``<|video_pad|>`` silently uses id 0). So each tiny builder trains a real tokenizer here, with
its family's special tokens added as single ids, and saves ``tokenizer.json`` +
``tokenizer_config.json`` that ``AutoTokenizer``/``AutoProcessor`` load offline.

Byte-level BPE means any prompt text encodes (no unknown token), and decoding is lossless.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# A fixed, varied corpus: question/answer phrasing the benchmarks use, option letters, digits.
_BASE_TEXT = (
    "What is happening in the video? Answer with the option's letter from the given choices directly.",
    "The person picks up a red cup, walks to the table and puts it down next to the blue box.",
    "A. the cat  B. the dog  C. a bird  D. nobody  E. a car",
    "How many times does the ball bounce? 0 1 2 3 4 5 6 7 8 9 10 12 20 100",
    "Describe the scene in one sentence. Where is the camera moving? left right up down",
    "system user assistant You are a helpful assistant.",
    "seconds frame video image question answer yes no true false before after during",
)
_WORDS = " ".join(
    (
        "the a an of to in on at with and or but is are was were be been it this that these those "
        "man woman child people hand door window kitchen street car bike ball cup box table chair "
        "open close walk run jump sit stand hold throw catch move turn look point cook eat drink "
        "red green blue yellow black white small large first last next then finally because why how",
    )
).split(" ")


def default_corpus(seed: int = 0, n_sentences: int = 400) -> list[str]:
    """The fixed sentences plus seeded random word sequences (deterministic for a given seed)."""
    rng = random.Random(seed)
    lines = list(_BASE_TEXT)
    for _ in range(n_sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        lines.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ","]))
    return lines


def train_bpe(
    special_tokens: Sequence[str],
    *,
    vocab_size: int = 1024,
    corpus: Iterable[str] | None = None,
    seed: int = 0,
) -> Tokenizer:
    """A byte-level BPE ``tokenizers.Tokenizer`` whose first ids are ``special_tokens`` (in order)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus) if corpus is not None else default_corpus(seed), trainer=trainer)
    return tok


def train_tokenizer(
    out_dir: str | Path,
    *,
    special_tokens: Sequence[str],
    eos_token: str,
    pad_token: str | None = None,
    bos_token: str | None = None,
    unk_token: str | None = None,
    extra_special_tokens: dict[str, str] | None = None,
    chat_template: str | None = None,
    vocab_size: int = 1024,
    model_max_length: int = 32768,
    seed: int = 0,
) -> PreTrainedTokenizerFast:
    """Train, wrap as a transformers fast tokenizer, save into ``out_dir`` and return it.

    ``special_tokens`` must list every token the family's processor/chat template uses
    (eos/pad/bos included); they become single, never-split ids. ``extra_special_tokens``
    maps attribute names to tokens (e.g. InternVL's ``{"context_image_token": "<IMG_CONTEXT>"}``),
    which transformers exposes as ``tokenizer.<name>`` / ``tokenizer.<name>_id``; every value
    must also appear in ``special_tokens``.
    """
    named = [t for t in (eos_token, pad_token, bos_token, unk_token) if t is not None]
    named += list((extra_special_tokens or {}).values())
    missing = [t for t in named if t not in special_tokens]
    if missing:
        raise ValueError(f"tokens {missing} are used as special tokens but not listed in special_tokens")
    raw = train_bpe(special_tokens, vocab_size=vocab_size, seed=seed)
    kwargs: dict = {
        "tokenizer_object": raw,
        "eos_token": eos_token,
        "pad_token": pad_token if pad_token is not None else eos_token,
        "model_max_length": model_max_length,
    }
    if bos_token is not None:
        kwargs["bos_token"] = bos_token
    if unk_token is not None:
        kwargs["unk_token"] = unk_token
    if extra_special_tokens:
        kwargs["extra_special_tokens"] = dict(extra_special_tokens)
    tokenizer = PreTrainedTokenizerFast(**kwargs)
    # Mark the remaining family tokens special so decode(skip_special_tokens=True) drops them.
    others = [t for t in special_tokens if t not in named]
    if others:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": others}, replace_extra_special_tokens=False
        )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    return tokenizer
