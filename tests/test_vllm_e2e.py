"""vLLM backend end to end: same Selection in -> same answer out as the transformers backend.

Runs where vLLM is importable (the vLLM venv, docs/vllm.md); skipped elsewhere with the reason.
For every family a tiny random model (heads regrouped to dim 32 for vLLM's CPU attention) is
served by ``VLLMBackend``; the transformers reference runs in the MAIN venv (transformers 5.24;
the adapters do not run under vLLM's pinned 5.19) through ``python -m
harness.backends.vllm.reference`` on the same directory, frames and keep masks. Greedy ids must
be equal and per-token logprobs equal up to float noise, for keep-all, a random 40% selection,
and one with a whole temporal group pruned (kept tokens at their UNPRUNED positions in both).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

# Small CPU engine settings; must be set before vLLM is imported. Harmless on a GPU.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

pytest.importorskip(
    "vllm",
    reason="vLLM is not installed here; the vLLM e2e test runs in the vLLM venv (docs/vllm.md, `make test-vllm`)",
)

from harness.backends.vllm import ROUTES, BatchItem, VLLMBackend  # noqa: E402
from harness.backends.vllm.tiny import build_vllm_tiny_model  # noqa: E402
from harness.pruning.selection import Selection  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FPS = 3.0
PROMPT = "What happens in the video?"
MAX_NEW = 4
ATOL = 2e-3  # float32 on both sides; different kernels (vLLM CPU attention vs torch SDPA)


def reference_python() -> str:
    """The python of an environment where the transformers adapters run (transformers >= 5.24)."""
    path = os.environ.get("HARNESS_REFERENCE_PYTHON") or str(REPO / ".venv" / "bin" / "python")
    if not Path(path).exists():
        pytest.skip(
            f"no transformers-backend python at {path} (set HARNESS_REFERENCE_PYTHON to the main venv's python)"
        )
    return path


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (8, 112, 112, 3), dtype=np.uint8)


def keeps_for(grid: tuple[int, int, int]) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(1)
    sparse = torch.rand(grid, generator=g) < 0.4
    sparse.view(-1)[0] = True
    emptied = sparse.clone()
    emptied[1] = False  # a whole temporal group (Qwen: 2 frames; LLaVA/InternVL: 1 frame) dropped
    return [None, sparse, emptied]


def run_reference(family: str, model_dir: Path, frames: np.ndarray, keeps: list, tmp: Path,
                  text_positions: str | None = None) -> list[dict]:
    np.save(tmp / "frames.npy", frames)
    torch.save(keeps, tmp / "keeps.pt")
    out = tmp / "reference.json"
    cmd = [
        reference_python(), "-m", "harness.backends.vllm.reference", "--family", family,
        "--model", str(model_dir), "--frames", str(tmp / "frames.npy"), "--fps", str(FPS),
        "--keep", str(tmp / "keeps.pt"), "--prompt", PROMPT, "--max-new-tokens", str(MAX_NEW),
        "--out", str(out), *(["--text-positions", text_positions] if text_positions else []),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise AssertionError(f"reference run failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


# 8 frames of 112 px at 3 fps: Qwen2.5-VL's temporal offsets reach 4 > the 4x4 grid's 3, so the two
# text_positions rules put the text differently; both sides default to "reference", and the
# installed-transformers rule is checked once on Qwen2.5-VL.
@pytest.mark.parametrize(("family", "text_positions"), [(f, None) for f in sorted(ROUTES)] + [("qwen2_5_vl", "transformers")])
def test_vllm_answers_equal_the_transformers_backend(family, text_positions, frames, tmp_path):
    model_dir = build_vllm_tiny_model(family, tmp_path / "model")
    backend = VLLMBackend.from_pretrained(
        family,
        str(model_dir),
        **({"text_positions": text_positions} if text_positions else {}),
        dtype="float32",
        max_model_len=1024,
        enforce_eager=True,
        max_num_seqs=4,
        max_num_batched_tokens=1024,
    )
    try:
        geometry = backend.token_geometry(*frames.shape[:3])
        keeps = keeps_for((geometry.grid_t, geometry.grid_h, geometry.grid_w))
        reference = run_reference(family, model_dir, frames, keeps, tmp_path, text_positions)
        selections = [None if k is None else Selection(geometry, k, pruner="random") for k in keeps]
        outputs = backend.generate_batch(
            [BatchItem(frames, s, PROMPT, FPS) for s in selections], max_new_tokens=MAX_NEW
        )
        # generate() is generate_batch() of one: same answer for one sample alone
        single = backend.generate(frames, selections[1], PROMPT, fps=FPS, max_new_tokens=MAX_NEW)
    finally:
        del backend
        gc.collect()

    assert single.extra["output_ids"] == outputs[1].extra["output_ids"]
    # a lone request always carries the LLM's time (vLLM's metrics, or the call's wall time)
    assert single.timings.get("generate", 0.0) > 0.0, single.timings
    assert single.extra["llm_timing"] in {"vllm_metrics", "wall_prefill_plus_decode"}
    for selection, out, ref in zip(selections, outputs, reference):
        assert out.extra["output_ids"] == ref["ids"], (family, selection is not None)
        np.testing.assert_allclose(out.extra["logprobs"], ref["logprobs"], atol=ATOL, err_msg=family)
        assert out.tokens.prompt == ref["prompt_len"]
        kept = geometry.total_tokens if selection is None else selection.num_kept
        newline = 1 if family == "llava_onevision" else 0
        assert (out.tokens.visual_after, out.tokens.generated) == (kept + newline, len(ref["ids"]))
        assert out.extra["positions"] == "unpruned"
        if family in ("qwen2_5_vl", "qwen3_vl"):
            assert out.extra["text_positions"] == (text_positions or "reference")
    # the selections differ enough to change the model's output distribution
    assert not np.allclose(outputs[0].extra["logprobs"], outputs[1].extra["logprobs"], atol=ATOL)


class _Bench:
    """A benchmark of ``n`` two-option questions (duck-typed: the runner reads these attributes only)."""

    name = "vllm-runner"
    split_keys: list[str] = []

    def __init__(self, n: int):
        from types import SimpleNamespace

        self.items = [SimpleNamespace(id=f"s{i}", video_path=f"v{i}.mp4", question=f"question {i}",
                                      options=["yes", "no"], answer="A", metadata={}) for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def samples(self, limit=None):
        yield from self.items[:limit]

    def build_prompt(self, sample, **kw):
        return f"{PROMPT} ({sample.question})"

    def extract_answer(self, output, sample, convention=None):
        letters = [c for c in output if c in "AB"]
        return letters[0] if letters else None


def _load_frames(path, frames_cfg):
    from harness.runner.components import DecodedVideo

    seed = int(Path(path).stem[1:])  # a different clip per sample
    n = int(frames_cfg.num_frames)
    frames = np.random.default_rng(seed).integers(0, 255, (n, 112, 112, 3), dtype=np.uint8)
    return DecodedVideo(frames=frames, indices=np.arange(n), timestamps=np.arange(n) / FPS, fps=FPS,
                        source_fps=FPS, source_size=(112, 112), decoder="synthetic", seconds=0.001)


def _run_batch_sizes(backend, family: str, model_dir: Path, out: Path, labels: list[str]):
    """Run the runner at batch_size 1 then 3 on one engine; records per batch size and call sizes."""
    from harness.runner.components import Components
    from harness.runner.config import load_config
    from harness.runner.engine import Evaluator
    from harness.runner.records import read_run_records
    from harness.runner.sharding import ShardInfo

    sizes: list[int] = []
    batch = backend.generate_batch
    backend.generate_batch = lambda items, **kw: sizes.append(len(items)) or batch(items, **kw)
    records = {}
    for size in (1, 3):
        cfg = load_config(data={
            "output_dir": str(out / f"b{size}"), "backend": "vllm",
            "model": {"family": family, "path": str(model_dir), "name": "m"},
            "benchmark": {"name": "vllm-runner"}, "frames": {"num_frames": 8},
            "generation": {"max_new_tokens": MAX_NEW, "batch_size": size},
            "pruners": ["none", {"name": "random", "budget": 0.4, "label": labels[1]}],
        })
        comps = Components(load_benchmark=lambda c: _Bench(3), load_adapter=lambda m, b, d, s: backend,
                           load_frames=_load_frames, evidence_scores=lambda *a: None)
        result = Evaluator(cfg, comps, ShardInfo(), progress=False).run()
        assert result.written == 6 and result.errors == 0
        records[size] = {lab: read_run_records(out / f"b{size}" / "m" / lab) for lab in labels}
    del backend.generate_batch
    return records, sizes


def _untimed(rec: dict, timing: set[str]) -> dict:
    """A record without its timing fields (the pruner's own ``selection.info.seconds`` included)."""
    out = {k: v for k, v in rec.items() if k not in timing}
    out["selection"] = {**rec["selection"], "info": {k: v for k, v in rec["selection"]["info"].items()
                                                     if k != "seconds"}}
    return out


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava_onevision"])
def test_runner_batched_generation_gives_the_records_of_one_by_one(family, tmp_path):
    """generation.batch_size through the real backend: same records as batch_size 1 (timings aside)."""
    model_dir = build_vllm_tiny_model(family, tmp_path / "model")
    backend = VLLMBackend.from_pretrained(family, str(model_dir), dtype="float32", max_model_len=1024,
                                          enforce_eager=True, max_num_seqs=4, max_num_batched_tokens=1024)
    labels = ["none", "random_b0.4"]
    try:
        records, sizes = _run_batch_sizes(backend, family, model_dir, tmp_path, labels)
    finally:
        del backend
        gc.collect()

    # generate() is generate_batch() of one: batch_size 1 makes 1 warm-up + 6 single calls; then
    # batch_size 3: 1 warm-up + 2 calls of 3 (3 samples x 2 runs)
    assert sizes == [1] * 8 + [3, 3]
    timing = {"latency", "finished", "latency_batched", "latency_amortized", "generation_extra"}
    for lab in labels:
        for one, three in zip(records[1][lab], records[3][lab], strict=True):
            assert three["latency_batched"] == 3 and "latency_batched" not in one
            assert _untimed(one, timing) == _untimed(three, timing), (family, lab, one["sample_id"])
            e1, e3 = one["generation_extra"], three["generation_extra"]
            assert e1["output_ids"] == e3["output_ids"]
            np.testing.assert_allclose(e1["logprobs"], e3["logprobs"], atol=ATOL)
    pruned = records[3][labels[1]]
    assert all(r["selection"]["kept"] < r["selection"]["total"] for r in pruned)
    assert all(r["tokens"]["visual_after"] < r["tokens"]["visual_before"] for r in pruned)
