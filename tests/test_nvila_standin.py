"""A tiny STAND-IN for the NVILA-8B-HD-Video snapshot, written by the tests (not NVIDIA's code).

It has the snapshot's entry points (``config.json`` with ``auto_map``, ``configuration_nvila.py``,
``modeling_nvila.py``, ``processing_nvila.py``, loaded with ``trust_remote_code``) and the
behaviour the adapter relies on, as documented by the model card and public runs: processor
kwargs (frames, thumbnails, tiles, per-tile/thumbnail gazing ratios and task-loss requirements,
AutoGaze batch size, ``autogaze_model_id``), a ``_autogaze_model`` called with the reference
AutoGaze forward contract, ``gazing_info`` with ``*_tiles`` / ``*_thumbnails`` lists, one
``<vila/video>`` placeholder per LLM visual token (3x3 token shuffle of the kept gazes per
frame), ``AutoModel.from_pretrained(..., max_batch_size_siglip=)`` and ``model.generate(**inputs)``
returning prompt + new ids. Its vision tower is our gazed SigLIP on a tiny random SigLIP, its LLM
a tiny random Qwen2: answers are meaningless, only the plumbing is real.

The stand-in's own gaze model is either a pixel-variance gazer (default) or, when the AutoGaze
directory holds ``replay.safetensors``, a replay of the REFERENCE AutoGaze's recorded outputs
(from the parity fixture) -- which lets a test check that our AutoGaze, swapped in, gives the
processor exactly the reference's gazes.

This module only builds files; its single test checks the stand-in loads through the Auto
classes (so the other NVILA tests exercise real remote-code loading).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CONFIGURATION = """
from transformers import PretrainedConfig


class NVILAStandinConfig(PretrainedConfig):
    model_type = "nvila_standin"

    def __init__(self, vision_cfg=None, text_cfg=None, video_token_id=1, target_scales=(32, 64, 112, 224),
                 target_patch_size=16, **kwargs):
        self.vision_cfg = dict(vision_cfg or {})
        self.text_cfg = dict(text_cfg or {})
        self.video_token_id = video_token_id
        self.target_scales = list(target_scales)
        self.target_patch_size = target_patch_size
        super().__init__(**kwargs)
"""

MODELING = """
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

from harness.models.gazed_siglip import GazedSiglipVisionEncoder, GazingInfo

from .configuration_nvila import NVILAStandinConfig

SHUFFLE = 9  # 3x3 token shuffle: 9 consecutive kept gazes of a frame -> one LLM token


