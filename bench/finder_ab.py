"""What the classical finder's synthetic A/B benchmarks share (`line_ends.py`, `ruled_tables.py`):
their command line (the training fonts and corpus ingredients, a held-out seed, how many pages,
threads) and the comparison itself: the same synthetic pages read once per variant of one
`ocr_core.lines` function, printing CER and time for each."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ocr_core.lines as lines_module  # noqa: E402


def parse_args(description: str | None, seed: int, pages: int, argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fonts", type=Path, default=ROOT / "var" / "train" / "fonts")
    p.add_argument("--ingredients", type=Path, default=ROOT / "var" / "train" / "ingredients.json.gz")
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--pages", type=int, default=pages)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def compare(function: str, variants: Sequence[tuple[str, Callable[..., Any]]], items: Sequence[Any],
            errors_of: Callable[[Any], tuple[int, int]]) -> None:
    """Each variant stands in for `ocr_core.lines.<function>` while every item is scored by
    `errors_of` (character errors, reference length); the shipped function is put back after."""
    shipped = getattr(lines_module, function)
    width = max(len(name) for name, _ in variants)
    try:
        for name, fn in variants:
            setattr(lines_module, function, fn)
            errors = chars = 0
            t0 = time.perf_counter()
            for item in items:
                d, n = errors_of(item)
                errors += d
                chars += n
            print(f"{name:<{width}} CER {100 * errors / chars:5.2f} % ({errors}/{chars}), "
                  f"{time.perf_counter() - t0:5.1f} s")
    finally:
        setattr(lines_module, function, shipped)
