"""The upload fuzz run of tests/unit/origin/test_fuzz.py, longer: any number of seeded mutated
uploads (images of every accepted format, and PDFs) through the app on a real redis-server
started here (temp dir, free port, stopped after). Fails (exit 1) at the first 5xx or non-JSON
error; prints the count per status, the rate and the RSS growth.

    .venv/bin/python bench/fuzz_bench.py --inputs 200000 --seed 7
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from origin import create_app  # noqa: E402
from origin.settings import Settings  # noqa: E402
from tests.servers import RedisServer  # noqa: E402
from tests.unit.origin.test_fuzz import SEED, _Instant, rss_bytes, run_fuzz  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=int, default=100_000, help="mutated uploads to send (default 100,000)")
    p.add_argument("--seed", type=int, default=SEED, help="the run's seed (default: the test's)")
    p.add_argument("--max-pixels", type=int, default=1_000_000, help="OCR_MAX_PIXELS of the app")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ocr-fuzz-bench-"))
    redis = RedisServer(tmp / "redis").start()
    try:
        conf = Settings(secret=b"fuzz-bench-secret-0123456789abcdef", redis_url=redis.url,
                        storage_url=f"file://{tmp / 'results'}", max_pixels=args.max_pixels, rate_limit=0)
        client = create_app(conf, predictor=_Instant()).test_client()
        logging.disable(logging.WARNING)  # one "upload rejected" line per bad input otherwise
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # Pillow on corrupt tags
        rss: list[int] = []
        step = max(1, args.inputs // 20)

        def progress(done: int) -> None:
            if done % step == 0:
                rss.append(rss_bytes())
                print(f"{done:>9,} inputs  rss {rss[-1] / 2**20:7.1f} MiB", file=sys.stderr, flush=True)

        t0 = time.perf_counter()
        try:
            statuses = run_fuzz(client, args.inputs, args.seed, on_progress=progress)
        except AssertionError as exc:
            print(f"FAIL: {exc}", file=sys.stderr)
            return 1
        elapsed = time.perf_counter() - t0
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    codes = {k: v for k, v in sorted(statuses.items(), key=str)}
    growth = (rss[-1] - rss[0]) / 2**20 if len(rss) > 1 else 0.0
    print(f"{args.inputs:,} inputs (seed {args.seed}) in {elapsed:.0f} s ({args.inputs / elapsed:.0f}/s): "
          f"{codes}; no 5xx; RSS {rss[0] / 2**20:.0f} -> {rss[-1] / 2**20:.0f} MiB ({growth:+.1f} MiB after "
          f"the first {step:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
