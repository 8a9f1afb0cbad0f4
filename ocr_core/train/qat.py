"""Quantization-aware fine-tuning of the recognizer for its int8 first reading (`ocr_core.quantized`).

The CNN's 26 1x1 convolutions ("pw") are fake-quantized in torch exactly where onnxruntime's QDQ
graph quantizes them: each one's input and output per tensor (u8 with a zero point, the range an
exponential moving average of each batch's min/max) and its weights per output channel (s8,
symmetric over [-127, 127]); in a mixer block the residual reads the quantized input too, as the
QDQ graph's `Add` does. The model then learns to read through that rounding, distilled from itself
in fp32 (the teacher, in onnxruntime): per frame KL(teacher ‖ student) over the classifier + 2 x
MSE to the teacher's 120-d vector + 0.2 x CTC on the true text (`--ctc-weight`), as `distill`
does; synthetic lines (`render`, 15 % clipped as by a picture's edge), batches of 16 of similar
width. Trained: the CNN after its stem, the BiLSTM and the projection; the stem (never quantized)
and the classifier stay.
After `--freeze-at` of the steps the ranges stop moving, so the last steps fit the ranges shipped.

It writes OUT/ckpt.pt (resumable: model with its observers, optimizer, step) every few minutes and
OUT/crnn.pt at the end: the fine-tuned weights (fp16, as `save_crnn` writes them) with the ranges in
`meta["int8"]["ranges"]`, which the int8 graph is built from at load time. The same file reads in
fp32 too, but the product reads fp32 from the weights it was tuned from (fine-tuning moves the fp32
reading a little: docs/benchmarks.md, "Session 18").

The defaults (700 steps, seed 45, learning rates 1.5e-5 for the CNN and 5e-5 for the BiLSTM and
projection) made the shipped `ocr_core/weights/crnn-int8.pt` from `crnn.pt` in 50 minutes on 2 CPU
threads ("Session 19"):

    python -m ocr_core.train.qat --weights crnn.pt --fonts F --ingredients I --out RUN
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, PerChannelMinMaxObserver
from torch.nn import functional as F

from ocr_core.charset import Charset
from ocr_core.model import CRNN, Downsample, MixerBlock, load_crnn, save_crnn
from ocr_core.preprocess import batch_lines, to_model_input
from ocr_core.quantized import PW_CONV_COUNT, range_key
from ocr_core.runtime import export_onnx, onnx_session
from ocr_core.train import TEXT_CHARSET
from ocr_core.train.corpus import LineSampler, load_ingredients
from ocr_core.train.distill import CLIP_KEEP, CTC_WEIGHT, MSE_WEIGHT, draw_line, lr_at, student_sequence
from ocr_core.train.render import LineRenderer, load_faces

logger = logging.getLogger(__name__)
BATCH = 16
CLIP_SHARE = 0.15            # lines cut through their glyphs, as by a picture's edge
MAX_WIDTH = 1200             # prepared columns; wider lines are skipped (memory, and rare)
WARM_BATCHES = 12            # batches the observers see before the first update
SAVE_EVERY_S = 300.0


def act_fake_quant() -> FakeQuantize:
    """u8 per tensor with a zero point, the range a moving average of batch min/max."""
    return FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8,
                        qscheme=torch.per_tensor_affine, averaging_constant=0.01)


def weight_fake_quant() -> FakeQuantize:
    """s8 per output channel, symmetric over [-127, 127] (onnxruntime's scale: max |w| / 127)."""
    return FakeQuantize(observer=PerChannelMinMaxObserver, quant_min=-127, quant_max=127, dtype=torch.qint8,
                        qscheme=torch.per_channel_symmetric, ch_axis=0)


class QuantConv(nn.Module):
    """A pw `ConvAct`'s convolution as the QDQ graph runs it: [input quantized], weights quantized,
    output quantized (before the activation). Shares the original's parameters."""

    def __init__(self, conv: nn.Conv2d, quant_input: bool) -> None:
        super().__init__()
        assert conv.kernel_size == (1, 1) and conv.groups == 1
        self.weight, self.bias = conv.weight, conv.bias
        self.iq = act_fake_quant() if quant_input else None
        self.wq = weight_fake_quant()
        self.oq = act_fake_quant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.iq is not None:
            x = self.iq(x)
        return self.oq(F.conv2d(x, self.wq(self.weight), self.bias))


def _mixer_forward(self: MixerBlock, x: torch.Tensor) -> torch.Tensor:
    # The QDQ graph's residual Add reads the dequantized input the expand convolution reads.
    x = getattr(self, "xq")(self.se(self.dw(x)))
    return x + self.reduce(self.expand(x))


def fake_quantized(model: CRNN) -> CRNN:
    """`model` (changed in place) with its pw convolutions fake-quantized."""
    n = 0
    for block in model.backbone.layers:
        if isinstance(block, MixerBlock):
            block.xq = act_fake_quant()        # the expand convolution's input (and the residual's)
            setattr(block.expand, "conv", QuantConv(block.expand.conv, quant_input=False))
            setattr(block.reduce, "conv", QuantConv(block.reduce.conv, quant_input=True))
            block.forward = types.MethodType(_mixer_forward, block)   # type: ignore[method-assign]
            n += 2
        elif isinstance(block, Downsample):
            setattr(block.pw1, "conv", QuantConv(block.pw1.conv, quant_input=True))
            setattr(block.pw2, "conv", QuantConv(block.pw2.conv, quant_input=True))
            n += 2
    assert n == PW_CONV_COUNT, n
    return model


def _range(fq: Any) -> list[float]:
    obs = fq.activation_post_process
    return [float(obs.min_val), float(obs.max_val)]


def activation_ranges(model: CRNN) -> dict[str, list[float]]:
    """The observers' ranges under `ocr_core.quantized.range_key` names."""
    out: dict[str, list[float]] = {}
    for i, block in enumerate(model.backbone.layers):
        if isinstance(block, MixerBlock):
            out[range_key(i, "expand", "in")] = _range(getattr(block, "xq"))
            names = ("expand", "reduce")
        elif isinstance(block, Downsample):
            names = ("pw1", "pw2")
        else:
            continue
        for name in names:
            conv: Any = getattr(block, name).conv
            if conv.iq is not None:
                out[range_key(i, name, "in")] = _range(conv.iq)
            out[range_key(i, name, "out")] = _range(conv.oq)
    return out


def plain_state(model: CRNN) -> dict[str, torch.Tensor]:
    """The fake-quantized model's parameters under the plain CRNN's names (observers dropped)."""
    drop = (".iq.", ".oq.", ".wq.", ".xq.")
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not any(d in k for d in drop)}


