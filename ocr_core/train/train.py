"""CTC training loop for the CRNN on endless synthetic lines; GPU (bf16 CNN) or CPU, resumable.

The learning-rate schedule follows *training time*, not steps: a run is given its share of a total
time budget (`--total-s`), so chained runs on a lent GPU (10 minutes each) and long CPU runs in the
background follow the same cosine curve whatever the throughput. Every run resumes from
`--resume` (model, optimizer, elapsed time) and writes `--out/ckpt.pt` (resume state, optimizer in
bf16 to stay small) and `--out/crnn.pt` (fp16 weights as shipped).

    python -m ocr_core.train.train --init warm.pt --fonts FONTDIR --ingredients ING.json.gz \\
        --out OUT --run-s 480 --total-s 1440 [--resume OUT_PREV/ckpt.pt]
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ocr_core.charset import Charset
from ocr_core.evaluate import levenshtein
from ocr_core.model import CRNN, CRNNConfig, WIDTH_STRIDE, load_crnn, save_crnn
from ocr_core.preprocess import prepare_line_u8
from ocr_core.train.corpus import LineSampler, load_ingredients
from ocr_core.train.render import LineRenderer, load_faces

logger = logging.getLogger(__name__)
MAX_TRAIN_WIDTH = 1600


def make_sample(sampler: LineSampler, renderer: LineRenderer, charset: Charset) -> tuple[np.ndarray, list[int], str] | None:
    text = sampler()
    crop = renderer.render(text)
    if crop is None:
        return None
    img = prepare_line_u8(crop)
    if img.shape[1] > MAX_TRAIN_WIDTH:
        return None
    labels = charset.encode(text)
    repeats = sum(1 for a, b in zip(labels, labels[1:]) if a == b)
    if img.shape[1] // WIDTH_STRIDE < len(labels) + repeats:  # CTC cannot align it
        return None
    return img, labels, text


class SyntheticBatches(IterableDataset):
    """Endless batches of similar-width lines (less padding), different seeds per worker and run."""

    def __init__(self, ingredients: Path, fonts: Path, charset: Charset, batch: int, seed: int) -> None:
        self.ingredients, self.fonts, self.charset, self.batch, self.seed = ingredients, fonts, charset, batch, seed

    def __iter__(self):
        info = get_worker_info()
        wid = info.id if info else 0
        seed = self.seed * 1000 + wid
        cv_threads = 1
        import cv2
        cv2.setNumThreads(cv_threads)
        sampler = LineSampler(load_ingredients(self.ingredients), self.charset, seed)
        renderer = LineRenderer(load_faces(self.fonts), seed)
        rng = random.Random(seed)
        pool: list = []
        while True:
            while len(pool) < 4 * self.batch:
                s = make_sample(sampler, renderer, self.charset)
                if s is not None:
                    pool.append(s)
            pool.sort(key=lambda s: s[0].shape[1])
            chunks = [pool[i:i + self.batch] for i in range(0, len(pool), self.batch)]
            rng.shuffle(chunks)
            pool = []
            for c in chunks:
                yield collate(c)


def collate(samples: list) -> dict:
    # Widths rounded up to a multiple of 64: a few distinct batch shapes instead of hundreds keeps
    # oneDNN's per-shape kernels and the CPU allocator from growing memory without bound.
    wmax = -(-max(s[0].shape[1] for s in samples) // 64) * 64
    x = np.full((len(samples), 1, 32, wmax), 255, dtype=np.uint8)
    for i, s in enumerate(samples):
        x[i, 0, :, : s[0].shape[1]] = s[0]
    return {
        "x": torch.from_numpy(x),
        "steps": torch.tensor([s[0].shape[1] // WIDTH_STRIDE for s in samples], dtype=torch.long),
        "targets": torch.tensor([t for s in samples for t in s[1]], dtype=torch.long),
        "target_lengths": torch.tensor([len(s[1]) for s in samples], dtype=torch.long),
        "texts": [s[2] for s in samples],
    }


def forward(model: CRNN, x: torch.Tensor, bf16: bool) -> torch.Tensor:
    """uint8 N x 1 x 32 x W → log-probs N x T x C (CNN in bf16 on GPU; LSTM and head in fp32)."""
    x = x.float() / 127.5 - 1.0
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
        feats = model.features(x)
    seq, _ = model.rnn(feats.float())
    return F.log_softmax(model.fc2(model.fc1(seq)).float(), dim=-1)


def cer(preds: list[str], refs: list[str]) -> float:
    return sum(levenshtein(p, r) for p, r in zip(preds, refs)) / max(1, sum(len(r) for r in refs))


def lr_at(frac: float, peak: float, warm: float = 0.03, floor: float = 0.02) -> float:
    if frac < warm:
        return peak * frac / warm
    t = min(1.0, (frac - warm) / (1 - warm))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def save_optimizer_small(opt: torch.optim.Optimizer) -> dict:
    sd = opt.state_dict()
    # state_dict() shares the live per-parameter dicts: build new ones, never cast in place.
    sd["state"] = {i: {k: (v.to(torch.bfloat16).cpu() if k in ("exp_avg", "exp_avg_sq") else v)
                       for k, v in st.items()}
                   for i, st in sd["state"].items()}
    return sd


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", type=Path, help="initial weights (warm start or previous crnn.pt)")
    p.add_argument("--resume", type=Path, help="ckpt.pt of a previous run")
    p.add_argument("--fonts", type=Path, required=True)
    p.add_argument("--ingredients", type=Path, required=True)
    p.add_argument("--charset", type=Path, default=Path(__file__).resolve().parents[1] / "weights" / "charset.txt")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--run-s", type=float, default=480, help="wall seconds of training in this run")
    p.add_argument("--total-s", type=float, default=1440, help="training seconds of the whole schedule")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0 = default)")
    p.add_argument("--version", default="dev")
    p.add_argument("--freeze-bn", action="store_true",
                   help="keep BatchNorm statistics fixed (small CPU batches fine-tuning a warm start)")
    p.add_argument("--val-every", type=float, default=150, help="seconds between validation + checkpoint")
    p.add_argument("--val-lines", type=int, default=384, help="size of the fixed synthetic validation set")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = dev.type == "cuda"
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = False  # widths vary every batch
    charset = Charset.from_file(args.charset)

    elapsed_before, step, run_index = 0.0, 0, 0
    if args.resume:
        ck = torch.load(args.resume, map_location="cpu", weights_only=True)
        model = CRNN(CRNNConfig(**ck["meta"]["config"]))
        model.load_state_dict({k: v.float() for k, v in ck["model"].items()})
        elapsed_before, step, run_index = ck["elapsed"], ck["step"], ck["run_index"] + 1
    else:
        model, meta = load_crnn(str(args.init))
        assert meta["config"]["num_classes"] == len(charset), "init weights were made for another charset"
    model.to(dev)

    def train_mode() -> None:
        model.train()
        if args.freeze_bn:
            # Batches of ~24 lines give noisy BatchNorm statistics; the warm start's are good.
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()

    train_mode()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    opt_path = args.resume.parent / "opt.pt" if args.resume else None
    if opt_path is not None and opt_path.exists():
        sd = torch.load(opt_path, map_location="cpu", weights_only=True)
        for st in sd["state"].values():
            for k in ("exp_avg", "exp_avg_sq"):
                if k in st:
                    st[k] = st[k].float()
        opt.load_state_dict(sd)
    logger.info("device=%s params=%.2fM run=%d resume_elapsed=%.0fs step=%d", dev,
                sum(p.numel() for p in model.parameters()) / 1e6, run_index, elapsed_before, step)

    # A fixed synthetic validation set (seed never used for training).
    val_sampler = LineSampler(load_ingredients(args.ingredients), charset, seed=987654)
    val_renderer = LineRenderer(load_faces(args.fonts), seed=987654)
    val = []
    while len(val) < args.val_lines:
        s = make_sample(val_sampler, val_renderer, charset)
        if s is not None:
            val.append(s)
    val_batches = [collate(sorted(val, key=lambda s: s[0].shape[1])[i:i + 64]) for i in range(0, len(val), 64)]

    ds = SyntheticBatches(args.ingredients, args.fonts, charset, args.batch, seed=args.seed * 100 + run_index)
    loader = DataLoader(ds, batch_size=None, num_workers=args.workers, pin_memory=dev.type == "cuda",
                        prefetch_factor=4 if args.workers else None, persistent_workers=False,
                        # fork after OpenCV/torch thread pools exist deadlocks the workers: spawn them.
                        multiprocessing_context="spawn" if args.workers else None)
    args.out.mkdir(parents=True, exist_ok=True)

    def validate() -> float:
        model.eval()
        preds, refs = [], []
        with torch.no_grad():
            for b in val_batches:
                lp = forward(model, b["x"].to(dev), bf16)
                for row, n in zip(lp.argmax(-1).cpu().numpy(), b["steps"].numpy()):
                    preds.append(greedy_decode_ids(row[:n], charset))
                refs += b["texts"]
        train_mode()
        return cer(preds, refs)

    def save(tag: str) -> None:
        meta = {"name": "crnn-mbv1-bilstm", "version": args.version, "charset": "".join(charset.classes[1:]),
                "trained_seconds": round(elapsed_before + trained, 1), "steps": step, "samples": samples_total,
                "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"}
        cfg = model.cfg
        # Optimizer state goes to its own file: one file of model + state would pass the 16 MiB
        # a lent GPU machine sends back.
        torch.save(save_optimizer_small(opt), args.out / "opt.pt")
        torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "elapsed": elapsed_before + trained,
                    "step": step, "run_index": run_index,
                    "meta": {**meta, "config": {"num_classes": cfg.num_classes, "hidden": cfg.hidden,
                                                "head_mid": cfg.head_mid, "in_channels": cfg.in_channels}}},
                   args.out / "ckpt.pt")
        save_crnn(model, str(args.out / "crnn.pt"), meta, half=True)
        logger.info("saved %s step=%d", tag, step)

    logger.info("val CER before: %.4f", validate())
    t0 = time.monotonic()
    trained, samples_total, loss_ema, last_log, last_val = 0.0, 0, None, t0, t0
    for batch in loader:
        trained = time.monotonic() - t0
        if trained >= args.run_s or elapsed_before + trained >= args.total_s:
            break
        frac = (elapsed_before + trained) / args.total_s
        for g in opt.param_groups:
            g["lr"] = lr_at(frac, args.lr)
        x = batch["x"].to(dev, non_blocking=True)
        lp = forward(model, x, bf16)                                   # N x T x C
        loss = F.ctc_loss(lp.transpose(0, 1), batch["targets"].to(dev), batch["steps"].to(dev),
                          batch["target_lengths"].to(dev), blank=0, zero_infinity=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        samples_total += x.shape[0]
        lv = float(loss.detach())
        loss_ema = lv if loss_ema is None else 0.98 * loss_ema + 0.02 * lv
        now = time.monotonic()
        if now - last_log > 20:
            logger.info("step=%d t=%.0fs frac=%.3f lr=%.2e loss=%.3f samples/s=%.0f", step, trained, frac,
                        opt.param_groups[0]["lr"], loss_ema, samples_total / max(trained, 1e-6))
            last_log = now
        if now - last_val > args.val_every:
            logger.info("val CER: %.4f", validate())
            last_val = now
            save("periodic")
    trained = time.monotonic() - t0
    logger.info("val CER after: %.4f (samples=%d, %.0f/s)", validate(), samples_total, samples_total / max(trained, 1))
    save("final")


def greedy_decode_ids(ids: np.ndarray, charset: Charset) -> str:
    out, prev = [], 0
    for i in ids:
        if i != prev and i != 0:
            out.append(charset.classes[i])
        prev = i
    return "".join(out)


if __name__ == "__main__":
    main()
