"""Small bad inputs a new user meets: each is a warning or one line naming file/sample, never a crash."""

from __future__ import annotations

import json
import warnings

import av
import numpy as np
import pytest

from harness.cli.main import main
from harness.runner.components import load_frames
from harness.runner.config import FramesConfig
from harness.runner.records import iter_records
from harness.video.writer import write_video
from tests.test_bench_data import make_videomme

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gen(h: int, w: int, n: int = 4):
    return (np.full((h, w, 3), 40 * i, np.uint8) for i in range(n))


# ---------------------------------------------------------------- tiny decoded frames


def test_a_thin_video_decoded_tiny_warns_naming_the_file_and_sizes(tmp_path):
    thin = write_video(tmp_path / "thin.mp4", _gen(16, 2048))
    with pytest.warns(RuntimeWarning) as caught:
        video = load_frames(str(thin), FramesConfig(num_frames=2, resolution=64))
    assert video.frames.shape[1:3] == (1, 64)
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert msg.startswith(f"{thin}: frames decoded at 64x1 px (source 2048x16, frames.resolution=64)")
    normal = write_video(tmp_path / "ok.mp4", _gen(64, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_frames(str(normal), FramesConfig(num_frames=2, resolution=64))


# ---------------------------------------------------------------- gaze CLI and the writer


def test_gaze_on_a_1x1_video_works(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    src = write_video(tmp_path / "one.mp4", _gen(1, 1), codec="mpeg4")  # H.264 cannot hold 1x1
    out = tmp_path / "gaze.mp4"
    rc = main(["gaze", "--video", str(src), "--model", "tiny", "--out", str(out), "--clip-len", "4"])
    assert rc == 0, capsys.readouterr().err
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (2, 2, 3)  # the pixel, repeated to an even size


@pytest.mark.parametrize(
    ("frames", "kwargs", "match"),
    [
        ([np.zeros((0, 0, 3), np.uint8)], {}, r"cannot encode a frame of shape \(0, 0, 3\)"),
        ([np.zeros((4, 4), np.uint8)], {}, r"shape \(4, 4\); expected \(H, W, 3\)"),
        ([np.zeros((3, 4, 3), np.uint8)], {}, r"libx264 yuv420p needs an even width and height, got 4x3"),
        ([np.zeros((4, 4, 3), np.uint8), np.zeros((6, 4, 3), np.uint8)], {}, "frame size changed from 4x4 to 4x6"),
    ],
)
def test_the_writer_names_frames_it_cannot_encode(tmp_path, frames, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        write_video(tmp_path / "x.mp4", frames, **kwargs)
    assert str(info.value).startswith(str(tmp_path / "x.mp4"))


# ---------------------------------------------------------------- score: --out, predictions files


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_videomme(tmp_path_factory.mktemp("vm"), videos=False, subtitles=False)


def _preds(path, extra: bytes = b""):
    path.write_bytes(json.dumps({"question_id": "001-1", "output": "A"}).encode() + b"\n" + extra)
    return path


def test_score_out_with_a_trailing_slash_creates_the_directory(tmp_path, data_dir, capsys):
    preds = _preds(tmp_path / "p.jsonl")
    out = tmp_path / "new" / "dir"
    rc = main(["score", "--benchmark", "videomme", "--data-dir", str(data_dir), "--predictions", str(preds),
               "--out", f"{out}/"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "p.score.csv").is_file() and (out / "p.score.md").is_file()
    assert not (tmp_path / "new" / "dir.csv").exists()


def test_score_out_that_cannot_be_written_is_one_line(tmp_path, data_dir, capsys):
    preds = _preds(tmp_path / "p.jsonl")
    (tmp_path / "afile").write_text("")
    rc = main(["score", "--benchmark", "videomme", "--data-dir", str(data_dir), "--predictions", str(preds),
               "--out", f"{tmp_path / 'afile'}/sub/"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("run_eval.py score: cannot write ")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (b'{"question_id": "001-2", "output": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n",
         "p.jsonl:2: JSON nested too deeply to be a prediction"),
        (b'{"question_id": "001-2", "output": "caf\xe9"}\n', "p.jsonl:2: not UTF-8 text (byte 40 of the line)"),
    ],
)
def test_bad_predictions_lines_name_file_and_line(tmp_path, data_dir, capsys, extra, message):
    preds = _preds(tmp_path / "p.jsonl", extra)
    rc = main(["score", "--benchmark", "videomme", "--data-dir", str(data_dir), "--predictions", str(preds)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err == f"run_eval.py score: {tmp_path / message}"


def test_a_bom_before_the_first_line_is_accepted(tmp_path, data_dir, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_bytes(b"\xef\xbb\xbf" + json.dumps({"question_id": "001-1", "output": "A"}).encode() + b"\n")
    assert main(["score", "--benchmark", "videomme", "--data-dir", str(data_dir), "--predictions", str(preds)]) == 0


def test_record_files_skip_such_lines_with_a_warning(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_bytes(b'{"sample_id": "a"}\n' + b"[" * 200_000 + b"]" * 200_000 + b"\n" + b'{"x": "\xff"}\n'
                     + b'{"sample_id": "b"}\n')
    with pytest.warns(UserWarning) as caught:
        ids = [r["sample_id"] for r in iter_records(path)]
    assert ids == ["a", "b"]
    assert [str(w.message).split(": ")[0] for w in caught] == [f"{path}:2", f"{path}:3"]
