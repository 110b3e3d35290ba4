"""Running lmms-eval 0.7.3 itself (its CLI, in its own venv) on a local VideoMME-layout task.

Why a subprocess in another venv: lmms-eval's model classes need its dependencies (qwen-vl-utils,
accelerate, loguru, opencv, ``filelock<4``), which the main venv does not carry; ``make
test-lmms`` builds ``.venv-lmms`` from requirements-lmms.txt and points HARNESS_LMMS_PYTHON at it.
The task is our own small YAML that calls lmms-eval's own videomme functions (prompt, visual,
scoring, aggregation) on a local parquet, so only the data differs from ``--tasks videomme``.

Traps (met on this machine): with filelock 4 lmms-eval logs an import error and exits 0 with no
results, so success is judged by its samples file, never by its exit code; on CPU it needs
``device_map=cpu`` in ``--model_args``; its Qwen classes hard-code bfloat16.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.video.writer import write_video

TASK = "videomme_local"
# (frames, fps): 64 at 25 fps (nearest vs floor indices differ), 25 frames (an odd count: the
# even-count rule matters), 300 at 2 fps (the two fps conventions give temporal positions up to 8 apart).
VIDEOS = ((64, 25.0), (25, 25.0), (300, 2.0))
# lmms-eval's Qwen3-VL class asks qwen-vl-utils for exactly 32 frames: every clip has at least 32
QWEN3_VIDEOS = ((64, 25.0), (33, 10.0), (300, 2.0))

TASK_YAML = """\
dataset_path: parquet
dataset_kwargs:
  data_files:
    test: {parquet}
task: {task}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.videomme_doc_to_visual
doc_to_text: !function utils.videomme_doc_to_text
doc_to_target: "answer"
generation_kwargs:
  max_new_tokens: 16
  temperature: 0
  top_p: 1.0
  num_beams: 1
  do_sample: false
process_results: !function utils.videomme_process_results
metric_list:
  - metric: videomme_perception_score
    aggregation: !function utils.videomme_aggregate_results
    higher_is_better: true
lmms_eval_specific_kwargs:
  default:
    pre_prompt: ""
    post_prompt: "\\nAnswer with the option's letter from the given choices directly."
  qwen3_vl:
    format: "qwen3_vl"
    pre_prompt: "Question: "
    post_prompt: "Answer with the option letter only."
"""


def lmms_python() -> str:
    """The lmms-eval venv's python (HARNESS_LMMS_PYTHON), or skip saying how to get one."""
    path = os.environ.get("HARNESS_LMMS_PYTHON")
    if not path:
        pytest.skip("HARNESS_LMMS_PYTHON is not set: `make test-lmms` builds .venv-lmms and runs these tests")
    if not Path(path).is_file():
        pytest.fail(f"HARNESS_LMMS_PYTHON={path} does not exist (make test-lmms builds it)")
    return path


def make_videomme(hf_home: Path, videos: tuple[tuple[int, float], ...] = VIDEOS) -> Path:
    """Videos in lmms-eval's unzip dir ``$HF_HOME/videomme/data`` + the parquet; returns the data dir.

    Moving noise (so every frame differs and the tiny model's answer depends on which frames it
    sees), two questions per video, real Video-MME category names (lmms-eval's aggregation
    only knows those).
    """
    root = hf_home / "videomme"
    rng = np.random.default_rng(0)
    rows = []
    for v, (count, fps) in enumerate(videos):
        vid = f"vid{v}"
        base = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        write_video(root / "data" / f"{vid}.mp4", (np.roll(base, 5 * t + 3 * v, axis=1) for t in range(count)), fps=fps)
        for q in range(2):
            rows.append({
                "video_id": f"00{v}", "duration": "short", "domain": "Knowledge",
                "sub_category": "Humanity & History", "url": f"https://www.youtube.com/watch?v={vid}",
                "videoID": vid, "question_id": f"00{v}-{q + 1}", "task_type": "Counting Problem",
                "question": f"Question {q + 1} about clip {v}?",
                "options": [f"A. apple {q}", f"B. banana {q}", f"C. cherry {q}", f"D. date {q}"],
                "answer": "ABCD"[(v + q) % 4],
            })
    (root / "videomme").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "videomme" / "test-00000-of-00001.parquet")
    return root


def write_task(task_dir: Path, data_dir: Path) -> Path:
    """A local task YAML (+ a utils.py re-exporting lmms-eval's own videomme functions)."""
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / "utils.py").write_text("from lmms_eval.tasks.videomme.utils import *  # noqa: F403\n")
    parquet = data_dir / "videomme" / "test-00000-of-00001.parquet"
    (task_dir / f"{TASK}.yaml").write_text(TASK_YAML.format(parquet=parquet, task=TASK))
    return task_dir


@dataclass
class LmmsRun:
    outputs: dict[str, str]  # question_id -> generated text (lmms-eval's "resps")
    score: float  # videomme_perception_score from lmms-eval's results file
    samples: list[dict]  # the raw sample log lines
    log: str


def _text(resps) -> str:
    """lmms-eval logs one response as a string or nested in lists, by version."""
    while isinstance(resps, list):
        (resps,) = resps
    return resps


