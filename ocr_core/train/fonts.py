"""Training fonts: Debian's CJK and Latin faces, subset to our charset so they travel light.

    python -m ocr_core.train.fonts --out DIR     # writes DIR/*.ttf|otf and DIR/fonts.json

`fonts.json` lists each face with the characters it covers, so the renderer never draws a line
with a glyph the font lacks (that would teach the model to read tofu boxes).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ocr_core.charset import Charset
from ocr_core.train import TEXT_CHARSET

logger = logging.getLogger(__name__)

# (file, face index in a collection, kind). Debian packages: fonts-noto-cjk, fonts-wqy-microhei,
# fonts-wqy-zenhei, fonts-arphic-ukai, fonts-arphic-uming, fonts-dejavu-core, fonts-liberation.
CJK_FACES = [
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),   # Noto Sans CJK SC
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc", 2),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 7),   # Noto Sans Mono CJK SC
    ("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc", 2),  # Noto Serif CJK SC
    ("/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc", 2),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 1),           # Micro Hei Mono
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
    ("/usr/share/fonts/truetype/arphic/ukai.ttc", 0),
    ("/usr/share/fonts/truetype/arphic/uming.ttc", 0),
]
LATIN_FACES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Oblique.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Italic.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Regular.ttf",
]


def build(out: Path, charset: Charset) -> list[dict]:
    from fontTools.ttLib import TTCollection, TTFont

    # Every face or none: a face left out changes the training lines, and so the weights.
    missing = [p for p in sorted({p for p, _ in CJK_FACES} | set(LATIN_FACES)) if not Path(p).exists()]
    if missing:
        raise SystemExit(f"missing training fonts (`make apt-train` installs them): {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    chars = "".join(charset.classes[1:])
    faces: list[dict] = []
    for path, index in CJK_FACES:
        font = TTCollection(path).fonts[index]
        name = font["name"].getDebugName(4).replace(" ", "")
        ext = ".otf" if "CFF " in font else ".ttf"
        dest = out / f"{name}{ext}"
        if not dest.exists():
            _subset(font, chars, dest)
        cmap = TTFont(str(dest)).getBestCmap()
        covered = "".join(c for c in chars if ord(c) in cmap)
        faces.append({"file": dest.name, "kind": "cjk", "chars": covered})
        logger.info("font %s: %d chars, %.1f MB", dest.name, len(covered), dest.stat().st_size / 1e6)
    for path in LATIN_FACES:
        dest = out / Path(path).name
        dest.write_bytes(Path(path).read_bytes())
        cmap = TTFont(str(dest)).getBestCmap()
        faces.append({"file": dest.name, "kind": "latin", "chars": "".join(c for c in chars if ord(c) in cmap)})
    (out / "fonts.json").write_text(json.dumps(faces, ensure_ascii=False), encoding="utf-8")
    return faces


def _subset(font, chars: str, dest: Path) -> None:
    from fontTools import subset

    opts = subset.Options()
    opts.layout_features = ["*"]
    opts.name_IDs = ["*"]
    opts.notdef_outline = True
    # TrueType hinting instructions are slow to subset and useless once rasterised at training
    # sizes with PIL's anti-aliasing: drop them.
    opts.hinting = False
    sub = subset.Subsetter(opts)
    sub.populate(text=chars)
    sub.subset(font)
    font.save(str(dest))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--charset", type=Path, default=TEXT_CHARSET)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    build(args.out, Charset.from_file(args.charset))


if __name__ == "__main__":
    main()
