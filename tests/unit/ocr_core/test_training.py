"""Training code: the PP-OCRv6 conversion matches onnxruntime, and distillation learns, checkpoints
and resumes (seconds, on a tiny model and a tiny charset)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ocr_core.charset import Charset
from ocr_core.model import CRNN, CRNNConfig, load_crnn, save_crnn
from ocr_core.preprocess import batch_lines, prepare_line
from ocr_core.train import classes, distill

from .render import render_line

ROOT = Path(__file__).resolve().parents[3]
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:-$"
TEXTS = ["Total 42", "Invoice 2026", "paid: $12.50", "order no. 7", "Date 12-01", "Amount 88"]


def test_labels_fall_back_to_nfkc_and_unknown_text_is_refused() -> None:
    cs = Charset.from_string("$12 ab")
    assert distill.encode_label("＄12", cs) == [cs.index["$"], cs.index["1"], cs.index["2"]]
    assert distill.encode_label("a b", cs) == [cs.index["a"], cs.index[" "], cs.index["b"]]
    assert distill.encode_label("a甲", cs) is None
    # CTC needs a step per character plus one between repeated characters
    assert distill.ctc_feasible([1, 2], 2) and not distill.ctc_feasible([1, 1], 2) and distill.ctc_feasible([1, 1], 3)
    assert not distill.ctc_feasible([], 5)


def _shards(tmp: Path, init: CRNN, charset: Charset) -> Path:
    """Shards as `distill features` writes them, from a stand-in teacher: a second random
    sequence model on the same frozen CNN (what the student must learn to imitate)."""
    torch.manual_seed(1)
    teacher = CRNN(CRNNConfig(num_classes=len(charset), hidden=8)).eval()
    teacher.backbone.load_state_dict(init.backbone.state_dict())
    teacher.head.load_state_dict(init.head.state_dict())
    out = tmp / "shards"
    out.mkdir()
    for seed in (1, distill.VAL_SEED):
        x, steps = batch_lines([prepare_line(render_line(t, size=24)) for t in TEXTS])
        with torch.no_grad():
            feats = teacher.features(torch.from_numpy(x))                     # N x T x 384
            pre = teacher.sequence(feats)                                      # N x T x 120
            top = teacher.head(pre).topk(distill.TOP_K, dim=-1).indices
        torch.save({"feats": [f.half() for f in feats], "pre": [p.half() for p in pre],
                    "top": [t.short() for t in top], "steps": steps.tolist(),
                    "labels": [charset.encode(t) for t in TEXTS], "texts": TEXTS},
                   out / f"shard-{seed}-00000.pt")
    return out


@pytest.fixture
def tiny(tmp_path: Path) -> dict:
    charset = Charset.from_string(CHARS)
    torch.manual_seed(0)
    init = CRNN(CRNNConfig(num_classes=len(charset), hidden=8)).eval()
    save_crnn(init, str(tmp_path / "init.pt"), {"name": "test", "version": "0", "charset": CHARS}, half=False)
    shards = _shards(tmp_path, init, charset)
    return {"dir": tmp_path, "init": init,
            "args": ["--init", str(tmp_path / "init.pt"), "--shards", str(shards), "--batch", "4",
                     "--min-pool", "4", "--lr", "1e-2", "--total-s", "60", "--val-every", "1"]}


def test_distillation_learns_checkpoints_and_resumes(tiny: dict) -> None:
    d = tiny["dir"]
    val = distill.collate_all(d / "shards" / f"shard-{distill.VAL_SEED}-00000.pt")
    init = tiny["init"]
    with torch.no_grad():
        before = float(distill.losses(init, val, pre_scale=1.0, full=True)["kl"])

    distill.main(["train", *tiny["args"], "--out", str(d / "run1"), "--run-s", "4"])
    first = torch.load(d / "run1" / "ckpt.pt", weights_only=True)
    assert first["step"] > 0 and first["run_index"] == 0 and 4 <= first["elapsed"] < 30
    # only the sequence model is in the checkpoint: the CNN and the classifier stay frozen
    assert set(first["model"]) and all(k.startswith(("rnn.", "proj.")) for k in first["model"])

    distill.main(["train", *tiny["args"], "--resume", str(d / "run1" / "ckpt.pt"), "--out", str(d / "run2"),
                  "--run-s", "4"])
    second = torch.load(d / "run2" / "ckpt.pt", weights_only=True)
    assert second["run_index"] == 1 and second["step"] > first["step"] and second["elapsed"] > first["elapsed"]

    model, meta = load_crnn(str(d / "run2" / "crnn.pt"))
    assert meta["charset"] == CHARS and meta["steps"] == second["step"]
    state = torch.load(d / "run2" / "crnn.pt", weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert torch.allclose(model.backbone.layers[0].conv1.conv.weight, init.backbone.layers[0].conv1.conv.weight,
                          atol=1e-2)
    assert torch.allclose(model.head.weight, init.head.weight, atol=1e-3)
    assert not torch.allclose(model.rnn.weight_hh_l0, init.rnn.weight_hh_l0, atol=1e-3)
    with torch.no_grad():
        after = float(distill.losses(model, val, pre_scale=1.0, full=True)["kl"])
    assert after < 0.7 * before, (before, after)


def test_a_new_schedule_starts_from_a_run_or_from_a_weights_file(tiny: dict) -> None:
    """`--warm` takes the student's sequence model from a run's ckpt.pt or from a weights file
    such as the shipped crnn.pt, whose classifier may have fewer classes (only rnn/proj are taken)."""
    d = tiny["dir"]
    distill.main(["train", *tiny["args"], "--out", str(d / "run1"), "--run-s", "2"])
    from_ckpt = distill.student_state(d / "run1" / "ckpt.pt")
    from_weights = distill.student_state(d / "run1" / "crnn.pt")        # fp16 on disk
    assert set(from_ckpt) == set(from_weights) and all(k.startswith(("rnn.", "proj.")) for k in from_ckpt)
    assert all(torch.allclose(from_ckpt[k], from_weights[k], atol=1e-2) for k in from_ckpt)
    assert all(v.dtype == torch.float32 for v in from_weights.values())
    # a weights file whose classifier was cut: its sequence model still starts the new schedule
    trained, meta = load_crnn(str(d / "run1" / "crnn.pt"))
    pruned, pruned_meta = classes.prune(trained, meta, classes.kept_classes(["", *CHARS], "abc"))
    save_crnn(pruned, str(d / "cut.pt"), pruned_meta)
    distill.main(["train", *tiny["args"], "--warm", str(d / "cut.pt"), "--out", str(d / "run2"), "--run-s", "0"])
    started = torch.load(d / "run2" / "ckpt.pt", weights_only=True)["model"]
    init = tiny["init"].state_dict()
    assert not torch.allclose(started["rnn.weight_hh_l0"], init["rnn.weight_hh_l0"], atol=1e-3)
    assert torch.allclose(started["rnn.weight_hh_l0"], from_weights["rnn.weight_hh_l0"], atol=1e-2)


@pytest.mark.parametrize("keep_range", [None, (0.4, 0.5)])
def test_clipped_lines_lose_part_of_their_glyphs_from_the_top_or_the_bottom(keep_range) -> None:
    """`distill.clip_line`: what a picture's edge leaves of a line cut through it (the default
    share of the ink's height, or the one asked for)."""
    import random

    import numpy as np

    line = render_line("Grant of 合计 Total", size=28)
    ink = np.flatnonzero((line.mean(axis=2) < 128).any(axis=1))
    full = ink[-1] + 1 - ink[0]
    rng = random.Random(3)
    lo, hi = keep_range or distill.CLIP_KEEP
    kinds = set()
    shares = []
    for _ in range(40):
        cut = distill.clip_line(line, rng) if keep_range is None else distill.clip_line(line, rng, keep_range)
        assert cut is not None and cut.shape[1] == line.shape[1] and cut.shape[0] < line.shape[0]
        rows = np.flatnonzero((cut.mean(axis=2) < 128).any(axis=1))
        kept = rows[-1] + 1 - rows[0]
        assert lo * full - 2 <= kept <= hi * full + 2
        shares.append(kept / full)
        # the cut side ends in ink; the other keeps its blank margin
        kinds.add("top" if cut.shape[0] - rows[-1] > 1 and rows[0] == 0 else "bottom")
    assert kinds == {"top", "bottom"}
    assert max(shares) - min(shares) > 0.5 * (hi - lo)        # spread over the range, not one cut
    assert distill.clip_line(np.full((20, 80, 3), 255, np.uint8), rng) is None


