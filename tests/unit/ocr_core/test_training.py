"""The training loop runs, checkpoints and resumes (a few seconds on a tiny charset)."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch

from ocr_core.charset import Charset
from ocr_core.model import CRNN, CRNNConfig, load_crnn, save_crnn

pytest.importorskip("fontTools")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:-$¥/%"


@pytest.fixture
def tiny_setup(tmp_path: Path) -> dict:
    if not DEJAVU.exists():
        pytest.skip("fonts-dejavu-core is not installed")
    charset = Charset.from_string(CHARS)
    charset.to_file(tmp_path / "charset.txt")
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    shutil.copy(DEJAVU, fonts / DEJAVU.name)
    (fonts / "fonts.json").write_text(json.dumps([{"file": DEJAVU.name, "kind": "latin", "chars": CHARS}]))
    words = ["invoice", "total", "amount", "order", "Shanghai", "receipt", "Date", "paid"]
    ing = {"zh_words": ["发票"], "zh_freq": [1], "en_words": words}
    for key in ("zh_names", "zh_companies", "zh_addresses", "zh_jobs", "cities_zh"):
        ing[key] = ["张三"]
    for key in ("en_names", "en_companies", "en_addresses", "en_jobs", "en_phrases", "en_sentences", "cities_en"):
        ing[key] = [" ".join(words[i:i + 3]) for i in range(0, 6)]
    with gzip.open(tmp_path / "ing.json.gz", "wt", encoding="utf-8") as f:
        json.dump(ing, f)
    torch.manual_seed(0)
    save_crnn(CRNN(CRNNConfig(num_classes=len(charset))), str(tmp_path / "init.pt"),
              {"name": "test", "version": "0", "charset": CHARS})
    return {"dir": tmp_path, "args": ["--fonts", str(fonts), "--ingredients", str(tmp_path / "ing.json.gz"),
                                      "--charset", str(tmp_path / "charset.txt"), "--workers", "0",
                                      "--batch", "4", "--threads", "1", "--val-lines", "8", "--total-s", "60",
                                      "--val-every", "1"]}  # periodic saves mid-run too


def test_trains_checkpoints_and_resumes(tiny_setup: dict) -> None:
    from ocr_core.train.train import main

    d = tiny_setup["dir"]
    main(["--init", str(d / "init.pt"), "--out", str(d / "run1"), "--run-s", "3", *tiny_setup["args"]])
    first = torch.load(d / "run1" / "ckpt.pt", weights_only=True)
    assert first["step"] > 0 and first["run_index"] == 0 and 3 <= first["elapsed"] < 30
    assert (d / "run1" / "opt.pt").exists()

    main(["--resume", str(d / "run1" / "ckpt.pt"), "--out", str(d / "run2"), "--run-s", "3", *tiny_setup["args"]])
    second = torch.load(d / "run2" / "ckpt.pt", weights_only=True)
    assert second["run_index"] == 1 and second["step"] > first["step"]
    assert second["elapsed"] > first["elapsed"]

    model, meta = load_crnn(str(d / "run2" / "crnn.pt"))
    assert meta["charset"] == CHARS and meta["steps"] == second["step"]
    state = torch.load(d / "run2" / "crnn.pt", weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    # the weights moved away from the initial ones
    init, _ = load_crnn(str(d / "init.pt"))
    assert not torch.equal(init.fc2.weight, model.fc2.weight)
