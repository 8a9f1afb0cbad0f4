"""Generated test corpus: rendered documents, one-character variants and re-encodings.

Everything is rendered here with PIL from Debian fonts; nothing is downloaded. The corpus is
deterministic (fixed seeds) so a failure names the same pair on every run.
"""
from __future__ import annotations

import io
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONTS: dict[str, tuple[str, int]] = {
    # name: (path, face index in a .ttc collection)
    "noto-cjk": ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),  # index 2 = SC
    "wqy-microhei": ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    "dejavu-sans": ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 0),
    "dejavu-mono": ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", 0),
    "liberation-serif": ("/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf", 0),
    "liberation-sans": ("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf", 0),
}
CJK_FONTS = ("noto-cjk", "wqy-microhei")

# Templates: {n} digits, {c} a CJK slot; each line is rendered as is after formatting.
ASCII_LINES = [
    "Invoice No. 2026-{a:04d}",
    "Date: 2026-03-{b:02d}   Due: 2026-04-{b:02d}",
    "Customer: ACME Trading Ltd., Room {a:03d}",
    "Item            Qty     Price",
    "Widget A         {b:2d}     $1,{a:03d}.50",
    "Total: ${a},234.56; tax incl.",
    "Ref: INV/{a:05d}-XK",
]
CJK_LINES = [
    "发票号码：{a:08d}",
    "开票日期：2026年03月{b:02d}日",
    "购买方：上海华东贸易有限公司",
    "项目名称：办公用品   数量：{b}",
    "金额：¥{a},200.00（含税）",
    "备注：请于三十日内付款。",
    "地址：北京市海淀区中关村大街{b}号",
]
# One-character edits: (old, new) pairs applied to the first occurrence in the rendered text.
ASCII_EDITS = [("1", "7"), ("2", "3"), ("0", "8"), ("5", "6"), (".", ","), (":", ";"), ("A", "B"),
               ("e", "c"), ("-", "_"), ("$", "S"), ("4", "9"), ("i", "l"), ("o", "a"), ("t", "f")]
CJK_EDITS = [("上", "土"), ("海", "梅"), ("日", "目"), ("期", "朝"), ("2", "3"), ("。", "，"),
             ("号", "另"), ("京", "景"), ("金", "全"), ("数", "效"), ("00", "06"), ("：", ":"),
             ("办", "为"), ("三", "二")]


INK = (20, 20, 20)


@dataclass(frozen=True)
class Doc:
    name: str
    lines: tuple[str, ...]
    font: str
    size: int
    width: int
    ink: tuple[int, int, int] = INK
    paper: tuple[int, int, int] = (255, 255, 255)

    def render(self) -> Image.Image:
        return render_lines(self.lines, self.font, self.size, self.width, ink=self.ink, paper=self.paper)


@lru_cache(maxsize=64)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path, index = FONTS[name]
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} missing: apt-get install -y fonts-noto-cjk fonts-wqy-microhei "
                                "fonts-dejavu-core fonts-liberation (or run `make test`)")
    return ImageFont.truetype(path, size, index=index)


def render_lines(lines: tuple[str, ...], font_name: str, size: int, width: int, *,
                 ink: tuple[int, int, int] = INK, paper: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Render text lines (near-black on white by default), left-aligned, at a fixed page width."""
    f = font(font_name, size)
    step = int(size * 1.6)
    height = step * len(lines) + 2 * size
    img = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((size, size + i * step), line, font=f, fill=ink)
    return img


def _edit(lines: tuple[str, ...], rng: random.Random, edits: list[tuple[str, str]]) -> tuple[str, ...] | None:
    """Apply one single-character edit somewhere in the lines; None if no edit applies."""
    candidates = [(i, old, new) for i, line in enumerate(lines) for old, new in edits if old in line]
    if not candidates:
        return None
    i, old, new = rng.choice(candidates)
    line = lines[i]
    positions = [p for p in range(len(line)) if line.startswith(old, p)]
    p = rng.choice(positions)
    if len(old) == 2:  # "00" -> "06": still one character changed
        edited = line[:p] + new + line[p + 2:]
    else:
        edited = line[:p] + new + line[p + 1:]
    out = list(lines)
    out[i] = edited
    return tuple(out)


def one_char_pairs(n: int, seed: int = 4) -> list[tuple[Doc, Doc]]:
    """n document pairs that differ by exactly one character (half ASCII, half Chinese)."""
    rng = random.Random(seed)
    pairs: list[tuple[Doc, Doc]] = []
    sizes = [11, 13, 16, 20, 24, 30]
    while len(pairs) < n:
        cjk = len(pairs) % 2 == 1
        templates = CJK_LINES if cjk else ASCII_LINES
        fonts = CJK_FONTS if cjk else tuple(FONTS)
        k = rng.randint(3, 6)
        start = rng.randrange(len(templates))
        a, b = rng.randint(1, 999), rng.randint(1, 28)
        lines = tuple(templates[(start + j) % len(templates)].format(a=a, b=b) for j in range(k))
        edited = _edit(lines, rng, CJK_EDITS if cjk else ASCII_EDITS)
        if edited is None or edited == lines:
            continue
        fname = rng.choice(fonts)
        size = rng.choice(sizes)
        width = max(int(size * 24), rng.choice([480, 640, 800, 1000, 1280, 1600]))
        i = len(pairs)
        pairs.append((Doc(f"pair{i}-a", lines, fname, size, width),
                      Doc(f"pair{i}-b", edited, fname, size, width)))
    return pairs


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def with_exif(img: Image.Image, *, description: str, orientation: int | None = None) -> bytes:
    """JPEG with EXIF metadata; with `orientation`, the pixels are stored rotated so that a viewer
    that honours the tag shows the original image."""
    exif = Image.Exif()
    exif[0x010E] = description  # ImageDescription
    exif[0x0131] = "ocr-origin tests"  # Software
    stored = img
    if orientation == 6:  # viewer rotates 90° clockwise: store it rotated 90° counter-clockwise
        stored = img.transpose(Image.Transpose.ROTATE_90)
    elif orientation == 3:
        stored = img.transpose(Image.Transpose.ROTATE_180)
    elif orientation == 8:
        stored = img.transpose(Image.Transpose.ROTATE_270)
    if orientation is not None:
        exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def variants(img: Image.Image, rng: random.Random) -> list[tuple[str, bytes]]:
    """Re-encodings, resizes (±15%) and EXIF changes of one image, as upload bytes."""
    w, h = img.size
    out: list[tuple[str, bytes]] = []
    q = rng.choice([70, 75, 85, 95])
    out.append((f"jpeg-q{q}", encode(img, "JPEG", quality=q)))
    out.append(("png-opt", encode(img, "PNG", optimize=True)))
    scale = rng.choice([0.85, 0.9, 1.1, 1.15])
    resized = img.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
    out.append((f"resize{scale}-png", encode(resized, "PNG")))
    scale2 = rng.choice([0.87, 0.93, 1.07, 1.13])
    resized2 = img.resize((round(w * scale2), round(h * scale2)), Image.Resampling.BICUBIC)
    out.append((f"resize{scale2}-jpeg-q75", encode(resized2, "JPEG", quality=75)))
    out.append(("exif-desc", with_exif(img, description=f"scan {rng.randint(0, 10**6)}")))
    out.append(("exif-rot6", with_exif(img, description="rotated", orientation=6)))
    out.append(("webp-q90", encode(img, "WEBP", quality=90)))
    return out