def set_observers(model: nn.Module, on: bool) -> None:
    for m in model.modules():
        if isinstance(m, FakeQuantize):
            if on:
                m.enable_observer()
            else:
                m.disable_observer()


class _Teacher(nn.Module):
    """The fp32 model up to the vector its classifier reads: N x 3 x 48 x W → N x T x 120."""

    def __init__(self, model: CRNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.sequence(self.model.features(x))


class Lines:
    """Synthetic training lines, prepared as inference prepares them, with their labels."""

    def __init__(self, fonts: Path, ingredients: Path, charset: Charset, seed: int) -> None:
        self.sampler = LineSampler(load_ingredients(ingredients), Charset.from_file(TEXT_CHARSET), seed)
        self.renderer = LineRenderer(load_faces(fonts), seed)
        self.clip_rng = random.Random(seed * 7919 + 1)
        self.charset = charset

    def take(self, n: int) -> list[tuple[np.ndarray, list[int]]]:
        """n lines (48 x W x 3 uint8, label ids), narrowest first."""
        got: list[tuple[np.ndarray, list[int]]] = []
        while len(got) < n:
            line = draw_line(self.sampler, self.renderer, self.charset, self.clip_rng, CLIP_SHARE, CLIP_KEEP,
                             MAX_WIDTH)
            if line is not None:
                got.append(line[:2])
        got.sort(key=lambda s: s[0].shape[1])
        return got


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(1)
    base, meta = load_crnn(str(args.weights))
    charset = Charset(list(meta["charset"]))
    teacher_graph = export_onnx(_Teacher(base).eval(), torch.zeros(2, 3, 48, 320), ["pre"],
                                {"x": {0: "n", 3: "w"}, "pre": {0: "n", 1: "t"}})
    teacher = onnx_session(teacher_graph, args.threads)
    student = fake_quantized(base).train()
    for p in student.parameters():
        p.requires_grad_(False)
    cnn = [p for block in list(student.backbone.layers)[1:] for p in block.parameters()]
    neck = [*student.rnn.parameters(), *student.proj.parameters()]
    for p in cnn + neck:
        p.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": cnn, "peak": args.lr_cnn}, {"params": neck, "peak": args.lr_neck}],
                            lr=args.lr_cnn, weight_decay=0.0)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "ckpt.pt"
    step, pre_scale, seconds = 0, None, 0.0
    data_seed = args.seed
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        student.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, pre_scale, seconds = ck["step"], ck["pre_scale"], ck.get("seconds", 0.0)
        data_seed = args.seed + step           # a resumed run draws new lines
        logger.info("resumed at step %d", step)
    lines = Lines(args.fonts, args.ingredients, charset, data_seed)
    head = student.head
    t0 = time.monotonic()
    if step == 0:
        with torch.no_grad():
            for _ in range(WARM_BATCHES):
                x, _ = batch_lines([to_model_input(u8) for u8, _ in lines.take(BATCH)])
                student.features(torch.from_numpy(x))
        logger.info("observers warmed in %.0f s", time.monotonic() - t0)
    queue: list[list[tuple[np.ndarray, list[int]]]] = []
    ema: dict[str, float] = {}
    last_save = time.monotonic()

    def save() -> None:
        torch.save({"model": student.state_dict(), "opt": opt.state_dict(), "step": step,
                    "pre_scale": pre_scale, "seconds": seconds + time.monotonic() - t0},
                   args.out / "ckpt.pt.tmp")
        os.replace(args.out / "ckpt.pt.tmp", ckpt_path)

    while step < args.steps:
        frac = step / args.steps
        if frac >= args.freeze_at:
            set_observers(student, False)
        for g in opt.param_groups:
            g["lr"] = lr_at(frac, g["peak"])
        if not queue:
            # four batches' lines at once, cut into batches of similar width: less padding
            pool = lines.take(4 * BATCH)
            queue = [pool[i:i + BATCH] for i in range(0, len(pool), BATCH)]
            random.Random(step).shuffle(queue)
        group = queue.pop()
        x, steps = batch_lines([to_model_input(u8) for u8, _ in group])
        pre_t = torch.from_numpy(teacher.run(None, {"x": x})[0])             # N x T x 120
        feats = student.features(torch.from_numpy(x))                         # N x T x 384
        lengths = torch.from_numpy(steps)
        if pre_scale is None:
            pre_scale = float(pre_t.pow(2).mean())
        s = student_sequence(student, feats, lengths)                          # N x T x 120
        mask = (torch.arange(s.shape[1])[None, :] < lengths[:, None]).float()
        n = mask.sum()
        with torch.no_grad():
            t_logp = F.log_softmax(head(pre_t), -1)                            # N x T x C
        s_logp = F.log_softmax(head(s), -1)
        kl = ((t_logp.exp() * (t_logp - s_logp)).sum(-1) * mask).sum() / n
        mse = (((s - pre_t) ** 2).mean(-1) * mask).sum() / n / pre_scale
        targets = torch.tensor([t for _, label in group for t in label])
        target_lengths = torch.tensor([len(label) for _, label in group])
        ctc = F.ctc_loss(s_logp.transpose(0, 1), targets, lengths, target_lengths, blank=0, zero_infinity=True)
        loss = kl + MSE_WEIGHT * mse + args.ctc_weight * ctc
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(cnn + neck, 5.0)
        opt.step()
        step += 1
        for k, v in (("loss", loss), ("kl", kl), ("mse", mse), ("ctc", ctc)):
            ema[k] = float(v.detach()) if k not in ema else 0.98 * ema[k] + 0.02 * float(v.detach())
        if step % 10 == 0:
            logger.info("step %d t=%.0f %s", step, time.monotonic() - t0,
                        " ".join(f"{k}={v:.4f}" for k, v in ema.items()))
        if time.monotonic() - last_save > SAVE_EVERY_S:
            save()
            last_save = time.monotonic()
    save()
    write_result(student, meta, args.out / "crnn.pt", version=args.version,
                 qat={"steps": step, "seed": args.seed, "seconds": round(seconds + time.monotonic() - t0, 1)})