def test_keep_ranges_are_parsed_and_checked() -> None:
    import argparse

    assert distill.share_range("0.4,0.75") == (0.4, 0.75)
    for bad in ("0.8,0.4", "0,0.5", "0.5,1.2", "0.5"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            distill.share_range(bad)


def test_lines_without_teacher_targets_learn_from_the_text_only(tiny: dict) -> None:
    """A clipped line (kd 0) has no KL or MSE term, only CTC on its true text."""
    val = distill.collate_all(tiny["dir"] / "shards" / f"shard-{distill.VAL_SEED}-00000.pt")
    with torch.no_grad():
        taught = distill.losses(tiny["init"], val, pre_scale=1.0, full=True)
        val["kd"] = torch.zeros_like(val["kd"])
        text_only = distill.losses(tiny["init"], val, pre_scale=1.0, full=True)
    assert float(taught["kl"]) > 0 and float(taught["mse"]) > 0
    assert float(text_only["kl"]) == 0 and float(text_only["mse"]) == 0
    assert float(text_only["ctc"]) == pytest.approx(float(taught["ctc"])) and float(text_only["ctc"]) > 0


# ---------------------------------------------------------------- the shipped classes
def test_pruned_classifier_keeps_the_kept_classes_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CRNN(CRNNConfig(num_classes=len(CHARS) + 1, hidden=8)).eval()
    meta = {"name": "t", "version": "0", "charset": CHARS}
    keep = classes.kept_classes(["", *CHARS], "abc012")
    # the blank first, the space always (the last class here), in the original order
    assert [(["", *CHARS])[i] for i in keep] == ["", "a", "b", "c", "0", "1", "2", " "]
    pruned, new_meta = classes.prune(model, meta, keep)
    save_crnn(pruned, str(tmp_path / "p.pt"), new_meta, half=False)
    loaded, loaded_meta = load_crnn(str(tmp_path / "p.pt"))
    assert loaded_meta["charset"] == "abc012 " and loaded.cfg.num_classes == 8
    assert loaded_meta["classes_from"] == len(CHARS) + 1
    x, _ = batch_lines([prepare_line(render_line("abc 012", size=24))])
    with torch.no_grad():
        full = model.head(model.sequence(model.features(torch.from_numpy(x))))
        cut = loaded.head(loaded.sequence(loaded.features(torch.from_numpy(x))))
    assert torch.allclose(cut, full[..., keep], atol=1e-5)
    assert model.head.weight.shape[0] == len(CHARS) + 1     # the source model is left whole


def test_shipped_classes_are_the_product_characters() -> None:
    from ocr_core.predictor import DEFAULT_WEIGHTS

    _, meta = load_crnn(str(DEFAULT_WEIGHTS))
    wanted = classes.product_characters()
    shipped = set(meta["charset"])
    assert shipped <= wanted | {" "} and meta["charset"][-1] == " "
    assert meta["classes_from"] == 18710 and len(shipped) + 1 < 9000


def test_reproduce_trains_beside_its_producers_resumes_and_skips_a_finished_schedule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`reproduce.train`: producers start with the schedule's budget and are stopped after the
    trainer; an interrupted schedule resumes from its checkpoint; a finished one is not run again."""
    from ocr_core.train import reproduce

    started: list[list[str]] = []
    stopped: list[int] = []
    trained: list[tuple[str, ...]] = []

    class Producer:
        def __init__(self, cmd: list[str], cwd: Path) -> None:
            started.append(cmd)

        def terminate(self) -> None:
            stopped.append(len(trained))       # after the trainer ran

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(reproduce.subprocess, "Popen", Producer)
    monkeypatch.setattr(reproduce, "run", lambda *cmd: trained.append(cmd))
    out = tmp_path / "run-clip1"
    out.mkdir()
    (out / "ckpt.pt").touch()                  # an earlier, interrupted attempt
    args = (tmp_path / "init.pt", tmp_path / "shards", [["--seed", "11", "--clip", "0.3"]], ["--lr", "0.0005"])
    reproduce.train(*args, out, 2700)
    assert started == [[reproduce.sys.executable, "-m", "ocr_core.train.distill", "features",
                        "--seed", "11", "--clip", "0.3", "--run-s", "2700"]]
    assert stopped == [1] and len(trained) == 1
    cmd = trained[0]
    assert cmd[3] == "train" and cmd[cmd.index("--total-s") + 1] == "2700"
    assert cmd[cmd.index("--lr") + 1] == "0.0005" and cmd[cmd.index("--resume") + 1] == str(out / "ckpt.pt")
    reproduce.train(*args, out, 2700)          # finished: nothing runs
    assert len(trained) == 1 and len(started) == 1
    assert [s.producer_seed for s in reproduce.CLIP_SCHEDULES] == [11, 12]


# ---------------------------------------------------------------- the PP-OCRv6 conversion
@pytest.fixture(scope="module")
def v6_onnx() -> Path:
    """The teacher's ONNX file, fetched from PyPI (`rapidocr==3.10.0`) into var/train once, as
    `make weights` does; skipped only where the registry cannot be reached."""
    import subprocess

    from ocr_core.train.reproduce import teacher_onnx

    try:
        return teacher_onnx(ROOT / "var" / "train")
    except subprocess.CalledProcessError:
        pytest.skip("rapidocr==3.10.0 could not be downloaded")


@pytest.mark.slow
def test_v6_backbone_and_classifier_match_onnxruntime(v6_onnx: Path) -> None:
    from ocr_core.train.convert_ppocr_v6 import check_against_onnx, convert

    model, v6_classes = convert(v6_onnx, hidden=16)
    assert len(v6_classes) == 18710 and v6_classes[0] == "<blank>" and v6_classes[-1] == " "
    # a real line as well as noise: the CNN must agree where it matters
    x, _ = batch_lines([prepare_line(render_line("发票号码：12345678 Total", size=30))])
    for sample in (None, x):
        diffs = check_against_onnx(model, v6_onnx, sample)
        # float32 on both sides: only the summation order differs
        assert diffs["backbone"] < 1e-3 * diffs["backbone_scale"], diffs
        assert diffs["classifier"] < 1e-5, diffs
    # the shipped classes are exactly what `classes` keeps of this dictionary (reproducible)
    _, meta = load_crnn(str(ROOT / "ocr_core" / "weights" / "crnn.pt"))
    keep = classes.kept_classes(list(v6_classes), classes.product_characters())
    assert meta["charset"] == "".join(v6_classes[i] for i in keep[1:])


# ---------------------------------------------------------------- quantization-aware fine-tuning
def test_qat_tunes_through_fake_quantization_resumes_and_writes_the_int8_ranges(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`qat`: a few steps on rendered lines (the font renderer replaced by the tests' own) move the
    CNN's convolutions and the BiLSTM, never the stem or the classifier; an interrupted run resumes;
    the weights file carries a range for every tensor the int8 graph quantizes, and builds it."""
    from ocr_core.preprocess import prepare_line_u8
    from ocr_core.quantized import PW_CONV_COUNT, int8_graph
    from ocr_core.runtime import recognizer_graph
    from ocr_core.train import qat

    charset = Charset.from_string(CHARS)
    torch.manual_seed(0)
    init = CRNN(CRNNConfig(num_classes=len(charset), hidden=8)).eval()
    save_crnn(init, str(tmp_path / "init.pt"), {"name": "test", "version": "0", "charset": CHARS}, half=False)

    class Lines:
        def __init__(self, fonts: Path, ingredients: Path, cs: Charset, seed: int) -> None:
            self.charset, self.i = cs, seed

        def take(self, n: int) -> list:
            texts = [TEXTS[(self.i + k) % len(TEXTS)] for k in range(n)]
            self.i += n
            got = [(prepare_line_u8(render_line(t, size=24)), self.charset.encode(t)) for t in texts]
            return sorted(got, key=lambda s: s[0].shape[1])

    monkeypatch.setattr(qat, "Lines", Lines)
    monkeypatch.setattr(qat, "BATCH", 2)
    monkeypatch.setattr(qat, "WARM_BATCHES", 1)
    out = tmp_path / "qat"
    args = ["--weights", str(tmp_path / "init.pt"), "--fonts", str(tmp_path), "--ingredients", str(tmp_path),
            "--out", str(out), "--threads", "1", "--lr-cnn", "1e-3", "--lr-neck", "1e-3"]
    qat.main([*args, "--steps", "2"])
    assert torch.load(out / "ckpt.pt", weights_only=False)["step"] == 2
    qat.main([*args, "--steps", "3"])                  # picks up the checkpoint: one more step
    assert torch.load(out / "ckpt.pt", weights_only=False)["step"] == 3

    model, meta = load_crnn(str(out / "crnn.pt"))
    assert meta["charset"] == CHARS and meta["qat"]["steps"] == 3 and meta["int8"]["convs"] == "pw"
    ranges = meta["int8"]["ranges"]
    assert len(ranges) == 2 * PW_CONV_COUNT and all(lo < hi for lo, hi in ranges.values())
    assert int8_graph(recognizer_graph(model), ranges)
    moved = [not torch.allclose(a, b, atol=1e-4) for a, b in (
        (model.backbone.layers[12].expand.conv.weight, init.backbone.layers[12].expand.conv.weight),
        (model.backbone.layers[13].reduce.conv.weight, init.backbone.layers[13].reduce.conv.weight),
        (model.rnn.weight_hh_l0, init.rnn.weight_hh_l0))]
    assert moved == [True, True, True]
    assert torch.allclose(model.backbone.layers[0].conv1.conv.weight, init.backbone.layers[0].conv1.conv.weight,
                          atol=1e-3)                   # fp16 as stored
    assert torch.allclose(model.head.weight, init.head.weight, atol=1e-3)
