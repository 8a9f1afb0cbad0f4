"""`python -m cache reindex`: rebuild the Redis index from the result store.

`ocr-origin reindex` passes the origin's settings (origin/settings.py) as `defaults`; flags
override them. `cache` never imports `origin`, so run directly it has no defaults of its own:
--redis-url and --storage-url are required (a guessed port could be another deployment's Redis,
and `--clear` would wipe its index).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Mapping

from .errors import CacheError
from .index import RedisResultIndex
from .reindex import reindex
from .store import from_url


def main(argv: list[str] | None = None, defaults: Mapping[str, Any] | None = None) -> int:
    d = dict(defaults or {})
    parser = argparse.ArgumentParser(prog="python -m cache")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("reindex", help="rebuild the Redis near-duplicate index from storage")
    p.add_argument("--redis-url", default=d.get("redis_url"), required="redis_url" not in d)
    p.add_argument("--storage-url", default=d.get("storage_url"), required="storage_url" not in d)
    p.add_argument("--s3-endpoint-url", default=d.get("s3_endpoint_url"))
    p.add_argument("--hamming-distance", type=int, default=d.get("hamming_distance", 4))
    p.add_argument("--clear", action="store_true", help="delete every index key first")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.redis_url:
        print("the Redis URL is empty (OCR_REDIS_URL): the index is disabled, nothing to rebuild",
              file=sys.stderr)
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
