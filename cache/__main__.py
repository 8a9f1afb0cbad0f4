"""`python -m cache reindex`: rebuild the Redis index from the result store.

Reads the same environment as the origin (OCR_REDIS_URL, OCR_STORAGE_URL, OCR_S3_ENDPOINT_URL,
OCR_HAMMING_DISTANCE); flags override it. `cache` never imports `origin`, so the defaults are
repeated here and must match docs/architecture.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .errors import CacheError
from .index import RedisResultIndex
from .reindex import reindex
from .store import from_url


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m cache")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("reindex", help="rebuild the Redis near-duplicate index from storage")
    p.add_argument("--redis-url", default=env.get("OCR_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--storage-url", default=env.get("OCR_STORAGE_URL", "file://var/results"))
    p.add_argument("--s3-endpoint-url",
                   default=env.get("OCR_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL") or None)
    p.add_argument("--hamming-distance", type=int, default=int(env.get("OCR_HAMMING_DISTANCE", "4")))
    p.add_argument("--clear", action="store_true", help="delete every index key first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=env.get("OCR_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.redis_url:
        print("OCR_REDIS_URL is empty: the index is disabled, nothing to rebuild", file=sys.stderr)
        return 2
    store = from_url(args.storage_url, endpoint_url=args.s3_endpoint_url)
    index = RedisResultIndex.from_url(args.redis_url, radius=args.hamming_distance)
    try:
        stats = reindex(store, index, clear=args.clear)
    except CacheError as exc:
        print(f"reindex failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
