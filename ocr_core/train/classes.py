"""Cut the distilled CRNN's classifier down to the characters the product reads.

PP-OCRv6's dictionary has 18,708 characters: simplified and traditional Chinese, Japanese kana and
many rare symbols. The product reads simplified Chinese and English, and the classifier over
18,710 classes (its matrix product, softmax and argmax at every time step) costs ~6 % of a line's
forward pass on 2 CPU threads. The shipped model keeps the classes of

- GB2312 (the simplified-Chinese national character set: 6,763 hanzi and its symbols, full-width
  forms included),
- the training text's charset (`text_charset.txt`, the v1 model's 6,643 classes),
- printable ASCII and Latin-1, the General Punctuation and Currency Symbols blocks,

that PP-OCRv6's dictionary has, plus the blank and the space: 8,154 classes. The kept rows of the
classifier are copied unchanged, so a line whose best class is kept at every step reads exactly
as before; only the confidences grow a little (the softmax is over fewer classes). A character
outside the set is read as the nearest kept one, as any character outside a charset is.

    python -m ocr_core.train.classes --weights RUN/crnn.pt --out crnn.pt
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from ocr_core.charset import Charset
from ocr_core.model import CRNN, load_crnn, save_crnn
from ocr_core.train import TEXT_CHARSET

logger = logging.getLogger(__name__)

# Unicode blocks kept whole (where the dictionary has them): Latin-1's printable half, General
# Punctuation (dashes, quotes, …, ‰), Currency Symbols (€).
BLOCKS = ((0x20, 0x7E), (0xA0, 0xFF), (0x2010, 0x205E), (0x20A0, 0x20BF))


def gb2312() -> set[str]:
    """Every character GB2312 encodes (rows 0xA1-0xF7, cells 0xA1-0xFE)."""
    out: set[str] = set()
    for row in range(0xA1, 0xF8):
        for cell in range(0xA1, 0xFF):
            try:
                out.add(bytes((row, cell)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return out


def product_characters(text_charset: Path = TEXT_CHARSET) -> set[str]:
    chars = gb2312() | set(Charset.from_file(text_charset).classes[1:])
    for lo, hi in BLOCKS:
        chars.update(chr(c) for c in range(lo, hi + 1))
    return chars


def kept_classes(classes: Sequence[str], wanted: Iterable[str]) -> list[int]:
    """Indices into `classes` (blank first) to keep: the blank, then every class in `wanted`, in
    the original order (the space, the dictionary's last class, stays last)."""
    want = set(wanted) | {" "}
    return [0] + [i for i, c in enumerate(classes) if i > 0 and c in want]


def prune(model: CRNN, meta: dict, keep: list[int]) -> tuple[CRNN, dict]:
    """A new model whose classifier has only the rows `keep` of `model`'s (every other weight
    copied unchanged), and its meta: the kept characters, and how many classes they came from."""
    index = torch.tensor(keep)
    state = model.state_dict()
    state["head.weight"] = state["head.weight"][index]                  # C' x 120
    state["head.bias"] = state["head.bias"][index]                      # C'
    pruned = CRNN(type(model.cfg)(num_classes=len(keep), hidden=model.cfg.hidden, proj=model.cfg.proj))
    pruned.load_state_dict(state)
    charset = "".join(meta["charset"][i - 1] for i in keep[1:])
    new_meta = dict(meta, charset=charset, classes_from=meta.get("classes_from", len(meta["charset"]) + 1))
    return pruned.eval(), new_meta


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, required=True, help="a distilled crnn.pt (all 18,710 classes)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--text-charset", type=Path, default=TEXT_CHARSET)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    model, meta = load_crnn(str(args.weights))
    classes = ["", *meta["charset"]]
    keep = kept_classes(classes, product_characters(args.text_charset))
    pruned, new_meta = prune(model, meta, keep)
    save_crnn(pruned, str(args.out), new_meta)
    logger.info("kept %d of %d classes -> %s", len(keep), len(classes), args.out)


if __name__ == "__main__":
    main()
