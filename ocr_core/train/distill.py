"""Distil PP-OCRv6's attention neck into the CRNN's BiLSTM, frame by frame (CPU or CUDA, resumable).

Teacher and student share the CNN (converted by `convert_ppocr_v6`) and the classifier, so their
CTC frames line up one to one and the student only has to learn the sequence model. Two commands:

`features` renders synthetic lines (`ocr_core.train.render`, every augmentation), prepares them
exactly as inference does (`ocr_core.preprocess`), runs the shipped PP-OCRv6 in onnxruntime
(`TeacherSession`) and writes shards of (CNN features N x T x 384, the teacher neck's output
N x T x 120, the true text) in fp16. It needs no label from the teacher, and runs beside training
(a second process) so the data keeps growing while the student learns.

`train` fits the BiLSTM + projection on those shards, the CNN and classifier frozen, with
    loss = KL(teacher ‖ student) per frame (the full 18,710-class distributions, through the shared
           classifier) + MSE to the teacher's 120-d vector (scaled by its mean square)
           + 0.2 · CTC on the true text (fixes what the teacher gets wrong on our lines),
on a cosine schedule over training *time* (`--total-s`), like `train.py`. Lines made with
`features --clip` (cut through their glyphs, as by a picture's edge; `--clip-keep` sets how much
of the ink's height they keep) carry no teacher target: only their CTC term counts. `train --warm`
starts a new schedule from a student: a run's ckpt.pt, or a weights file such as the shipped
crnn.pt (its BiLSTM and projection). It writes `ckpt.pt`
(trainable state, optimizer, elapsed) and `crnn.pt` (the whole model in fp16, as shipped).

    python -m ocr_core.train.distill features --onnx V6.onnx --fonts F --ingredients I --out SHARDS --seed 1
    python -m ocr_core.train.distill train --init init.pt --shards SHARDS --out RUN --run-s 3600 --total-s 7200
"""
from __future__ import annotations

import argparse
import logging
import math
import random
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ocr_core.charset import Charset
from ocr_core.decode import collapse_path, greedy_decode
from ocr_core.evaluate import levenshtein
from ocr_core.model import CRNN, load_crnn, save_crnn
from ocr_core.preprocess import batch_lines, prepare_line_u8, steps_for_width, to_model_input
from ocr_core.train import TEXT_CHARSET

logger = logging.getLogger(__name__)
SHARD_LINES = 256
# The teacher's k most likely classes per frame are kept: the KL is taken over the union of those
# classes in a batch (plus blank and the true characters), not all 18,710: the teacher's mass
# outside them is negligible, and the full classifier would cost 3 large matmuls per batch.
TOP_K = 8
NEGATIVES = 2048
VAL_SEED = 987654          # the validation shard's seed; never used for training shards
CTC_WEIGHT = 0.2
MSE_WEIGHT = 2.0
# Lines cut through by a picture's edge or a container (a screenshot cropped mid-line): what is
# left is 50-75 % of the glyphs' height, the bottom cut away more often than the top. The teacher
# reads them as badly as the student (docs/benchmarks.md, "Session 10"), so on these lines only
# the true text teaches: they carry no KL or MSE target.
CLIP_KEEP = (0.5, 0.75)
CLIP_TOP_SHARE = 0.3       # share of clipped lines that lose their top instead of their bottom


def share_range(text: str) -> tuple[float, float]:
    """`--clip-keep`'s "LO,HI": a range of shares of a line's ink height, 0 < LO <= HI <= 1."""
    lo, hi = (float(v) for v in text.split(","))
    if not 0 < lo <= hi <= 1:
        raise argparse.ArgumentTypeError(f"expected LO,HI with 0 < LO <= HI <= 1, got {text!r}")
    return lo, hi


