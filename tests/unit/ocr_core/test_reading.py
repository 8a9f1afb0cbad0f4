"""The shipped weights really read: rendered lines, pages, the CLI and the evaluator."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocr_core import Predictor
from ocr_core.evaluate import Item, Scored, char_errors, normalise, summarise
from ocr_core.preprocess import batch_lines, prepare_line

from .render import render_line, render_lines

ROOT = Path(__file__).resolve().parents[3]
SHARED_SCORE = ROOT.parent / "shared" / "eval" / "score.py"

LINES = [
    "Invoice No. 2026-0042 Total: $1,234.56",
    "The quick brown fox jumps over the lazy dog",
    "发票号码：12345678",
    "今天天气很好，我们去公园散步。",
    "合计金额 ¥7,200.00",
    "收货人 Zhang Wei 电话 13800138000 已发货",     # mixed Chinese and English
    # The space after "No." beside Chinese was dropped until the blank was lowered (session 10).
    "订单 Order No. 8812 已发货",
    "备注：含税价（含运费），请于《合同》签订后付款！",  # full-width punctuation
]


@pytest.mark.parametrize("precision", ["int8", "fp32"])
@pytest.mark.parametrize("text", LINES)
def test_reads_rendered_lines_exactly(int8_predictor: Predictor, fp32_predictor: Predictor, text: str,
                                      precision: str) -> None:
    """Both shipped weights files, each in its own precision (crnn-int8.pt in int8 on any CPU)."""
    read_with = fp32_predictor if precision == "fp32" else int8_predictor
    result = read_with.read(render_line(text, size=28), single_line=True)
    # exact under the dev sets' rule (a space beside a Chinese character carries no meaning)
    assert normalise(result.text) == normalise(text)
    (line,) = result.lines
    assert 0.5 < line.confidence <= 1.0
    assert len(line.char_confidences) == len(result.text)


def test_reads_a_dark_mode_line(predictor: Predictor) -> None:
    text = "Settings 设置 2026-11-23"
    assert normalise(predictor.read(render_line(text, dark=True), single_line=True).text) == normalise(text)


def test_reads_a_page_line_by_line_in_order(predictor: Predictor) -> None:
    texts = ["Order 8812 shipped", "收货地址：上海市浦东新区", "Amount Due: $56.70"]
    result = predictor.read(Image.fromarray(render_lines(texts)))
    # Each line found once, in order, and read; exact reading is the line tests' job (here the
    # crop comes from the line finder, and one confusable such as "：" vs "；" may slip).
    assert len(result.lines) == len(texts)
    for ln, ref in zip(result.lines, texts):
        assert char_errors(ref, ln.text)[0] <= 1, (ln.text, ref)
    assert result.text == "\n".join(ln.text for ln in result.lines)
    assert result.width > 0 and result.height > 0 and result.elapsed_ms > 0
    d = result.to_dict()
    assert set(d) >= {"text", "lines", "width", "height", "elapsed_ms"}
    assert set(d["lines"][0]) >= {"text", "confidence", "box", "polygon", "char_confidences"}


def test_model_identity_names_the_weights(predictor: Predictor) -> None:
    assert predictor.model_name and predictor.model_version
    # the version names digests of the recognizer's and the detector's weights files: new weights,
    # new key namespace upstream
    # (and, after the recognizer's, the precision of its first reading when it is not fp32)
    import re

    from ocr_core.predictor import PIPELINE_VERSION

    # so does the page pipeline's version: a change to how pages are read is a new namespace too
    m = re.fullmatch(rf"[\w.]+\.{PIPELINE_VERSION}-([0-9a-f]{{12}})(-i8v?)?-db[0-9a-f]{{8}}", predictor.model_version)
    assert m, predictor.model_version
    bare = Predictor.load(detector=False)
    assert bare.detector is None and bare.model_version == predictor.model_version.rsplit("-", 1)[0]


def test_a_photo_is_read_through_the_learned_detector(predictor: Predictor) -> None:
    from .test_detect import photo_of_label

    texts = ["洗涤说明 100%桑蚕丝", "Total: $1,234.56", "原版正品 今日活动价"]
    result = predictor.read(photo_of_label(texts, angle=-3.0, seed=2))
    assert result.finder == "learned" and result.to_dict()["finder"] == "learned"
    assert len(result.lines) == len(texts)
    for ln, ref in zip(result.lines, texts):
        assert char_errors(ref, ln.text)[0] <= 1, (ln.text, ref)
        assert len(ln.polygon) == 4


def test_documents_take_the_classical_finder_unless_told(predictor: Predictor) -> None:
    page = render_lines(["Order 8812 shipped", "收货地址：上海市浦东新区"])
    result = predictor.read(page)
    assert result.finder == "classical" and len(result.lines) == 2
    forced = predictor.read(page, finder="learned")
    assert forced.finder == "learned" and [ln.text for ln in forced.lines] == [ln.text for ln in result.lines]
    with pytest.raises(ValueError):
        predictor.read(page, finder="magic")


def test_cli_prints_one_json_object_per_image(tmp_path: Path) -> None:
    good = tmp_path / "line.png"
    Image.fromarray(render_line("Total: $1,234.56")).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    proc = subprocess.run([sys.executable, "-m", "ocr_core", "--single-line", str(good), str(bad)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1, proc.stderr  # one image failed
    first, second = (json.loads(line) for line in proc.stdout.splitlines())
    assert first["text"] == "Total: $1,234.56" and first["elapsed_ms"] > 0 and first["lines"]
    assert second["file"] == str(bad) and "error" in second


def test_inference_never_imports_training_or_server_code() -> None:
    code = ("import sys, ocr_core, ocr_core.predictor, ocr_core.evaluate;"
            "bad = [m for m in sys.modules if m.startswith(('ocr_core.train', 'flask', 'redis', 'boto3'))];"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ---------------------------------------------------------------- evaluator
CASES = [("你好，世界", "你好 ， 世界"), ("Hello  world", "Hello world"), ("Ｆｕｌｌ", "Full"),
         ("a b c", "abc"), ("金额 ¥1,200.00", "金额¥7,200.00"), ("", "x")]


def test_scoring_follows_the_dev_set_rule() -> None:
    assert normalise("  你好 世界 ， ok  ") == "你好世界, ok"   # NFKC makes the comma half-width
    assert normalise("Ａ  b") == "A b"
    assert char_errors("a b c", "abc") == (2, 5)       # spaces between Latin words count
    assert char_errors("金额 1", "金额1") == (0, 3)      # next to CJK they do not


@pytest.mark.skipif(not SHARED_SCORE.exists(), reason="the shared dev-set scorer is not beside the checkout")
def test_scoring_matches_the_reference_implementation() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("shared_score", SHARED_SCORE)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    for a, b in CASES:
        assert char_errors(a, b) == ref.cer(a, b)


def test_summary_aggregates_per_subset() -> None:
    def scored(tags, errors, length, ms):
        return Scored(Item("render", "lines", Path("x.png"), "r" * length, tags), "h", errors, length, ms)

    rows = {r["subset"]: r for r in summarise([
        scored(("clean", "light", "en"), 0, 10, 10.0),
        scored(("camera", "dark", "zh"), 3, 10, 30.0),
        scored(("clean", "dark", "zh"), 1, 20, 20.0),
    ])}
    assert rows["render lines all"]["cer"] == pytest.approx(4 / 40)
    assert rows["render lines all"]["line_acc"] == pytest.approx(1 / 3)
    assert rows["render lines all"]["median_ms"] == 20.0
    assert rows["render lines zh"]["items"] == 2 and rows["render lines zh"]["cer"] == pytest.approx(4 / 30)
    assert rows["render lines camera"]["cer"] == pytest.approx(0.3)
    assert "render pages all" not in rows


def test_engines_agree_with_the_eager_module_on_any_width(fp32_predictor: Predictor) -> None:
    """onnxruntime (the default) and the frozen TorchScript trace run the same weights: both give
    the eager module's greedy path at every batch size and width (in fp32: the int8 graph's
    readings are checked in test_quantized)."""
    predictor = fp32_predictor
    import torch

    from ocr_core.runtime import BestPath, FinePath, OnnxRunner, TorchRunner

    eager, eager_fine = BestPath(predictor.model), FinePath(predictor.model)
    runners = [predictor.runner, OnnxRunner(predictor.model), TorchRunner(predictor.model)]
    assert [r.engine for r in runners] == ["onnxruntime", "onnxruntime", "torch"]
    torch.manual_seed(0)
    for n, w in ((1, 48), (3, 320), (2, 812)):
        x = (torch.rand(n, 3, 48, w) * 2 - 1).numpy()
        with torch.inference_mode():
            ids, lp, cols = (t.numpy() for t in eager(torch.from_numpy(x)))
            fine_ids, fine_lp = (t.numpy() for t in eager_fine(torch.from_numpy(cols)))
        assert ids.shape == (n, w // 8) and cols.shape == (n, 384, 3, w // 4)
        assert fine_ids.shape == (n, w // 4 - 1)
        for run in runners:
            r_ids, r_lp, r_cols = run(x)
            np.testing.assert_allclose(r_cols, cols, atol=1e-3)
            r_fine_ids, r_fine_lp = run.fine(cols)
            # Random input has near-ties; where the classes agree the log-probabilities must too.
            pairs = ((r_ids, r_lp, ids, lp), (r_fine_ids, r_fine_lp, fine_ids, fine_lp))
            for got_ids, got_lp, want_ids, want_lp in pairs:
                same = got_ids == want_ids
                assert same.mean() > 0.97, run.engine
                np.testing.assert_allclose(got_lp[same], want_lp[same], atol=1e-3)
    line = render_line("Total: $1,234.56 合计")
    torch_pred = Predictor(predictor.model, predictor.charset, name="t", version="t", engine="torch")
    assert torch_pred.read(line, single_line=True).text == predictor.read(line, single_line=True).text == "Total: $1,234.56 合计"


# Small Chinese screen text, downscaled as a screenshot or a fax may be: frames near the blank
# (written here for this test, not taken from any dev set).
SMALL_TEXT = ["请在收到货物后七个工作日内完成验收", "本公司保留对以上条款的最终解释权", "会议将于下周三上午十点在三楼举行",
              "订单已发货，预计明天下午送达", "请妥善保管您的账户密码", "如有疑问请拨打客服热线咨询",
              "系统维护期间部分功能暂停使用", "感谢您一直以来的支持与信任", "该产品适用于家庭和办公室等多种场合",
              "所有数据均已加密存储在本地服务器", "参加培训的人员需要提前报名登记", "图书馆周末开放时间调整为九点至五点"]


def test_the_blank_is_lowered_before_the_greedy_path(fp32_predictor: Predictor) -> None:
    """The runner takes the greedy path after lowering the blank's logit by BLANK_PENALTY (in fp32,
    so its path can be compared with the eager module's)."""
    predictor = fp32_predictor
    import cv2
    import torch

    from ocr_core.decode import BLANK_PENALTY

    m = predictor.model
    crops = []
    for scale in (0.7, 0.65):     # 12 px text shrunk and enlarged again: the softest of the small text
        for text in SMALL_TEXT:
            a = render_line(text, size=12)
            h, w = a.shape[:2]
            small = cv2.resize(a, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
            crops.append(cv2.resize(small, (w, h)))
    x = torch.from_numpy(batch_lines([prepare_line(c) for c in crops])[0])
    with torch.inference_mode():
        logits = m.head(m.sequence(m.features(x)))              # N x T x C
    lowered = logits.clone()
    lowered[..., 0] -= BLANK_PENALTY
    ids, lp, _ = predictor.runner(x.numpy())
    same = ids == lowered.argmax(-1).numpy()
    assert same.mean() > 0.97
    # The path's log-probabilities are those of the lowered logits: where a character wins, the
    # lowered blank leaves it more of the probability than the plain softmax would.
    idx = torch.from_numpy(ids)[..., None]
    want = torch.log_softmax(lowered, -1).gather(-1, idx)[..., 0].numpy()
    plain = torch.log_softmax(logits, -1).gather(-1, idx)[..., 0].numpy()
    np.testing.assert_allclose(lp[same], want[same], atol=1e-3)
    assert np.abs(lp - plain)[same & (ids != 0)].max() > 0.01


def test_unknown_engine_is_refused(predictor: Predictor) -> None:
    from ocr_core.runtime import make_runner

    with pytest.raises(ValueError, match="engine must be one of"):
        make_runner(predictor.model, "tensorrt")


@pytest.mark.parametrize("ink", [(0, 0, 0), (255, 255, 255)])
def test_text_on_a_transparent_background_is_read_in_either_colour(predictor: Predictor, ink: tuple) -> None:
    import io

    from ocr_core.images import load_image

    # Text drawn only in the alpha channel: white ink would vanish if composited on white.
    mask = render_line("我是中国人 OK", size=30)[:, :, 0] < 128
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[..., :3] = ink
    rgba[..., 3] = np.where(mask, 255, 0)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    result = predictor.read(load_image(buf.getvalue()), single_line=True)
    assert normalise(result.text) == normalise("我是中国人 OK")


def _condensed(text: str, squeeze: float) -> np.ndarray:
    """A rendered line squeezed in width, as a condensed face or tight tracking sets it."""
    import cv2

    a = render_line(text, size=24)
    return cv2.resize(a, (int(a.shape[1] * squeeze), a.shape[0]), interpolation=cv2.INTER_AREA)


# Runs of narrow glyphs, squeezed: too few CTC steps for them, so some drop out of the first reading.
CONDENSED = [("illicit little filial titles 1111", 0.6), ("lilt ill fit jill tilt", 0.8)]


@pytest.mark.parametrize("text,squeeze", CONDENSED)
def test_a_crowded_unsure_line_is_read_again_stretched(fp32_predictor: Predictor, monkeypatch: pytest.MonkeyPatch,
                                                       text: str, squeeze: float) -> None:
    """The lines were made for the fp32 model (its first reading drops glyphs, its second look
    reads them); the int8 model reads the second one `tilit` for `tilt` (docs/benchmarks.md,
    "Session 19")."""
    import ocr_core.predictor as P

    predictor = fp32_predictor

    crop = _condensed(text, squeeze)
    result = predictor.read(crop, single_line=True)
    assert result.text == text
    assert "second_look" in result.timings_ms
    # The first reading alone drops glyphs: the second look is what reads the line.
    monkeypatch.setattr(P, "SECOND_LOOK_CONFIDENCE", 0.0)
    monkeypatch.setattr(P, "SECOND_LOOK_CROWDED", 1.01)
    first = predictor.read(crop, single_line=True)
    assert first.text != text and "second_look" not in first.timings_ms
    # The words still lie on the crop's own pixels.
    assert all(0 <= w.box[0] and w.box[0] + w.box[2] <= crop.shape[1] + 1 for w in result.lines[0].words)
    assert [w.text for w in result.lines[0].words] == text.split()


# Doubled letters squeezed until a character sits at nearly every step: read wrong, yet confidently.
CROWDED = [("free coffee committee", 0.55), ("See the bookkeeper soon", 0.55)]


@pytest.mark.parametrize("text,squeeze", CROWDED)
def test_a_very_crowded_line_is_read_again_however_sure(predictor: Predictor, monkeypatch: pytest.MonkeyPatch,
                                                        text: str, squeeze: float) -> None:
    import ocr_core.predictor as P

    crop = _condensed(text, squeeze)
    d = predictor.recognize([crop])[0]
    # Sure enough that the unsure-line rule alone leaves it, and crowded past SECOND_LOOK_CROWDED.
    assert P._mean_char_confidence([d]) >= P.SECOND_LOOK_CONFIDENCE
    assert len(d.char_steps) >= P.SECOND_LOOK_CROWDED * d.num_steps
    result = predictor.read(crop, single_line=True)
    assert result.text == text and "second_look" in result.timings_ms
    assert [w.text for w in result.lines[0].words] == text.split()
    monkeypatch.setattr(P, "SECOND_LOOK_CROWDED", 1.01)
    first = predictor.read(crop, single_line=True)
    assert first.text != text and "second_look" not in first.timings_ms


class _CountingRunner:
    """The predictor's runner, counting CNN passes (calls) and re-reads from a map (`fine`)."""

    def __init__(self, runner) -> None:
        self.runner, self.engine, self.calls, self.fines = runner, runner.engine, 0, 0

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.calls += 1
        return self.runner(x)

    def fine(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.fines += 1
        return self.runner.fine(cols)


@pytest.mark.parametrize("text,squeeze,cnn_passes,fine_reads", [CROWDED[0] + (1, 1), CONDENSED[0] + (2, 0)])
def test_the_second_look_runs_the_cnn_again_only_for_unsure_lines(
        predictor: Predictor, monkeypatch: pytest.MonkeyPatch, text: str, squeeze: float,
        cnn_passes: int, fine_reads: int) -> None:
    """A very crowded sure line is read again from its first reading's CNN map at twice the steps
    (the BiLSTM and classifier only); a crowded unsure one is stretched and goes through the CNN again."""
    counting = _CountingRunner(predictor.runner)
    monkeypatch.setattr(predictor, "runner", counting)
    result = predictor.read(_condensed(text, squeeze), single_line=True)
    assert result.text == text and "second_look" in result.timings_ms
    assert (counting.calls, counting.fines) == (cnn_passes, fine_reads)


def test_only_crowded_lines_keep_their_cnn_map_cut_to_their_own_width(
        predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batched with a wider line, a crowded line keeps the map of its own columns (what it would
    have been padded to alone), and a line with steps to spare keeps none."""
    import ocr_core.predictor as P
    from ocr_core.preprocess import batch_width

    crowded = _condensed(*CROWDED[0])
    roomy = render_line("Invoice 2026-12-03 合计")
    width = prepare_line(crowded).shape[2]
    assert batch_width([prepare_line(roomy).shape[2]]) > batch_width([width])
    counting = _CountingRunner(predictor.runner)
    monkeypatch.setattr(predictor, "runner", counting)
    decoded, maps = predictor._recognize([crowded, roomy])
    assert counting.calls == 1                                   # the two share one batch
    assert [P._crowded(d) for d in decoded] == [True, False]
    assert maps[1] is None and maps[0] is not None
    assert maps[0].shape == (384, 3, batch_width([width]) // 4)
    assert predictor._read_fine(maps[0], decoded[0].num_steps).text == CROWDED[0][0]


def test_a_line_turned_the_right_way_up_gets_the_map_of_its_turned_crop(predictor: Predictor) -> None:
    """A crowded line upside down on a page: once turned (`_flip_upside_down_lines`) its map is
    the turned crop's, so the second look reads it again from the right columns."""
    import ocr_core.predictor as P
    from ocr_core.lines import whole_image_line

    text, squeeze = CROWDED[0]
    upside_down = np.ascontiguousarray(_condensed(text, squeeze)[::-1, ::-1])
    decoded, maps = predictor._recognize([upside_down])
    assert P._mean_char_confidence(decoded) < P.LINE_FLIP_CONFIDENCE and maps == [None]
    page = P._Page([whole_image_line(upside_down)], [upside_down], decoded, np.eye(3), columns=maps)
    assert predictor._flip_upside_down_lines(page, {}) == {0}
    assert page.columns[0] is not None and P._crowded(page.decoded[0])
    predictor._second_look(page, {})
    assert page.decoded[0].text == text


def test_a_second_reading_that_is_not_confident_is_not_kept(predictor: Predictor,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import ocr_core.predictor as P

    text, squeeze = CONDENSED[0]
    crop = _condensed(text, squeeze)
    monkeypatch.setattr(P, "SECOND_LOOK_CONFIDENCE", 0.0)
    monkeypatch.setattr(P, "SECOND_LOOK_CROWDED", 1.01)
    first = predictor.read(crop, single_line=True).text
    monkeypatch.setattr(P, "SECOND_LOOK_CONFIDENCE", 0.95)
    monkeypatch.setattr(P, "UPRIGHT_CONFIDENCE", 1.01)     # no reading is that sure
    again = predictor.read(crop, single_line=True)
    assert "second_look" in again.timings_ms and again.text == first != text


def test_a_confident_line_is_read_once(predictor: Predictor) -> None:
    result = predictor.read(render_line(LINES[1]), single_line=True)
    assert result.text == LINES[1] and "second_look" not in result.timings_ms


def test_an_unsure_line_with_steps_to_spare_is_read_once(predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blurred small Chinese: unsure, but its glyphs have steps to spare (density < 0.35), so
    stretching would not give them more room: not read again."""
    import cv2

    import ocr_core.predictor as P

    a = render_line(LINES[3], size=12)
    h, w = a.shape[:2]
    blurred = cv2.resize(cv2.resize(a, (w // 2, h // 2), interpolation=cv2.INTER_AREA), (w, h))
    d = predictor.recognize([blurred])[0]
    assert P._mean_char_confidence([d]) < P.SECOND_LOOK_CONFIDENCE
    assert "second_look" not in predictor.read(blurred, single_line=True).timings_ms
    monkeypatch.setattr(P, "SECOND_LOOK_DENSITY", 0.0)
    assert "second_look" in predictor.read(blurred, single_line=True).timings_ms