class GazedTower(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.siglip = SiglipVisionModel(SiglipVisionConfig(**config.vision_cfg))
        self.scales = list(config.target_scales)

    def forward(self, clips, gazing):
        enc = GazedSiglipVisionEncoder(self.siglip, scales=self.scales, attn_type="block_causal")
        return enc(clips, gazing)


class NVILAStandinModel(PreTrainedModel):
    config_class = NVILAStandinConfig
    base_model_prefix = "standin"

    def __init__(self, config, max_batch_size_siglip=32):
        super().__init__(config)
        self.max_batch_size_siglip = int(max_batch_size_siglip)
        self.vision_tower = GazedTower(config)
        width = config.vision_cfg["hidden_size"]
        self.mm_projector = nn.Linear(width * SHUFFLE, config.text_cfg["hidden_size"])
        self.llm = Qwen2ForCausalLM(Qwen2Config(**config.text_cfg))
        self.post_init()

    def _gazing(self, gi, part, v, clips):
        n = sum((s // self.config.target_patch_size) ** 2 for s in self.config.target_scales)
        if not gi or gi.get(f"gazing_pos_{part}") is None:
            return GazingInfo.full(clips.shape[0], clips.shape[1], _Layout(self.config.target_scales,
                                                                           self.config.target_patch_size))
        counts = gi[f"num_gazing_each_frame_{part}"][v]
        return GazingInfo(gi[f"gazing_pos_{part}"][v], gi[f"if_padded_gazing_{part}"][v], counts[0])

    def _encode(self, clips, gazing):
        feats = []
        b = self.max_batch_size_siglip
        for i in range(0, clips.shape[0], b):
            sub = GazingInfo(gazing.gazing_pos[i:i + b], gazing.if_padded_gazing[i:i + b], gazing.num_gazing_each_frame)
            out = self.vision_tower(clips[i:i + b].to(self.dtype), sub)
            counts = sub.num_gazing_each_frame.tolist()
            for f, pad in zip(out.features, sub.if_padded_gazing):
                for chunk, p in zip(f.split(counts), pad.split(counts)):
                    real = chunk[~p]
                    extra = (-real.shape[0]) % SHUFFLE
                    real = F.pad(real, (0, 0, 0, extra))
                    feats.append(self.mm_projector(real.reshape(-1, SHUFFLE * real.shape[-1])))
        return feats

    def visual_embeds(self, pixel_values_videos_tiles, pixel_values_videos_thumbnails, gazing_info):
        feats = []
        for v, (tiles, thumbs) in enumerate(zip(pixel_values_videos_tiles, pixel_values_videos_thumbnails)):
            feats += self._encode(tiles, self._gazing(gazing_info, "tiles", v, tiles))
            feats += self._encode(thumbs, self._gazing(gazing_info, "thumbnails", v, thumbs))
        return torch.cat(feats, 0)

    def forward(self, input_ids, attention_mask=None, pixel_values_videos_tiles=None,
                pixel_values_videos_thumbnails=None, num_spatial_tiles_each_video=None, gazing_info=None, **kw):
        embeds = self._embed(input_ids, pixel_values_videos_tiles, pixel_values_videos_thumbnails, gazing_info)
        return self.llm(inputs_embeds=embeds, attention_mask=attention_mask, **kw)

    def _embed(self, input_ids, tiles, thumbs, gazing_info):
        embeds = self.llm.get_input_embeddings()(input_ids)
        visual = self.visual_embeds(tiles, thumbs, gazing_info).to(embeds.dtype)
        slots = input_ids[0] == self.config.video_token_id
        if int(slots.sum()) != visual.shape[0]:
            raise ValueError(f"{int(slots.sum())} video tokens in the prompt but {visual.shape[0]} visual features")
        embeds[0, slots] = visual
        return embeds

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, pixel_values_videos_tiles=None,
                 pixel_values_videos_thumbnails=None, num_spatial_tiles_each_video=None, gazing_info=None,
                 max_new_tokens=16, do_sample=False, **kw):
        embeds = self._embed(input_ids, pixel_values_videos_tiles, pixel_values_videos_thumbnails, gazing_info)
        new = self.llm.generate(inputs_embeds=embeds, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                                do_sample=False, pad_token_id=self.llm.config.eos_token_id, **kw)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)


class _Layout:
    def __init__(self, scales, patch):
        self.scales, self.patch_size = tuple(scales), patch
        self.tokens_per_frame = sum((s // patch) ** 2 for s in scales)
"""

PROCESSING = '''
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer

SHUFFLE = 9


def _ids_per_frame(scales, patch):
    return sum((s // patch) ** 2 for s in scales)


class _VarianceGaze(nn.Module):
    """Own gazer of the stand-in, reference AutoGaze call contract: highest-variance patches per frame."""

    def __init__(self):
        super().__init__()
        self.config = type("Cfg", (), {"max_num_frames": 16, "scales": "32+64+112+224"})()

    def forward(self, inputs, target_scales=None, target_patch_size=None, gazing_ratio=None,
                task_loss_requirement=None, **kw):
        video = inputs["video"]
        b, t = video.shape[:2]
        scales, p = list(target_scales), int(target_patch_size)
        n = _ids_per_frame(scales, p)
        ratios = gazing_ratio if isinstance(gazing_ratio, (list, tuple)) else [gazing_ratio] * t
        frames = video.flatten(0, 1)
        scores = []
        for s in scales:
            x = F.interpolate(frames, size=(s, s), mode="bicubic", align_corners=False)
            scores.append(F.unfold(x, p, stride=p).var(1))
        scores = torch.cat(scores, 1).view(b, t, n)
        pos, pad, counts = [], [], []
        for f in range(t):
            k = max(1, int(float(ratios[f]) * n))
            ids = scores[:, f].topk(k, dim=-1).indices.sort(-1).values
            pos.append(ids + f * n)
            pad.append(torch.zeros_like(ids, dtype=torch.bool))
            counts.append(k)
        return {"gazing_pos": torch.cat(pos, 1), "if_padded_gazing": torch.cat(pad, 1),
                "num_gazing_each_frame": torch.tensor(counts), "scales": scales,
                "num_vision_tokens_each_frame": n}


class _ReplayGaze(nn.Module):
    """Replays the REFERENCE AutoGaze's recorded outputs for the recorded input (parity fixture)."""

    def __init__(self, directory):
        super().__init__()
        from safetensors.torch import load_file

        self.rec = load_file(str(Path(directory) / "replay.safetensors"))
        self.kwargs = json.loads((Path(directory) / "replay.json").read_text())
        self.config = type("Cfg", (), {"max_num_frames": 16, "scales": "32+64+112+224"})()

    def forward(self, inputs, gazing_ratio=None, task_loss_requirement=None, **kw):
        if not torch.equal(inputs["video"], self.rec["video"]):
            raise ValueError("replay gaze: not the recorded input clip")
        if gazing_ratio != self.kwargs.get("gazing_ratio") or task_loss_requirement != self.kwargs.get(
                "task_loss_requirement"):
            raise ValueError(f"replay gaze: recorded for {self.kwargs}, called with {gazing_ratio}/{task_loss_requirement}")
        return {k: self.rec[k] for k in ("gazing_pos", "if_padded_gazing", "num_gazing_each_frame")}


def _load_autogaze(model_id):
    if model_id and (Path(model_id) / "replay.safetensors").is_file():
        return _ReplayGaze(model_id)
    return _VarianceGaze()


class NVILAStandinProcessor:
    def __init__(self, tokenizer, tile_size=224, target_scales=(32, 64, 112, 224), target_patch_size=16,
                 num_video_frames=128, num_video_frames_thumbnail=64, max_tiles_video=48,
                 gazing_ratio_tile=None, task_loss_requirement_tile=0.6, gazing_ratio_thumbnail=1,
                 task_loss_requirement_thumbnail=None, max_batch_size_autogaze=16,
                 autogaze_model_id="nvidia/AutoGaze", clip_len=16):
        self.tokenizer = tokenizer
        self.tile_size, self.target_scales, self.target_patch_size = tile_size, list(target_scales), target_patch_size
        self.num_video_frames, self.num_video_frames_thumbnail = num_video_frames, num_video_frames_thumbnail
        self.max_tiles_video, self.clip_len = max_tiles_video, clip_len
        self.gazing_ratio_tile = [0.2] + [0.06] * 15 if gazing_ratio_tile is None else gazing_ratio_tile
        self.task_loss_requirement_tile = task_loss_requirement_tile
        self.gazing_ratio_thumbnail = gazing_ratio_thumbnail
        self.task_loss_requirement_thumbnail = task_loss_requirement_thumbnail
        self.max_batch_size_autogaze = max_batch_size_autogaze
        self.autogaze_model_id = autogaze_model_id
        self._autogaze_model = _load_autogaze(autogaze_model_id)
        self.calls = []  # (part, batch shape, ratio, requirement) of every gaze call, for tests

    @classmethod
    def register_for_auto_class(cls, auto_class="AutoProcessor"):
        pass  # what transformers calls on a remote-code processor class (ProcessorMixin has it)

    @classmethod
    def from_pretrained(cls, path, trust_remote_code=None, local_files_only=None, **kwargs):
        cfg = json.loads((Path(path) / "processor_config.json").read_text())
        cfg.pop("auto_map", None)
        cfg.pop("processor_class", None)
        cfg.update({k: v for k, v in kwargs.items() if k not in ("_from_auto", "revision", "code_revision")})
        return cls(AutoTokenizer.from_pretrained(path, local_files_only=True), **cfg)

    @property
    def per_frame(self):
        return _ids_per_frame(self.target_scales, self.target_patch_size)

    def _frames(self, video):
        if isinstance(video, str):
            import av

            with av.open(video) as c:
                return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        if isinstance(video, (list, tuple)):
            return np.stack([np.asarray(f.convert("RGB")) for f in video])
        raise TypeError(f"videos entries must be paths or lists of PIL images, got {type(video).__name__}")

    def _preprocess_videos(self, videos):
        if isinstance(videos, str):  # the model card's call: videos=video_path, one video
            videos = [videos]
        tiles_all, thumbs_all, spatial = [], [], []
        for video in videos:
            if torch.is_tensor(video):  # pre-tiled, already normalised (tests of the gaze hook)
                tiles_all.append(video)
                thumbs_all.append(video[0, :: max(1, video.shape[1] // self.num_video_frames_thumbnail)][:, None])
                spatial.append(1)
                continue
            frames = self._frames(video)
            idx = np.linspace(0, len(frames) - 1, min(self.num_video_frames, len(frames))).round().astype(int)
            x = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2).float() / 255 * 2 - 1
            h, w = frames.shape[1:3]
            rows, cols = max(1, round(h / self.tile_size)), max(1, round(w / self.tile_size))
            while rows * cols > self.max_tiles_video:
                rows, cols = (rows - 1, cols) if rows >= cols and rows > 1 else (rows, cols - 1)
            x = F.interpolate(x, size=(rows * self.tile_size, cols * self.tile_size), mode="bilinear")
            t = x.shape[0] - x.shape[0] % self.clip_len or x.shape[0]
            x = x[:t]
            s = self.tile_size
            tiles = x.view(t // self.clip_len, self.clip_len, 3, rows, s, cols, s).permute(3, 5, 0, 1, 2, 4, 6)
            tiles_all.append(tiles.reshape(-1, self.clip_len, 3, s, s))
            tidx = np.linspace(0, len(frames) - 1, min(self.num_video_frames_thumbnail, len(frames))).round().astype(int)
            th = torch.from_numpy(frames[tidx]).permute(0, 3, 1, 2).float() / 255 * 2 - 1
            thumbs_all.append(F.interpolate(th, size=(s, s), mode="bilinear")[:, None])
            spatial.append(rows * cols)
        return {"pixel_values_videos_tiles": tiles_all, "pixel_values_videos_thumbnails": thumbs_all,
                "num_spatial_tiles_each_video": spatial}

    def _gaze_part(self, clips, ratio, requirement, part):
        ratios = ratio if isinstance(ratio, (list, tuple)) else [ratio]
        if requirement is None and all(r is None or float(r) >= 1 for r in ratios):
            return None  # gazing off: every patch is encoded
        outs = []
        for i in range(0, clips.shape[0], self.max_batch_size_autogaze):
            batch = clips[i:i + self.max_batch_size_autogaze]
            r = list(ratio)[: batch.shape[1]] if isinstance(ratio, (list, tuple)) else ratio
            self.calls.append((part, tuple(batch.shape), r, requirement))
            outs.append(self._autogaze_model({"video": batch}, gazing_ratio=r, task_loss_requirement=requirement,
                                             target_scales=self.target_scales,
                                             target_patch_size=self.target_patch_size))
        counts = torch.stack([o["num_gazing_each_frame"] for o in outs]).max(0).values
        pos_rows, pad_rows = [], []
        for o in outs:  # re-pad every batch to the same slots per frame
            parts_p = o["gazing_pos"].split(o["num_gazing_each_frame"].tolist(), 1)
            parts_m = o["if_padded_gazing"].split(o["num_gazing_each_frame"].tolist(), 1)
            ps, ms = [], []
            for p, m, k in zip(parts_p, parts_m, counts.tolist()):
                extra = k - p.shape[1]
                ps.append(F.pad(p, (0, extra)))
                ms.append(F.pad(m, (0, extra), value=True))
            pos_rows.append(torch.cat(ps, 1))
            pad_rows.append(torch.cat(ms, 1))
        pos, pad = torch.cat(pos_rows), torch.cat(pad_rows)
        return pos, pad, counts.expand(clips.shape[0], -1).clone()

    def _get_gazing_info_from_videos(self, videos_inputs):
        gi = {k: [] for k in ("gazing_pos_tiles", "if_padded_gazing_tiles", "num_gazing_each_frame_tiles",
                              "gazing_pos_thumbnails", "if_padded_gazing_thumbnails",
                              "num_gazing_each_frame_thumbnails")}
        any_gaze = False
        for tiles, thumbs in zip(videos_inputs["pixel_values_videos_tiles"],
                                 videos_inputs["pixel_values_videos_thumbnails"]):
            for part, clips, ratio, req in (
                    ("tiles", tiles, self.gazing_ratio_tile, self.task_loss_requirement_tile),
                    ("thumbnails", thumbs, self.gazing_ratio_thumbnail, self.task_loss_requirement_thumbnail)):
                got = self._gaze_part(clips, ratio, req, part)
                if got is None:
                    for k in ("gazing_pos_", "if_padded_gazing_", "num_gazing_each_frame_"):
                        gi[k + part].append(None)
                    continue
                any_gaze = True
                gi["gazing_pos_" + part].append(got[0])
                gi["if_padded_gazing_" + part].append(got[1])
                gi["num_gazing_each_frame_" + part].append(got[2])
        for k in list(gi):
            if all(v is None for v in gi[k]):
                gi[k] = None
        return gi if any_gaze else None

    def _llm_tokens(self, clips, pos, pad, counts):
        if pos is None:
            return clips.shape[0] * clips.shape[1] * math.ceil(self.per_frame / SHUFFLE)
        total = 0
        for row in pad:
            for chunk in row.split(counts[0].tolist()):
                total += math.ceil(int((~chunk).sum()) / SHUFFLE)
        return total

    def __call__(self, text=None, videos=None, return_tensors="pt", **kw):
        vi = self._preprocess_videos(videos)
        gi = self._get_gazing_info_from_videos(vi)
        n = 0
        for v, (tiles, thumbs) in enumerate(zip(vi["pixel_values_videos_tiles"], vi["pixel_values_videos_thumbnails"])):
            for part, clips in (("tiles", tiles), ("thumbnails", thumbs)):
                got = [gi[k][v] if gi and gi[k] is not None else None
                       for k in (f"gazing_pos_{part}", f"if_padded_gazing_{part}", f"num_gazing_each_frame_{part}")]
                n += self._llm_tokens(clips, *got)
        video_token = self.tokenizer.video_token
        text = text.replace(video_token, video_token * n, 1)
        enc = self.tokenizer(text, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], **vi, "gazing_info": gi}

    def batch_decode(self, ids, **kw):
        return self.tokenizer.batch_decode(ids, **kw)
'''


def build_standin(
    out: Path, *, seed: int = 0, autogaze_model_id: str = "nvidia/AutoGaze", **processor: object
) -> Path:
    """Write the stand-in snapshot into ``out`` (random tiny weights, tokenizer trained here)."""
    from transformers import AutoConfig, AutoModel

    from harness.models.tiny.tokenizer import train_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    (out / "configuration_nvila.py").write_text(CONFIGURATION)
    (out / "modeling_nvila.py").write_text(MODELING)
    (out / "processing_nvila.py").write_text(PROCESSING)
    (out / "__init__.py").write_text("")
    tok = train_tokenizer(
        out,
        special_tokens=["<|endoftext|>", "<vila/video>"],
        eos_token="<|endoftext|>",
        extra_special_tokens={"video_token": "<vila/video>"},
        vocab_size=320,
    )
    video_id = tok.convert_tokens_to_ids("<vila/video>")
    config = {
        "model_type": "nvila_standin",
        "architectures": ["NVILAStandinModel"],
        "auto_map": {
            "AutoConfig": "configuration_nvila.NVILAStandinConfig",
            "AutoModel": "modeling_nvila.NVILAStandinModel",
            "AutoProcessor": "processing_nvila.NVILAStandinProcessor",
        },
        "video_token_id": video_id,
        "target_scales": [32, 64, 112, 224],
        "target_patch_size": 16,
        "vision_cfg": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 16,
            "attn_implementation": "sdpa",
        },
        "text_cfg": {
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "eos_token_id": tok.eos_token_id,
            "max_position_embeddings": 8192,
            "tie_word_embeddings": False,
        },
    }
    (out / "config.json").write_text(json.dumps(config, indent=1))
    proc_cfg = {
        "auto_map": {"AutoProcessor": "processing_nvila.NVILAStandinProcessor"},
        "processor_class": "NVILAStandinProcessor",
        "tile_size": 224,
        "target_scales": [32, 64, 112, 224],
        "target_patch_size": 16,
        "autogaze_model_id": autogaze_model_id,
        **processor,
    }
    (out / "processor_config.json").write_text(json.dumps(proc_cfg, indent=1))
    (out / "preprocessor_config.json").write_text(json.dumps(proc_cfg, indent=1))
    torch.manual_seed(seed)
    model = AutoModel.from_config(
        AutoConfig.from_pretrained(out, trust_remote_code=True), trust_remote_code=True
    )
    model.save_pretrained(out)
    (out / "config.json").write_text(json.dumps(config, indent=1))  # keep our auto_map exactly
    return out


def test_standin_loads_through_auto_classes_with_remote_code(tmp_path: Path) -> None:
    from transformers import AutoModel, AutoProcessor

    d = build_standin(tmp_path / "nvila")
    proc = AutoProcessor.from_pretrained(
        d, trust_remote_code=True, local_files_only=True, num_video_frames=16
    )
    model = AutoModel.from_pretrained(
        d, trust_remote_code=True, local_files_only=True, max_batch_size_siglip=3
    )
    assert type(proc).__name__ == "NVILAStandinProcessor" and proc.num_video_frames == 16
    assert type(model).__name__ == "NVILAStandinModel" and model.max_batch_size_siglip == 3
    assert proc.tokenizer.video_token == "<vila/video>"