def clip_line(crop: np.ndarray, rng: random.Random,
              keep_range: tuple[float, float] = CLIP_KEEP) -> np.ndarray | None:
    """A rendered line cut through its glyphs (a share in `keep_range` of the ink's height kept,
    from the top or, for `CLIP_TOP_SHARE` of them, from the bottom), with the crop's own padding on
    the kept side; None when the crop shows no ink to cut."""
    gray = crop.mean(axis=2) if crop.ndim == 3 else crop.astype(np.float64)
    background = float(np.median(np.concatenate([gray[0], gray[-1]])))
    rows = np.flatnonzero((np.abs(gray - background) > 60).any(axis=1))
    if len(rows) < 4:
        return None
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    keep = max(2, int(round(rng.uniform(*keep_range) * (bottom - top))))
    if rng.random() < CLIP_TOP_SHARE:
        return crop[bottom - keep:]                       # the top is gone
    return crop[:top + keep]                              # the bottom is gone


def synthetic_lines(fonts: Path, ingredients: Path, seed: int, n: int,
                    keep: tuple[float, float] | None = None) -> list[tuple[np.ndarray, str]]:
    """n lines (crop, text) from the training sampler and renderer of `seed`, each clipped
    (`clip_line`, a share in `keep` of its ink kept) when `keep` is given: the held-out lines
    of the benches, and the lines int8 ranges are calibrated on (`ocr_core.train.calibrate`)."""
    # Imported here, as in `make_features`: only what renders lines needs the corpus and the fonts.
    from ocr_core.train.corpus import LineSampler, load_ingredients
    from ocr_core.train.render import LineRenderer, load_faces

    sampler = LineSampler(load_ingredients(ingredients), Charset.from_file(TEXT_CHARSET), seed)
    renderer = LineRenderer(load_faces(fonts), seed)
    clip_rng = random.Random(seed * 7919 + 1)
    lines: list[tuple[np.ndarray, str]] = []
    while len(lines) < n:
        text = sampler()
        if not text.strip():
            continue
        crop = renderer.render(text)
        if crop is not None and keep is not None:
            crop = clip_line(crop, clip_rng, keep)
        if crop is not None:
            lines.append((crop, text))
    return lines


# ---------------------------------------------------------------------------------------- labels
def encode_label(text: str, charset: Charset) -> list[int] | None:
    """Class ids of text; a character the classes lack is tried in NFKC form (full-width ＄ → $);
    None if still unknown."""
    ids: list[int] = []
    for c in text:
        if c in charset.index:
            ids.append(charset.index[c])
            continue
        norm = unicodedata.normalize("NFKC", c)
        if not norm or not all(n in charset.index for n in norm):
            return None
        ids += [charset.index[n] for n in norm]
    return ids


def ctc_feasible(labels: list[int], steps: int) -> bool:
    repeats = sum(1 for a, b in zip(labels, labels[1:]) if a == b)
    return 0 < len(labels) and len(labels) + repeats <= steps


# -------------------------------------------------------------------------------------- features
def draw_line(sampler: Callable[[], str], renderer: Any, charset: Charset, clip_rng: random.Random,
              clip: float, clip_keep: tuple[float, float], max_width: int
              ) -> tuple[np.ndarray, list[int], str, float] | None:
    """One synthetic training line: (48 x W x 3 uint8 as inference prepares it, label ids, text,
    whether the teacher's targets count: 0.0 when it was clipped, with probability `clip`), or
    None when it cannot serve (not rendered, not encodable, wider than `max_width`, too many
    characters for its CTC steps)."""
    text = sampler()
    crop = renderer.render(text)
    labels = encode_label(text, charset)
    if crop is None or labels is None:
        return None
    kd = 1.0
    if clip and clip_rng.random() < clip:
        crop, kd = clip_line(crop, clip_rng, clip_keep), 0.0
        if crop is None:
            return None
    u8 = prepare_line_u8(crop)
    if u8.shape[1] > max_width or not ctc_feasible(labels, steps_for_width(u8.shape[1])):
        return None
    return u8, labels, text, kd


