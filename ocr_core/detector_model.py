"""A DB (differentiable binarisation) text detector in the PP-OCRv3 mobile layout, for photos.

MobileNetV3-large ×0.5 (no squeeze-excite in the backbone) → RSE-FPN (96 channels) → DB head
(probability map at input resolution). Modules are built in the same order as PaddleOCR builds its
parameters, so the converter (`ocr_core.train.convert_ppocr_det`) can match weights by index.
Inference only needs the probability branch; the threshold branch exists only in training.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ocr_core.model import SqueezeExcite, read_weights, write_weights


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = {"relu": nn.ReLU(), "hardswish": nn.Hardswish(), None: nn.Identity()}[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ResidualUnit(nn.Module):
    """Inverted residual: 1x1 expand → k x k depthwise → 1x1 project (+ input when shapes match)."""

    def __init__(self, cin: int, mid: int, cout: int, k: int, stride: int, act: str) -> None:
        super().__init__()
        self.expand = ConvBN(cin, mid, 1, act=act)
        self.depthwise = ConvBN(mid, mid, k, stride, groups=mid, act=act)
        self.project = ConvBN(mid, cout, 1)
        self.shortcut = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.shortcut else y


# kernel, expansion, out channels, activation, stride (MobileNetV3-large, before scaling)
_LARGE = [
    (3, 16, 16, "relu", 1), (3, 64, 24, "relu", 2), (3, 72, 24, "relu", 1),
    (5, 72, 40, "relu", 2), (5, 120, 40, "relu", 1), (5, 120, 40, "relu", 1),
    (3, 240, 80, "hardswish", 2), (3, 200, 80, "hardswish", 1), (3, 184, 80, "hardswish", 1),
    (3, 184, 80, "hardswish", 1), (3, 480, 112, "hardswish", 1), (3, 672, 112, "hardswish", 1),
    (5, 672, 160, "hardswish", 2), (5, 960, 160, "hardswish", 1), (5, 960, 160, "hardswish", 1),
]


class MobileNetV3(nn.Module):
    """Four feature maps at strides 4, 8, 16 and 32 (channels 16, 24, 56, 480 at scale 0.5)."""

    def __init__(self, scale: float = 0.5) -> None:
        super().__init__()
        cin = make_divisible(16 * scale)
        self.stem = ConvBN(3, cin, 3, 2, act="hardswish")
        stages: list[nn.Sequential] = []
        blocks: list[nn.Module] = []
        self.out_channels: list[int] = []
        for i, (k, exp, c, act, s) in enumerate(_LARGE):
            if s == 2 and i > 2:      # a new stage starts where the resolution halves
                self.out_channels.append(cin)
                stages.append(nn.Sequential(*blocks))
                blocks = []
            cout = make_divisible(scale * c)
            blocks.append(ResidualUnit(cin, make_divisible(scale * exp), cout, k, s, act))
            cin = cout
        last = make_divisible(scale * 960)
        blocks.append(ConvBN(cin, last, 1, act="hardswish"))
        stages.append(nn.Sequential(*blocks))
        self.out_channels.append(last)
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)                        # N x 8 x H/2 x W/2
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class RSELayer(nn.Module):
    """Convolution (no bias, no norm) whose output is reweighted by squeeze-excite, plus itself."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.se = SqueezeExcite(cout, slope=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + self.se(y)


class RSEFPNLevel(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.lateral = RSELayer(cin, cout, 1)       # built before `smooth`, as Paddle does
        self.smooth = RSELayer(cout, cout // 4, 3)


class RSEFPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int = 96) -> None:
        super().__init__()
        self.levels = nn.ModuleList(RSEFPNLevel(c, out_channels) for c in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        c2, c3, c4, c5 = feats
        # (ModuleList items are typed nn.Module, whose attributes torch types as Tensor | Module)
        l2, l3, l4, l5 = (lvl.lateral(f) for lvl, f in zip(self.levels, feats))  # type: ignore[operator]
        up = lambda t, s: F.interpolate(t, scale_factor=s, mode="nearest")  # noqa: E731
        out4 = l4 + up(l5, 2)
        out3 = l3 + up(out4, 2)
        out2 = l2 + up(out3, 2)                 # N x 96 x H/4 x W/4
        p5 = up(self.levels[3].smooth(l5), 8)  # type: ignore[operator]
        p4 = up(self.levels[2].smooth(out4), 4)  # type: ignore[operator]
        p3 = up(self.levels[1].smooth(out3), 2)  # type: ignore[operator]
        p2 = self.levels[0].smooth(out2)  # type: ignore[operator]
        return torch.cat([p5, p4, p3, p2], dim=1)   # N x 96 x H/4 x W/4


class DBHead(nn.Module):
    def __init__(self, cin: int = 96) -> None:
        super().__init__()
        mid = cin // 4
        self.conv = nn.Conv2d(cin, mid, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.up1 = nn.ConvTranspose2d(mid, mid, 2, 2)
        self.bn2 = nn.BatchNorm2d(mid)
        self.up2 = nn.ConvTranspose2d(mid, 1, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv(x)))      # N x 24 x H/4 x W/4
        x = F.relu(self.bn2(self.up1(x)))       # N x 24 x H/2 x W/2
        return torch.sigmoid(self.up2(x))       # N x 1 x H x W: probability of "inside a text line"


class DBNet(nn.Module):
    """Input N x 3 x H x W (H, W multiples of 32; BGR, ImageNet-normalised) → N x 1 x H x W."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = MobileNetV3(0.5)
        self.neck = RSEFPN(self.backbone.out_channels, 96)
        self.head = DBHead(96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.neck(self.backbone(x)))


def save_dbnet(model: DBNet, path: str, meta: dict, *, half: bool = True) -> None:
    """Weights in fp16 (half the size); batch-norm statistics stay fp32: the head's running
    variance reaches ~5e7, past fp16's 65,504, and would turn the whole map to zero."""
    write_weights(model, path, meta, half=half, keep_fp32=("running_",))


def load_dbnet(source: str | bytes) -> tuple[DBNet, dict]:
    """Load weights written by `save_dbnet` (a path, or the file's bytes), in eval mode (fp32)."""
    state, meta = read_weights(source)
    model = DBNet()
    model.load_state_dict(state)
    model.eval()
    return model, meta