def write_result(student: CRNN, meta: dict, path: Path, *, version: str, qat: dict) -> None:
    """The fake-quantized student as a weights file: its parameters (fp16) and, in its meta, the
    activation ranges the int8 graph is built from. `meta`: the fp32 weights' it was tuned from."""
    plain = CRNN(student.cfg)
    plain.load_state_dict(plain_state(student))
    out_meta = {k: v for k, v in meta.items() if k != "config"}
    out_meta.update(version=version, int8={"convs": "pw", "ranges": activation_ranges(student)},
                    qat={**qat, "from": meta.get("version", "")})
    save_crnn(plain, str(path), out_meta)
    logger.info("wrote %s (%s)", path, qat)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, required=True, help="the fp32-trained recognizer (crnn.pt)")
    p.add_argument("--fonts", type=Path, required=True)
    p.add_argument("--ingredients", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--seed", type=int, default=45)
    p.add_argument("--lr-cnn", type=float, default=1.5e-5)
    p.add_argument("--lr-neck", type=float, default=5e-5)
    p.add_argument("--ctc-weight", type=float, default=CTC_WEIGHT,
                   help="weight of CTC on the true text (0: the student only learns to read as its fp32 self)")
    p.add_argument("--freeze-at", type=float, default=0.7, help="share of the steps after which ranges stay")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--version", default="v2.1")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(args)


if __name__ == "__main__":
    main()