def make_features(args: argparse.Namespace) -> None:
    from ocr_core.train.convert_ppocr_v6 import TeacherSession, v6_classes
    from ocr_core.train.corpus import LineSampler, load_ingredients
    from ocr_core.train.render import LineRenderer, load_faces

    import cv2
    cv2.setNumThreads(1)
    charset = Charset(v6_classes(args.onnx)[1:])
    text_charset = Charset.from_file(args.text_charset)   # what the corpus and fonts cover
    sampler = LineSampler(load_ingredients(args.ingredients), text_charset, args.seed)
    renderer = LineRenderer(load_faces(args.fonts), args.seed)
    clip_rng = random.Random(args.seed * 7919 + 1)
    teacher = TeacherSession(args.onnx, threads=args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    k = len(list(args.out.glob(f"shard-{args.seed}-*.pt")))
    # Resume: skip the lines earlier shards of this seed used, so a restart adds new lines.
    for _ in range(k * SHARD_LINES * 2):
        sampler()
    made, errs, chars = 0, 0, 0
    while (args.lines == 0 or made < args.lines) and time.monotonic() - t0 < args.run_s:
        pending: list[tuple[np.ndarray, list[int], str, float]] = []
        while len(pending) < 4 * args.batch:
            line = draw_line(sampler, renderer, charset, clip_rng, args.clip, args.clip_keep, args.max_width)
            if line is not None:
                pending.append(line)
        pending.sort(key=lambda s: s[0].shape[1])
        shard: dict[str, list] = {"feats": [], "pre": [], "top": [], "steps": [], "labels": [], "texts": [],
                                  "kd": []}
        for i in range(0, len(pending), args.batch):
            group = pending[i:i + args.batch]
            x, steps = batch_lines([to_model_input(g[0]) for g in group])
            probs, feats, pre = teacher(x)
            feats = feats[:, :, 0, :].transpose(0, 2, 1)            # N x T x 384
            top = np.argpartition(-probs, TOP_K, axis=-1)[:, :, :TOP_K]  # N x T x k, unordered
            for j, (_, labels, text, kd) in enumerate(group):
                shard["feats"].append(torch.from_numpy(feats[j]).half())
                shard["pre"].append(torch.from_numpy(pre[j]).half())
                shard["top"].append(torch.from_numpy(top[j].astype(np.int16)))
                shard["steps"].append(int(steps[j]))
                shard["labels"].append(labels)
                shard["texts"].append(text)
                shard["kd"].append(kd)
                p = probs[j, : steps[j]]                        # T x C, the teacher's
                best = p.argmax(-1)
                pred = collapse_path(best, np.log(p[np.arange(len(best)), best]), charset).text
                errs += levenshtein(pred, text)
                chars += len(text)
        made += len(pending)
        for s in range(0, len(pending), SHARD_LINES):
            part = {key: v[s:s + SHARD_LINES] for key, v in shard.items()}
            tmp = args.out / f".tmp-{args.seed}-{k:05d}.pt"
            torch.save(part, tmp)
            tmp.rename(args.out / f"shard-{args.seed}-{k:05d}.pt")   # atomic: the trainer never sees half
            k += 1
        logger.info("features: %d lines, %.1f lines/s, teacher CER on them %.2f%%", made,
                    made / max(time.monotonic() - t0, 1e-6), 100 * errs / max(chars, 1))


# ---------------------------------------------------------------------------------------- train
# The student's own parts (`trainable`), by state-dict prefix: what ckpt.pt holds and what a new
# schedule takes from an earlier student.
STUDENT_PARTS = ("rnn.", "proj.")


def student_state(path: Path) -> dict[str, torch.Tensor]:
    """The trained part (BiLSTM and projection, fp32) of a run's ckpt.pt or of a weights file
    (`save_crnn`, e.g. the shipped crnn.pt: its classifier may be cut to fewer classes, so only the
    sequence model is taken from it)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    state = ck["model"] if "model" in ck else ck["state_dict"]
    return {k: v.float() for k, v in state.items() if k.startswith(STUDENT_PARTS)}


class ShardPool:
    """All samples of the shards in a folder (except the validation seed's), reloaded as new
    shards appear; batches are drawn from samples of similar length."""

    def __init__(self, folder: Path, exclude_seed: int) -> None:
        self.folder, self.exclude = folder, f"shard-{exclude_seed}-"
        self.seen: set[str] = set()
        self.samples: list[tuple] = []

    def refresh(self) -> int:
        new = 0
        for p in sorted(self.folder.glob("shard-*.pt")):
            if p.name in self.seen or p.name.startswith(self.exclude):
                continue
            d = torch.load(p, weights_only=True)
            self.samples += _samples(d)
            self.seen.add(p.name)
            new += len(d["steps"])
        if new:
            self.samples.sort(key=lambda s: s[0].shape[0])
        return new

    def batch(self, rng: random.Random, size: int) -> list[tuple]:
        start = rng.randrange(max(1, len(self.samples) - size + 1))
        return self.samples[start:start + size]


def collate(samples: list[tuple]) -> dict:
    lengths = torch.tensor([s[0].shape[0] for s in samples])
    return {
        "feats": nn.utils.rnn.pad_sequence([s[0].float() for s in samples], batch_first=True),   # N x T x 384
        "pre": nn.utils.rnn.pad_sequence([s[1].float() for s in samples], batch_first=True),     # N x T x 120
        "top": torch.cat([s[2].reshape(-1).long() for s in samples]),
        "lengths": lengths,
        "steps": torch.tensor([s[3] for s in samples]),
        "targets": torch.tensor([t for s in samples for t in s[4]]),
        "target_lengths": torch.tensor([len(s[4]) for s in samples]),
        "texts": [s[5] for s in samples],
        "kd": torch.tensor([s[6] for s in samples], dtype=torch.float32),   # N: 0 where only CTC teaches
    }


def _samples(shard: dict) -> list[tuple]:
    """A shard's samples; shards written before clipped lines existed have the teacher's targets
    on every line."""
    kd = shard.get("kd", [1.0] * len(shard["steps"]))
    return list(zip(shard["feats"], shard["pre"], shard["top"], shard["steps"], shard["labels"], shard["texts"], kd))


def student_sequence(model: CRNN, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The BiLSTM over each sample's own frames only (packed: padding never reaches the backward
    direction), then the projection. N x T x 384 → N x T x 120."""
    packed = pack_padded_sequence(feats, lengths, batch_first=True, enforce_sorted=False)
    seq, _ = model.rnn(packed)
    seq, _ = pad_packed_sequence(seq, batch_first=True, total_length=feats.shape[1])
    return model.proj(seq)


def losses(model: CRNN, b: dict, pre_scale: float, full: bool = False) -> dict[str, torch.Tensor]:
    """Distillation losses on a batch; `full` scores all classes (validation), else the batch's
    class subset (see TOP_K)."""
    s = student_sequence(model, b["feats"], b["lengths"])                  # N x T x 120
    mask = (torch.arange(s.shape[1])[None, :] < b["lengths"][:, None]).float()   # N x T
    mask = mask * b["kd"][:, None]                   # the teacher's frames count where it can read
    n = mask.sum().clamp(min=1.0)
    n_classes = model.head.out_features
    if full or n_classes <= NEGATIVES:
        classes = torch.arange(n_classes)
    else:
        # Random other classes too: inference takes the argmax over all of them, so a class that
        # never appears in a batch must still learn to stay low.
        negatives = torch.randint(0, n_classes, (NEGATIVES,))
        classes = torch.unique(torch.cat([torch.zeros(1, dtype=torch.long), b["top"], b["targets"], negatives]))
    w, bias = model.head.weight[classes], model.head.bias[classes]        # K x 120, K
    with torch.no_grad():
        t_logp = F.log_softmax(b["pre"] @ w.T + bias, dim=-1)             # N x T x K
    s_logp = F.log_softmax(s @ w.T + bias, dim=-1)
    kl = ((t_logp.exp() * (t_logp - s_logp)).sum(-1) * mask).sum() / n
    mse = (((s - b["pre"]) ** 2).mean(-1) * mask).sum() / n / pre_scale
    targets = torch.searchsorted(classes, b["targets"])                   # ids within the subset
    ctc = F.ctc_loss(s_logp.transpose(0, 1), targets, b["steps"], b["target_lengths"],
                     blank=0, zero_infinity=True)
    return {"kl": kl, "mse": mse, "ctc": ctc, "loss": kl + MSE_WEIGHT * mse + CTC_WEIGHT * ctc,
            "logp": s_logp.detach(), "classes": classes}


def lr_at(frac: float, peak: float, warm: float = 0.03, floor: float = 0.02) -> float:
    if frac < warm:
        return peak * frac / warm
    t = min(1.0, (frac - warm) / (1 - warm))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def trainable(model: CRNN) -> list[nn.Parameter]:
    return [*model.rnn.parameters(), *model.proj.parameters()]


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    elapsed_before, step, run_index = 0.0, 0, 0
    model, meta = load_crnn(str(args.init))
    charset = Charset(list(meta["charset"]))
    opt = torch.optim.AdamW(trainable(model), lr=args.lr, weight_decay=1e-4)
    if args.resume and args.resume.exists():
        ck = torch.load(args.resume, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() for k, v in ck["model"].items()}, strict=False)
        opt.load_state_dict(ck["opt"])
        elapsed_before, step, run_index = ck["elapsed"], ck["step"], ck["run_index"] + 1
    elif args.warm:
        # A new schedule (fresh optimizer, lr warm-up and cosine again) from a finished run's
        # student: more data or a lower peak after the first schedule has decayed.
        model.load_state_dict(student_state(args.warm), strict=False)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable(model):
        p.requires_grad_(True)
    model.eval()          # the frozen parts have no dropout/BN updates; the LSTM has no dropout
    pool = ShardPool(args.shards, VAL_SEED)
    while pool.refresh() == 0 or len(pool.samples) < max(args.batch, args.min_pool):
        logger.info("waiting for shards in %s (%d samples)", args.shards, len(pool.samples))
        time.sleep(20)
    pre_scale = float(torch.stack([s[1].float().pow(2).mean() for s in pool.samples[:512]]).mean())
    args.out.mkdir(parents=True, exist_ok=True)
    logger.info("distill: run=%d resume_elapsed=%.0fs step=%d samples=%d pre_scale=%.3f trainable=%.2fM",
                run_index, elapsed_before, step, len(pool.samples), pre_scale,
                sum(p.numel() for p in trainable(model)) / 1e6)

    val: dict | None = None

    def validate() -> str:
        nonlocal val
        if val is None:
            found = sorted(args.shards.glob(f"shard-{VAL_SEED}-*.pt"))
            if not found:
                return "no validation shard yet"
            val = collate_all(found[0])
        with torch.no_grad():
            out = losses(model, val, pre_scale, full=True)
        preds = [greedy_decode(row[:n].numpy(), charset).text for row, n in zip(out["logp"], val["steps"])]
        refs = val["texts"]
        cer = sum(levenshtein(p, r) for p, r in zip(preds, refs)) / max(1, sum(map(len, refs)))
        return f"val CER {100 * cer:.2f}% kl {float(out['kl']):.4f} mse {float(out['mse']):.4f}"

    def save(tag: str) -> None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items() if k.startswith(STUDENT_PARTS)}
        torch.save({"model": state, "opt": opt.state_dict(), "elapsed": elapsed_before + trained,
                    "step": step, "run_index": run_index}, args.out / "ckpt.tmp")
        (args.out / "ckpt.tmp").rename(args.out / "ckpt.pt")
        out_meta = {**{k: v for k, v in meta.items() if k != "config"}, "version": args.version,
                    "trained_seconds": round(elapsed_before + trained, 1), "steps": step,
                    "samples_in_pool": len(pool.samples)}
        save_crnn(model, str(args.out / "crnn.tmp"), out_meta, half=True)
        (args.out / "crnn.tmp").rename(args.out / "crnn.pt")
        logger.info("saved %s step=%d", tag, step)

    logger.info("before: %s", validate())
    t0 = time.monotonic()
    trained, last_log, last_val, last_refresh = 0.0, t0, t0, t0
    ema: dict[str, float] = {}
    while True:
        trained = time.monotonic() - t0
        if trained >= args.run_s or elapsed_before + trained >= args.total_s:
            break
        frac = (elapsed_before + trained) / args.total_s
        for g in opt.param_groups:
            g["lr"] = lr_at(frac, args.lr)
        b = collate(pool.batch(rng, args.batch))
        out = losses(model, b, pre_scale)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        nn.utils.clip_grad_norm_(trainable(model), 5.0)
        opt.step()
        step += 1
        for k in ("loss", "kl", "mse", "ctc"):
            v = float(out[k].detach())
            ema[k] = v if k not in ema else 0.98 * ema[k] + 0.02 * v
        now = time.monotonic()
        if now - last_log > 30:
            logger.info("step=%d t=%.0fs frac=%.3f lr=%.2e %s pool=%d", step, trained, frac, opt.param_groups[0]["lr"],
                        " ".join(f"{k}={v:.4f}" for k, v in ema.items()), len(pool.samples))
            last_log = now
        if now - last_refresh > 120:
            added = pool.refresh()
            if added:
                logger.info("pool +%d → %d samples", added, len(pool.samples))
            last_refresh = now
        if now - last_val > args.val_every:
            logger.info("%s", validate())
            save("periodic")
            last_val = now
    trained = time.monotonic() - t0
    logger.info("after: %s", validate())
    save("final")


