"""CPU inference variants of the shipped CRNN: fp32 eager, bf16 autocast, TorchScript (trace+freeze),
TorchScript optimised for inference (BatchNorm folded, oneDNN layouts), channels-last memory,
TorchScript on a channels-last copy (`ocr_core.runtime.TorchRunner`) and onnxruntime on an export
of the module (`ocr_core.runtime.OnnxRunner`, what `Predictor` runs by default).

    .venv/bin/python bench/infer_variants.py ../shared/eval [--threads 1] [--n 120]

Runs the same real and rendered line crops through each variant, interleaved item by item, and
prints the median/p95 forward time per line, the speed ratio to fp32 and whether the decoded text
changed. The predictor keeps the variant that wins here (see docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocr_core import Predictor  # noqa: E402
from ocr_core.decode import collapse_path  # noqa: E402
from ocr_core.evaluate import load_items  # noqa: E402
from ocr_core.images import load_image  # noqa: E402
from ocr_core.preprocess import batch_lines, prepare_line  # noqa: E402
from ocr_core.runtime import OnnxRunner, TorchRunner  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("eval_dir", type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n", type=int, default=120)
    args = p.parse_args(argv)

    pred = Predictor.load(threads=args.threads, detector=False, precision="fp32")  # crnn.pt
    model = pred.model
    items = [it for it in load_items(args.eval_dir, ["real", "render"]) if it.kind == "lines"]
    items = items[:: max(1, len(items) // args.n)][: args.n]
    # Each line as the predictor batches it alone: padded to the minimum batch width.
    xs = [torch.from_numpy(batch_lines([prepare_line(np.asarray(load_image(it.file.read_bytes())))])[0])
          for it in items]

    def fp32(x: torch.Tensor) -> torch.Tensor:
        return model(x)

    def bf16(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)

    # Built outside inference mode: tracing and export need ordinary tensors.
    frozen_cl, onnx = TorchRunner(model), OnnxRunner(model, threads=args.threads)
    with torch.inference_mode():
        scripted = torch.jit.freeze(torch.jit.trace(model, xs[0], check_trace=False))
        optimised = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, xs[0], check_trace=False)))
        import copy

        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)

        def channels_last(x: torch.Tensor) -> torch.Tensor:
            return model_cl(x.contiguous(memory_format=torch.channels_last))

        def path(lp: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            best, ids = lp[0].float().max(-1)
            return ids.numpy(), best.numpy()

        variants = {"fp32": lambda x: path(fp32(x)), "bf16-autocast": lambda x: path(bf16(x)),
                    "torchscript": lambda x: path(scripted(x)), "ts-optimised": lambda x: path(optimised(x)),
                    "channels-last": lambda x: path(channels_last(x)),
                    "ts-channels-last": lambda x: tuple(a[0] for a in frozen_cl(x.numpy())),
                    "onnxruntime": lambda x: tuple(a[0] for a in onnx(x.numpy()))}
        for f in variants.values():
            for x in xs[:3]:
                f(x)
        times = {k: [] for k in variants}
        texts = {k: [] for k in variants}
        for i, x in enumerate(xs):
            names = list(variants)
            names = names[i % len(names):] + names[: i % len(names)]
            for k in names:
                t0 = time.perf_counter()
                ids, lp = variants[k](x)
                times[k].append((time.perf_counter() - t0) * 1e3)
                texts[k].append(collapse_path(ids, lp, pred.charset).text)
    base = statistics.median(times["fp32"])
    print(f"{len(xs)} line crops, {args.threads} thread(s), model forward only")
    for k in variants:
        med = statistics.median(times[k])
        p95 = sorted(times[k])[int(0.95 * (len(xs) - 1))]
        changed = sum(a != b for a, b in zip(texts[k], texts["fp32"]))
        print(f"{k:<16} median {med:6.2f} ms  p95 {p95:6.2f} ms  speed x{base / med:4.2f}  texts changed {changed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
