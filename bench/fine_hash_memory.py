"""Redis memory of the near-duplicate index per stored result, with and without the fine hash.

    .venv/bin/python bench/fine_hash_memory.py [--results 200000]

Writes exactly what `RedisResultIndex.record` writes for each result (band SADDs, the pHash's
key list, and the fine hash in `ocr:v2:fine:{ns}`) into a fresh redis-server, with uniform
random pHashes and random 72-byte fine hashes, and reports `used_memory` growth per result. The
fine hash is also measured alone, and with the variants it could be stored as.
"""
from __future__ import annotations

import argparse
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cache import redis_keys  # noqa: E402
from cache.fingerprint import FINE_BYTES  # noqa: E402
from cache.index import RedisResultIndex  # noqa: E402
from cache.keys import KeyDeriver  # noqa: E402
from tests.servers import RedisServer  # noqa: E402

NAMESPACE = "imo3"


def per_result(client: redis.Redis, n: int, write: Callable[[object, int], None]) -> float:
    client.flushdb()
    time.sleep(0.2)
    base = client.info("memory")["used_memory"]
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        write(pipe, i)
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    return (client.info("memory")["used_memory"] - base) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=int, default=200_000)
    args = parser.parse_args()
    n = args.results
    keys = KeyDeriver(secrets.token_bytes(32))
    result_keys = [keys.derive(NAMESPACE, secrets.token_hex(32)) for _ in range(n)]
    fines = [secrets.token_bytes(FINE_BYTES) for _ in range(n)]
    rng = random.Random(1)
    phashes = [rng.getrandbits(64) for _ in range(n)]
    server = RedisServer(Path(tempfile.mkdtemp(prefix="fine-memory-"))).start()
    try:
        client = redis.Redis.from_url(server.url)
        index = RedisResultIndex(client)
        fine_key = redis_keys.fine_hashes(NAMESPACE)
        print(f"redis {client.info()['redis_version']}, {n} results, uniform random pHashes, "
              f"{FINE_BYTES}-byte fine hashes, {len(result_keys[0])}-character result keys")
        rows = [
            ("index entry as recorded (bands, key list, fine hash)",
             lambda p, i: index._queue_record(p, NAMESPACE, result_keys[i], phashes[i], 1.7e9 + i, fines[i])),
            ("index entry without the fine hash",
             lambda p, i: index._queue_record(p, NAMESPACE, result_keys[i], phashes[i], 1.7e9 + i, b"")),
            ("fine hash alone (HASH field = result key)",
             lambda p, i: p.hset(fine_key, result_keys[i], fines[i])),
            ("fine hash alone, field without the namespace prefix",
             lambda p, i: p.hset(fine_key, result_keys[i][len(NAMESPACE):], fines[i])),
            ("fine hash as one STRING per result",
             lambda p, i: p.set(f"{fine_key}:{result_keys[i]}", fines[i])),
        ]
        for name, write in rows:
            print(f"  {per_result(client, n, write):7.1f} B/result  {name}")
        client.flushdb()
        client.hset(fine_key, mapping={result_keys[i]: fines[i] for i in range(200)})
        print(f"  encoding of {fine_key} (values of {FINE_BYTES} B > hash-max-listpack-value 64): "
              f"{client.object('encoding', fine_key)!r}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