def collate_all(path: Path, limit: int = 128) -> dict:
    return collate(_samples(torch.load(path, weights_only=True))[:limit])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features", help="render lines and compute the teacher's targets")
    f.add_argument("--onnx", type=Path, required=True)
    f.add_argument("--fonts", type=Path, required=True)
    f.add_argument("--ingredients", type=Path, required=True)
    f.add_argument("--text-charset", type=Path,
                   default=TEXT_CHARSET,
                   help="the training text's alphabet (what the corpus and the subset fonts cover)")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--lines", type=int, default=0, help="stop after this many lines (0 = no limit)")
    f.add_argument("--run-s", type=float, default=1e9)
    f.add_argument("--batch", type=int, default=16)
    f.add_argument("--threads", type=int, default=1)
    f.add_argument("--max-width", type=int, default=1600)
    f.add_argument("--clip", type=float, default=0.0,
                   help="share of lines cut through their glyphs (CTC only, no teacher targets)")
    f.add_argument("--clip-keep", type=share_range, default=CLIP_KEEP, metavar="LO,HI",
                   help="share of the ink's height a clipped line keeps (default %(default)s)")
    t = sub.add_parser("train", help="fit the BiLSTM on the shards")
    t.add_argument("--init", type=Path, required=True, help="converted model (convert_ppocr_v6)")
    t.add_argument("--resume", type=Path, help="continue a run (its optimizer and schedule)")
    t.add_argument("--warm", type=Path,
                   help="start a new schedule from a student: a run's ckpt.pt or a weights file (crnn.pt)")
    t.add_argument("--shards", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--run-s", type=float, default=600)
    t.add_argument("--total-s", type=float, default=3600)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--val-every", type=float, default=300)
    t.add_argument("--min-pool", type=int, default=512, help="samples to wait for before training starts")
    t.add_argument("--version", default="v2")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    make_features(args) if args.cmd == "features" else train(args)


if __name__ == "__main__":
    main()
