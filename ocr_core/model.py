"""The CRNN: a MobileNetV1-style convolutional feature extractor → 2-layer BiLSTM → linear → CTC.

The layout follows PP-OCRv2's recognizer (MobileNetV1Enhance, scale 0.5) so that its Apache-2.0
weights can warm-start ours (see `ocr_core.train.convert_ppocr`), but the input is a single grey
channel: preprocessing normalises colour away, and the first convolution's RGB kernels are summed.

Class 0 is the CTC blank. Input height must be 32; width is free (≥ 8) and every 4 input columns
become one output time step, so long lines are never cut.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

INPUT_HEIGHT = 32
WIDTH_STRIDE = 4  # input columns per CTC time step


class ConvBNAct(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int | tuple[int, int] = 1,
                 groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.hardswish(x) if self.act else x


class SqueezeExcite(nn.Module):
    """Channel reweighting by a hard sigmoid of pooled features. PP-OCR's recognizer uses the
    usual slope 1/6; its DB detector uses 0.2 (`ocr_core.detector_model`)."""

    def __init__(self, c: int, reduction: int = 4, slope: float = 1 / 6) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, c // reduction, 1)
        self.expand = nn.Conv2d(c // reduction, c, 1)
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)                       # N x C x 1 x 1
        s = self.expand(F.relu(self.reduce(s)))
        return x * torch.clamp(self.slope * s + 0.5, 0.0, 1.0)


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int | tuple[int, int], se: bool) -> None:
        super().__init__()
        self.dw = ConvBNAct(cin, cin, k, stride=stride, groups=cin)
        self.se = SqueezeExcite(cin) if se else nn.Identity()
        self.pw = ConvBNAct(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.se(self.dw(x)))


# (cin, cout, kernel, stride, squeeze-excite); strides (2, 1) halve the height only.
_BLOCKS: list[tuple[int, int, int, int | tuple[int, int], bool]] = [
    (16, 32, 3, 1, False),
    (32, 64, 3, 1, False),
    (64, 64, 3, 1, False),
    (64, 128, 3, (2, 1), False),
    (128, 128, 3, 1, False),
    (128, 256, 3, (2, 1), False),
    *[(256, 256, 5, 1, False)] * 5,
    (256, 512, 5, (2, 1), True),
    (512, 512, 5, 1, True),
]


@dataclass(frozen=True)
class CRNNConfig:
    num_classes: int            # including the blank at index 0
    hidden: int = 64            # LSTM hidden size per direction
    head_mid: int = 96          # width of the bottleneck between the two linear layers
    in_channels: int = 1


class CRNN(nn.Module):
    """N x 1 x 32 x W float in [-1, 1] → N x T x C log-probabilities, T = W // 4."""

    def __init__(self, cfg: CRNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = ConvBNAct(cfg.in_channels, 16, 3, stride=2)
        self.blocks = nn.Sequential(*[DepthwiseSeparable(*b) for b in _BLOCKS])
        self.rnn = nn.LSTM(512, cfg.hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.fc1 = nn.Linear(2 * cfg.hidden, cfg.head_mid)
        self.fc2 = nn.Linear(cfg.head_mid, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2] == INPUT_HEIGHT, f"input height must be {INPUT_HEIGHT}, got {x.shape[2]}"
        x = self.stem(x)                        # N x 16 x 16 x W/2
        x = self.blocks(x)                      # N x 512 x 2 x W/2
        x = F.max_pool2d(x, 2, 2)               # N x 512 x 1 x W/4
        assert x.shape[2] == 1, "conv height must reach 1"
        return x.squeeze(2).transpose(1, 2)     # N x T x 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.features(x)                  # N x T x 512
        seq, _ = self.rnn(seq)                  # N x T x 128
        logits = self.fc2(self.fc1(seq))        # N x T x C
        return F.log_softmax(logits.float(), dim=-1)


def read_weights(source: str | bytes, map_location: str = "cpu") -> tuple[dict, dict]:
    """A weights file written by `write_weights` (a path, or the file's bytes) → (fp32 state, meta)."""
    ckpt = torch.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                      map_location=map_location, weights_only=True)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    return state, ckpt["meta"]


def write_weights(model: nn.Module, path: str, meta: dict, *, half: bool = True,
                  keep_fp32: tuple[str, ...] = ()) -> None:
    """State dict (fp16 by default, except keys containing one of `keep_fp32`) and meta, no
    optimizer state."""
    def store(k: str, v: torch.Tensor) -> torch.Tensor:
        if half and v.is_floating_point() and not any(part in k for part in keep_fp32):
            return v.detach().half().cpu()
        return v.detach().cpu()

    torch.save({"state_dict": {k: store(k, v) for k, v in model.state_dict().items()}, "meta": dict(meta)}, path)


def load_crnn(source: str | bytes, map_location: str = "cpu") -> tuple[CRNN, dict]:
    """Load a checkpoint written by `save_crnn` (a path, or the file's bytes); returns the model in
    eval mode (fp32) and its meta."""
    state, meta = read_weights(source, map_location)
    model = CRNN(CRNNConfig(**meta["config"]))
    model.load_state_dict(state)
    model.eval()
    return model, meta


def save_crnn(model: CRNN, path: str, meta: dict, *, half: bool = True) -> None:
    """Write weights (fp16 by default: identical CER at half the size) with config and charset."""
    cfg = model.cfg
    meta = dict(meta)
    meta["config"] = {"num_classes": cfg.num_classes, "hidden": cfg.hidden,
                      "head_mid": cfg.head_mid, "in_channels": cfg.in_channels}
    write_weights(model, path, meta, half=half)