def run_lmms_eval(python: str, model: str, model_args: str, task_dir: Path, hf_home: Path, out: Path,
                  env: dict[str, str] | None = None, timeout: int = 600, extra: tuple[str, ...] = ()) -> LmmsRun:
    """``python -m lmms_eval eval`` on the local task; fails the test naming the log when no samples came."""
    cmd = [python, "-m", "lmms_eval", "eval", "--model", model, "--model_args", model_args,
           "--tasks", TASK, "--include_path", str(task_dir), "--batch_size", "1",
           "--log_samples", "--output_path", str(out), *extra]
    run_env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    samples_files = sorted(out.rglob(f"*_samples_{TASK}.jsonl"))
    results_files = sorted(out.rglob("*_results.json"))
    if not samples_files or not results_files:
        pytest.fail(f"lmms-eval wrote no samples/results (exit {proc.returncode}); its log ends:\n{log[-4000:]}")
    samples = [json.loads(line) for line in samples_files[-1].read_text().splitlines() if line.strip()]
    # "resps": the model's text as generated; "filtered_resps": after the task's filters (stripped).
    # The log keeps "resps" only where the two differ.
    outputs = {s["videomme_perception_score"]["question_id"]: _text(s.get("resps", s["filtered_resps"]))
               for s in samples}
    results = json.loads(results_files[-1].read_text())["results"][TASK]
    return LmmsRun(outputs, float(results["videomme_perception_score,none"]), samples, log)


QWEN_VL_UTILS_SCRIPT = """
import json, sys
import numpy as np
from qwen_vl_utils import process_vision_info
path, nframes, min_pixels, max_pixels, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
messages = [{"role": "user", "content": [{"type": "video", "video": path, "nframes": nframes,
             "min_pixels": min_pixels, "max_pixels": max_pixels}, {"type": "text", "text": "q"}]}]
_, videos, _ = process_vision_info(messages, return_video_kwargs=True, return_video_metadata=True)
video, meta = videos[0]
np.save(out + ".npy", video.permute(0, 2, 3, 1).numpy())
indices = [int(i) for i in meta["frames_indices"]]
json.dump({"indices": indices, "fps": float(meta["fps"]), "total": int(meta["total_num_frames"]),
           "sampled_fps": len(indices) / meta["total_num_frames"] * float(meta["fps"])}, open(out + ".json", "w"))
"""


def qwen_vl_utils_video(python: str, video: Path, nframes: int, min_pixels: int, max_pixels: int,
                        out: Path) -> tuple[np.ndarray, dict]:
    """qwen-vl-utils' own ``process_vision_info`` on one video, with the chat class's video kwargs.

    Returns its frames (T, H, W, 3, as float tensors holding integers) and its metadata, with the
    fps the processor derives from that metadata (``VideoMetadata.sampled_fps``).
    """
    proc = subprocess.run([python, "-c", QWEN_VL_UTILS_SCRIPT, str(video), str(nframes), str(min_pixels),
                           str(max_pixels), str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        pytest.fail(f"qwen-vl-utils failed on {video}:\n{proc.stderr[-3000:]}")
    return np.load(str(out) + ".npy"), json.loads(Path(str(out) + ".json").read_text())


HF_VIDEO_SCRIPT = """
import json, sys
import numpy as np
from transformers import AutoProcessor
model, path, num_frames, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
processor = AutoProcessor.from_pretrained(model)
video = processor.video_processor(videos=[path], do_sample_frames=True, num_frames=num_frames,
                                  return_tensors="pt", return_metadata=True)
np.save(out + ".npy", video["pixel_values_videos"][0].numpy())
json.dump({"indices": [int(i) for i in video["video_metadata"][0].frames_indices]}, open(out + ".json", "w"))
"""


def hf_video_pixels(python: str, model: Path, video: Path, num_frames: int, out: Path) -> tuple[np.ndarray, list[int]]:
    """The checkpoint's own HF video processor on the video PATH, as lmms-eval's ``internvl_hf``
    calls it (``do_sample_frames=True, num_frames``): transformers decodes it (torchcodec),
    samples and resizes. Returns its pixel_values (T, 3, S, S) and the frame indices it took."""
    proc = subprocess.run([python, "-c", HF_VIDEO_SCRIPT, str(model), str(video), str(num_frames), str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        pytest.fail(f"the HF video processor failed on {video}:\n{proc.stderr[-3000:]}")
    return np.load(str(out) + ".npy"), json.loads(Path(str(out) + ".json").read_text())["indices"]


def require_torchcodec(python: str, video: Path) -> None:
    """Skip, saying why, when torchcodec in the lmms-eval venv cannot decode ``video``: it loads the
    system FFmpeg libraries, which ``make test-lmms`` installs when it can (target ffmpeg-libs)."""
    code = "import sys; from torchcodec.decoders import VideoDecoder; VideoDecoder(sys.argv[1]).get_frame_at(0)"
    proc = subprocess.run([python, "-c", code, str(video)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"torchcodec cannot decode video in {python} ({last[:300]}): lmms-eval's internvl_hf needs it "
                    "and the system FFmpeg libraries (apt-get install ffmpeg; `make test-lmms` tries)")
