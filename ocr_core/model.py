"""The CRNN: a convolutional feature extractor → 2-layer BiLSTM → linear → linear → CTC.

The CNN is PP-OCRv6 small's (Apache-2.0, from the `rapidocr==3.10.0` wheel), written out by hand
and loaded by our converter (`ocr_core.train.convert_ppocr_v6`); so is the final classifier. The
sequence model between them is ours: a BiLSTM trained by distillation from PP-OCRv6's own
attention neck (`ocr_core.train.distill`), so the product stays a CRNN.

Class 0 is the CTC blank, the last class the space. Input: colour (BGR) scaled to [-1, 1], height
48; width is free and every 8 input columns become one output time step, so long lines are never cut.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

INPUT_HEIGHT = 48
WIDTH_STRIDE = 8  # input columns per CTC time step


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


class ConvAct(nn.Module):
    """Convolution with a bias (its BatchNorm already folded in by the exporter), then an activation."""

    def __init__(self, cin: int, cout: int, k: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 groups: int = 1, act: str | None = None, padding: int | str | None = None) -> None:
        super().__init__()
        kh, kw = (k, k) if isinstance(k, int) else k
        pad = (kh // 2, kw // 2) if padding is None else padding
        self.conv = nn.Conv2d(cin, cout, (kh, kw), stride=stride, padding=pad, groups=groups, bias=True)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.act == "relu":
            return F.relu(x)
        if self.act == "gelu":
            return F.gelu(x)            # exact (erf) GELU, as the exported graph computes it
        return x


class Stem(nn.Module):
    """HGNet-style stem: 3x3/2 → (2x2 → 2x2 ‖ 2x2 max-pool) → concat → 3x3/2 → 1x1.

    N x 3 x 48 x W → N x 96 x 12 x W/4. The 2x2 convolutions and the pool pad one row and one
    column at the bottom/right ("SAME_UPPER"), so the spatial size is kept."""

    def __init__(self, c_mid: int = 48, c_out: int = 96) -> None:
        super().__init__()
        self.conv1 = ConvAct(3, c_mid, 3, stride=2, act="relu")
        self.conv2a = ConvAct(c_mid, c_mid // 2, 2, act="relu", padding=0)
        self.conv2b = ConvAct(c_mid // 2, c_mid, 2, act="relu", padding=0)
        self.conv3 = ConvAct(2 * c_mid, c_mid, 3, stride=2, act="relu")
        self.conv4 = ConvAct(c_mid, c_out, 1, act="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)                                          # N x 48 x H/2 x W/2
        a = self.conv2b(F.pad(self.conv2a(F.pad(x, (0, 1, 0, 1))), (0, 1, 0, 1)))
        b = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 2, 1)
        x = self.conv3(torch.cat([b, a], dim=1))                   # N x 48 x H/4 x W/4
        return self.conv4(x)                                       # N x 96 x H/4 x W/4


class MixerBlock(nn.Module):
    """Token mixer (3x3 depthwise, re-parameterised: its identity branch is folded into the kernel;
    optional squeeze-excite) then a residual channel mixer (1x1 expand x2 → GELU → 1x1)."""

    def __init__(self, c: int, se: bool) -> None:
        super().__init__()
        self.dw = ConvAct(c, c, 3, groups=c)
        self.se = SqueezeExcite(c) if se else nn.Identity()
        self.expand = ConvAct(c, 2 * c, 1, act="gelu")
        self.reduce = ConvAct(2 * c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.dw(x))
        return x + self.reduce(self.expand(x))


class Downsample(nn.Module):
    """Halves the height only: 3x3 depthwise stride (2, 1) → 1x1 widen → GELU → 1x1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.dw = ConvAct(cin, cin, 3, stride=(2, 1), groups=cin)
        self.pw1 = ConvAct(cin, cout, 1, act="gelu")
        self.pw2 = ConvAct(cout, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.pw1(self.dw(x)))


# Stages of the PP-OCRv6 small recognizer's CNN: channels and, per block, squeeze-excite or not.
_STAGES: list[tuple[int, tuple[bool, ...]]] = [
    (96, (True, False, False)),
    (192, (True, False, True, False, True, False)),
    (384, (True, False)),
]
FEATURE_CHANNELS = 384


class RecBackbone(nn.Module):
    """PP-OCRv6 small's convolutional feature extractor, written out by hand so that its
    Apache-2.0 weights load by name (`ocr_core.train.convert_ppocr_v6`).

    N x 3 x 48 x W float in [-1, 1] (BGR) → N x 384 x 1 x W/8."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [Stem(48, _STAGES[0][0])]
        for i, (c, ses) in enumerate(_STAGES):
            if i:
                layers.append(Downsample(_STAGES[i - 1][0], c))
            layers += [MixerBlock(c, se) for se in ses]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.layers(x))                           # N x 384 x 1 x W/8

    @staticmethod
    def pool(cols: torch.Tensor, step: int = 2) -> torch.Tensor:
        """The CNN's last map, N x 384 x 3 x W/4 → N x 384 x 1 x T: the mean of each 3 x 2 window.
        `step` 2 (the model's own stride) gives T = W/8; step 1 gives T = W/4 - 1 steps from the
        same map, each window overlapping the next by one column: the line read at twice as many
        steps without running the CNN again (`Predictor`'s second look)."""
        return F.avg_pool2d(cols, (3, 2), (3, step))


@dataclass(frozen=True)
class CRNNConfig:
    num_classes: int            # including the blank at index 0 (and the space as a class)
    hidden: int = 128           # LSTM hidden size per direction
    proj: int = 120             # width of the vector the classifier reads (the teacher's)


class CRNN(nn.Module):
    """CNN → 2-layer BiLSTM → linear (2H → 120) → linear classifier → CTC log-probabilities.

    N x 3 x 48 x W float in [-1, 1] → N x T x C, T = W // 8."""

    def __init__(self, cfg: CRNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = RecBackbone()
        self.rnn = nn.LSTM(FEATURE_CHANNELS, cfg.hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.proj = nn.Linear(2 * cfg.hidden, cfg.proj)
        self.head = nn.Linear(cfg.proj, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_from(self.columns(x))                # N x T x 384

    def columns(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x 48 x W → the CNN's map before its last pooling, N x 384 x 3 x W/4."""
        assert x.shape[2] == INPUT_HEIGHT, f"input height must be {INPUT_HEIGHT}, got {x.shape[2]}"
        return self.backbone.layers(x)

    def features_from(self, cols: torch.Tensor, step: int = 2) -> torch.Tensor:
        """`columns` → the sequence model's input, N x T x 384 (`RecBackbone.pool`'s `step`)."""
        return self.backbone.pool(cols, step).squeeze(2).transpose(1, 2)

    def sequence(self, feats: torch.Tensor) -> torch.Tensor:
        """N x T x 384 CNN features → N x T x 120, the vector the classifier reads."""
        seq, _ = self.rnn(feats)                                   # N x T x 2H
        return self.proj(seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.sequence(self.features(x)))       # N x T x C
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
    meta["config"] = {"num_classes": cfg.num_classes, "hidden": cfg.hidden, "proj": cfg.proj}
    write_weights(model, path, meta, half=half)
