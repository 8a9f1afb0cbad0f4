"""Render one synthetic text line and degrade it like a real capture, then crop it the way the
line finder crops (ink box padded by a fraction of the line height).

Augmentations: colours and dark mode, gradients and uneven light, blur, noise, JPEG down to q20,
low contrast, ±3° rotation with a tight re-crop, mild perspective, low resolution upscaled,
underline and table-rule clutter, neighbouring-line fragments, letter spacing.
"""
from __future__ import annotations

import io
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont


@dataclass
class Face:
    path: str
    kind: str          # "cjk" or "latin"
    chars: frozenset[str]


def load_faces(font_dir: Path) -> list[Face]:
    meta = json.loads((font_dir / "fonts.json").read_text(encoding="utf-8"))
    return [Face(str(font_dir / m["file"]), m["kind"], frozenset(m["chars"])) for m in meta]


class LineRenderer:
    def __init__(self, faces: list[Face], seed: int) -> None:
        self.faces = faces
        self.rng = random.Random(seed)
        self.nprng = np.random.default_rng(seed)
        self._font_cache: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}

    def font(self, path: str, size: int) -> ImageFont.FreeTypeFont:
        key = (path, size)
        f = self._font_cache.get(key)
        if f is None:
            if len(self._font_cache) > 600:
                self._font_cache.clear()
            f = self._font_cache[key] = ImageFont.truetype(path, size)
        return f

    def pick_face(self, text: str) -> Face | None:
        needed = set(text) - {" "}
        ok = [f for f in self.faces if needed <= f.chars]
        if not ok:
            return None
        latin = [f for f in ok if f.kind == "latin"]
        # Latin-only lines get a Latin face most of the time, but CJK faces' Latin glyphs occur in
        # real Chinese documents too.
        if latin and self.rng.random() < 0.6:
            return self.rng.choice(latin)
        return self.rng.choice(ok)

    # ------------------------------------------------------------------------------------------
    def render(self, text: str) -> np.ndarray | None:
        """RGB uint8 crop of the rendered, degraded line, or None if no face covers the text."""
        face = self.pick_face(text)
        if face is None:
            return None
        rng = self.rng
        size = rng.choice([rng.randint(12, 22), rng.randint(18, 40), rng.randint(28, 64)])
        font = self.font(face.path, size)
        spacing = 0 if rng.random() < 0.8 else rng.uniform(-0.04, 0.25) * size

        # Colours: mostly dark on light; dark mode and coloured backgrounds sometimes.
        r = rng.random()
        if r < 0.6:
            bg = (np.array([rng.randint(215, 255)] * 3)
                  - np.array([rng.randint(0, 20) for _ in range(3)]) * (rng.random() < 0.3))
            fg = (np.array([rng.randint(0, 70)] * 3)
                  + np.array([rng.randint(0, 60) for _ in range(3)]) * (rng.random() < 0.3))
        elif r < 0.78:  # dark mode
            bg = np.array([rng.randint(0, 60) for _ in range(3)])
            fg = (np.array([rng.randint(170, 255)] * 3)
                  - np.array([rng.randint(0, 40) for _ in range(3)]) * (rng.random() < 0.3))
        else:  # coloured background, contrasting text
            bg = np.array([rng.randint(0, 255) for _ in range(3)])
            lum = bg @ np.array([0.299, 0.587, 0.114])
            fg = np.array([rng.randint(0, 50)] * 3) if lum > 128 else np.array([rng.randint(200, 255)] * 3)
            if rng.random() < 0.3:
                fg = np.clip(fg + np.array([rng.randint(-40, 40) for _ in range(3)]), 0, 255)
        if rng.random() < 0.08:  # low contrast
            fg = (bg * 0.55 + fg * 0.45).astype(int)

        # Measure and draw.
        widths = [font.getlength(c) for c in text] if spacing else None
        total_w = int(sum(widths) + spacing * (len(text) - 1)) if widths else int(font.getlength(text))
        ascent, descent = font.getmetrics()
        line_h = ascent + descent
        margin_x, margin_y = size + 8, size + 8
        W, H = total_w + 2 * margin_x, line_h + 2 * margin_y
        if W > 6000:
            return None
        img = Image.new("RGB", (W, H), tuple(int(v) for v in bg))
        draw = ImageDraw.Draw(img)
        fg_t = tuple(int(v) for v in fg)
        if widths:
            x = float(margin_x)
            for c, w in zip(text, widths):
                draw.text((x, margin_y), c, font=font, fill=fg_t)
                x += w + spacing
        else:
            draw.text((margin_x, margin_y), text, font=font, fill=fg_t)
        if rng.random() < 0.04:  # faux bold
            draw.text((margin_x + 1, margin_y), text, font=font, fill=fg_t) if not widths else None

        arr = np.asarray(img).copy()
        # Horizontal ink extent from the font's boxes (cheaper than scanning pixels); the vertical
        # extent uses the font metrics so that crops keep a consistent baseline position.
        if widths:
            x0 = margin_x + int(font.getbbox(text[0])[0])
            x1 = int(x - spacing - widths[-1] + font.getbbox(text[-1])[2]) + 1
        else:
            bx0, _, bx1, _ = draw.textbbox((margin_x, margin_y), text, font=font)
            x0, x1 = int(bx0), int(bx1) + 1
        if x1 - x0 < 2:
            return None
        y0, y1 = margin_y, margin_y + line_h

        # Clutter: underline, table rules, fragments of neighbouring lines above/below.
        if rng.random() < 0.12:
            yy = y1 + rng.randint(-2, 3)
            cv2.line(arr, (x0 - rng.randint(0, 10), yy), (x1 + rng.randint(0, 10), yy), fg_t, rng.randint(1, 2))
        if rng.random() < 0.1:
            for yy in (y0 - rng.randint(2, 8), y1 + rng.randint(2, 8)):
                cv2.line(arr, (0, yy), (W, yy), tuple(int(v) for v in (bg * 0.5 + fg * 0.5)), 1)
        if rng.random() < 0.08:
            xx = rng.choice([x0 - rng.randint(3, 12), x1 + rng.randint(3, 12)])
            cv2.line(arr, (xx, 0), (xx, H), tuple(int(v) for v in (bg * 0.5 + fg * 0.5)), 1)
        if rng.random() < 0.1:
            self._neighbour_fragments(arr, x0, x1, y0, y1, fg_t)

        # Background texture: gradient / uneven light.
        if rng.random() < 0.25:
            arr = self._uneven_light(arr)

        # Geometry: rotation ±3° and mild perspective, then a tight re-crop around the ink.
        pad_frac = rng.choice([rng.uniform(0.05, 0.3), 0.15, rng.uniform(0.1, 0.2)])
        if rng.random() < 0.35:
            angle = rng.uniform(-3, 3)
            arr, (x0, y0, x1, y1) = self._warp(arr, (x0, y0, x1, y1), angle, bg, perspective=rng.random() < 0.4)
        lh = y1 - y0
        px = int(pad_frac * lh + rng.randint(0, 3))
        py_top = int(pad_frac * lh * rng.uniform(0.6, 1.4))
        py_bot = int(pad_frac * lh * rng.uniform(0.6, 1.4))
        arr = arr[max(0, y0 - py_top): y1 + py_bot, max(0, x0 - px): x1 + px]
        if arr.size == 0:
            return None

        # Photometric degradations.
        if rng.random() < 0.2:  # low resolution upscaled
            f = rng.uniform(0.35, 0.8)
            h, w = arr.shape[:2]
            small = cv2.resize(arr, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
            arr = cv2.resize(small, (w, h),
                             interpolation=rng.choice([cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST]))
        if rng.random() < 0.25:
            k = rng.choice([3, 3, 5])
            sigma = rng.uniform(0.3, 1.2) * (size / 24)
            arr = cv2.GaussianBlur(arr, (k, k), sigma)
        if rng.random() < 0.25:
            noise = self.nprng.normal(0, rng.uniform(2, 14), arr.shape)
            arr = np.clip(arr.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        if rng.random() < 0.3:
            q = rng.choice([rng.randint(20, 50), rng.randint(50, 95)])
            ok, enc = cv2.imencode(".jpg", arr[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok:
                arr = cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1]  # type: ignore[index]  # our own JPEG decodes
        return np.ascontiguousarray(arr)

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _ink_mask(arr: np.ndarray, bg: np.ndarray) -> np.ndarray:
        return np.abs(arr.astype(np.int16) - bg.astype(np.int16)).max(axis=2) > 40

    def _neighbour_fragments(self, arr: np.ndarray, x0: int, x1: int, y0: int, y1: int, fg: tuple) -> None:
        rng = self.rng
        lh = y1 - y0
        for top in (True, False):
            if rng.random() < 0.5:
                continue
            yy = y0 - int(lh * rng.uniform(0.6, 0.95)) if top else y1 + int(lh * rng.uniform(0.55, 0.9))
            for _ in range(rng.randint(2, 8)):
                xx = rng.randint(x0, max(x0 + 1, x1))
                cv2.rectangle(arr, (xx, yy - 1), (xx + rng.randint(2, max(3, lh // 2)), yy + 1), fg, -1)

    def _uneven_light(self, arr: np.ndarray) -> np.ndarray:
        h, w = arr.shape[:2]
        rng = self.rng
        gx = np.linspace(rng.uniform(0.6, 1.1), rng.uniform(0.6, 1.1), w, dtype=np.float32)
        gy = np.linspace(rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.1), h, dtype=np.float32)
        light = gy[:, None] * gx[None, :]
        shift = rng.uniform(-25, 25)
        return np.clip(arr.astype(np.float32) * light[:, :, None] + shift, 0, 255).astype(np.uint8)

    def _warp(self, arr: np.ndarray, box: tuple[int, int, int, int], angle: float, bg: np.ndarray,
              perspective: bool) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        h, w = arr.shape[:2]
        x0, y0, x1, y1 = box
        # np.float32(list) builds an array; numpy's stubs type it as a scalar
        src = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])  # type: ignore[arg-type]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        a = math.radians(angle)
        rot = np.float32([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])  # type: ignore[arg-type]
        dst = (src - [cx, cy]) @ rot.T + [cx, cy]  # type: ignore[operator]
        if perspective:
            lh = y1 - y0
            dst += self.nprng.uniform(-0.12, 0.12, size=(4, 2)).astype(np.float32) * lh
        m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))  # type: ignore[call-overload]
        out = cv2.warpPerspective(arr, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=tuple(int(v) for v in bg))
        # Tight, axis-aligned re-crop around the warped line box (what a detector would hand over).
        xs, ys = dst[:, 0], dst[:, 1]
        nb = (int(max(0, xs.min())), int(max(0, ys.min())), int(min(w, xs.max())), int(min(h, ys.max())))
        return out, nb


def to_png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
