"""Read images from the shell: one JSON object per image on stdout (JSON Lines).

    python -m ocr_core [--single-line] [--weights crnn.pt] IMAGE [IMAGE...]

The model is loaded once. Each object has `file`, `text`, `lines` (`text`, `confidence`, `box`,
`polygon`, `char_confidences`), `width`, `height` and `elapsed_ms` (decode + preprocess + lines +
recognition of that image). An image that cannot be read gives `{"file", "error"}` on its line and
the exit status 1 once all images are done.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from ocr_core.images import ImageLoadError, load_image
from ocr_core.predictor import Predictor
from ocr_core.quantized import DEFAULT_PRECISION, PRECISIONS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ocr_core", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--single-line", action="store_true", help="the image is one line crop: skip line finding")
    p.add_argument("--weights", type=Path, help="model file (default: the shipped weights)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                   help="the first reading's precision (auto: int8 on CPUs with VNNI, weights permitting)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    predictor = Predictor.load(args.weights, threads=args.threads, precision=args.precision)
    status = 0
    for path in args.images:
        t0 = time.perf_counter()
        try:
            image = load_image(path.read_bytes())
        except (OSError, ImageLoadError) as exc:
            print(json.dumps({"file": str(path), "error": str(exc)}, ensure_ascii=False), flush=True)
            status = 1
            continue
        result = predictor.read(image, single_line=args.single_line)
        out = {"file": str(path), **result.to_dict(),
               # The whole cost of this image, file decoding included.
               "elapsed_ms": round((time.perf_counter() - t0) * 1e3, 2)}
        print(json.dumps(out, ensure_ascii=False), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
