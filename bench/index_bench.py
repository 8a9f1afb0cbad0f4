"""Near-duplicate index benchmark: load 10^5, 10^6, 10^7 pHashes into a real redis-server and
measure lookups (p50/p99) and Redis memory per indexed result.

    .venv/bin/python bench/index_bench.py [--sizes 100000 1000000 10000000] [--queries 2000]

Hashes are half uniform random, half "documents from templates" (a template hash with 0-6 random
bit flips: NOTES §2 found 60 invoices of one template spread over 7 pHash values within 4 bits),
so some band buckets are crowded as in production. Loading is cumulative and pipelined (bands
grouped into one SADD per bucket), so the 10^7 step takes a few minutes, not hours.
"""
from __future__ import annotations

import argparse
import base64
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cache import redis_keys  # noqa: E402
from cache.fingerprint import format_phash  # noqa: E402
from cache.index import RedisResultIndex, make_client  # noqa: E402
from tests.servers import free_port, wait_for_port  # noqa: E402

NS = "bnch"


def gen_hashes(n: int, rng: np.random.Generator, templates: np.ndarray) -> np.ndarray:
    """n unsigned 64-bit hashes: half uniform, half template + 0-6 flipped bits."""
    half = n // 2
    uniform = rng.integers(0, 2**64, size=half, dtype=np.uint64)
    base = templates[rng.integers(0, len(templates), size=n - half)]
    flips = np.zeros(n - half, dtype=np.uint64)
    nflip = rng.integers(0, 7, size=n - half)
    for k in range(6):
        bit = rng.integers(0, 64, size=n - half).astype(np.uint64)
        flips ^= np.where(nflip > k, np.uint64(1) << bit, np.uint64(0))
    return np.concatenate([uniform, base ^ flips])


def result_keys(start: int, n: int) -> list[str]:
    return [NS + base64.b32encode(i.to_bytes(18, "big")).decode().lower()[:28] for i in range(start, start + n)]


def load(client: redis.Redis, index: RedisResultIndex, hashes: np.ndarray, start: int) -> None:
    """Bulk-load what RedisResultIndex.record writes, grouped for speed."""
    pipe = client.pipeline(transaction=False)
    for i, band in enumerate(index.bands):
        values = (hashes >> np.uint64(band.start)) & np.uint64(band.mask)
        low = hashes & np.uint64((1 << band.start) - 1)
        rest = ((hashes >> np.uint64(band.start + band.length)) << np.uint64(band.start)) | low
        order = np.argsort(values, kind="stable")
        values, rest = values[order], rest[order]
        cuts = np.flatnonzero(np.diff(values)) + 1
        for vals, rests in zip(np.split(values, cuts), np.split(rest, cuts)):
            pipe.execute_command("SADD", redis_keys.band(NS, index.radius, i, int(vals[0])), *rests.tolist())
            if len(pipe) >= 2000:
                pipe.execute()
    pipe.execute()
    keys = result_keys(start, len(hashes))
    created = time.time()
    for n, (h, k) in enumerate(zip(hashes.tolist(), keys)):
        pipe.execute_command("ZADD", redis_keys.phash_members(NS, format_phash(h)), created, k)
        if n % 20000 == 19999:
            pipe.execute()
    pipe.execute()


def measure(index: RedisResultIndex, stored: np.ndarray, rng: np.random.Generator, queries: int) -> dict:
    lat, found = [], []
    picks = stored[rng.integers(0, len(stored), size=queries // 2)]
    near = [int(h) ^ (1 << int(rng.integers(0, 64))) * int(rng.integers(0, 2)) for h in picks]
    far = rng.integers(0, 2**64, size=queries - len(near), dtype=np.uint64).tolist()
    qs = near + [int(x) for x in far]
    for _ in range(50):
        index.candidates(NS, qs[0])  # warm up the script cache and connections
    for q in qs:
        t0 = time.perf_counter()
        c = index.candidates(NS, q, limit=8)
        lat.append((time.perf_counter() - t0) * 1000)
        found.append(len(c))
    lat_arr = np.array(lat)
    return {"p50_ms": float(np.percentile(lat_arr, 50)), "p99_ms": float(np.percentile(lat_arr, 99)),
            "mean_candidates": float(np.mean(found)), "near_found": float(np.mean([f > 0 for f in found[:len(near)]]))}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10**5, 10**6, 10**7])
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--radius", type=int, default=4)
    ap.add_argument("--intset-entries", type=int, default=512, help="redis set-max-intset-entries (default 512)")
    args = ap.parse_args()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    workdir = tempfile.mkdtemp(prefix="index-bench-")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", workdir, "--set-max-intset-entries", str(args.intset_entries)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_timeout=300)
        index = RedisResultIndex(make_client(url), radius=args.radius)
        rng = np.random.default_rng(2026)
        templates = rng.integers(0, 2**64, size=5000, dtype=np.uint64)
        version = client.info("server")["redis_version"]
        print(f"redis {version}, radius {args.radius} ({len(index.bands)} bands of "
              f"{'/'.join(str(b.length) for b in index.bands)} bits), set-max-intset-entries {args.intset_entries}, "
              f"{args.queries} lookups per size (half: a stored hash with 0-1 bit flipped; half: random)")
        print(f"{'results':>10} {'load s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cands':>6} {'found':>6} "
              f"{'MB used':>9} {'B/result':>9} {'band encodings':>20}")
        base_mem = client.info("memory")["used_memory"]
        loaded = 0
        stored = np.zeros(0, dtype=np.uint64)
        for size in sorted(args.sizes):
            t0 = time.perf_counter()
            new = gen_hashes(size - loaded, rng, templates)
            load(client, index, new, loaded)
            stored = np.concatenate([stored, new])
            loaded = size
            load_s = time.perf_counter() - t0
            mem = client.info("memory")["used_memory"] - base_mem
            enc = {}
            for k in client.scan_iter(match=f"{redis_keys.PREFIX}band:*", count=200):
                e = client.object("encoding", k).decode()
                enc[e] = enc.get(e, 0) + 1
                if sum(enc.values()) >= 200:
                    break
            m = measure(index, stored, rng, args.queries)
            print(f"{size:>10} {load_s:>8.1f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} {m['mean_candidates']:>6.1f} "
                  f"{m['near_found']:>6.2f} {mem / 2**20:>9.0f} {mem / size:>9.0f} "
                  f"{','.join(f'{k}:{v}' for k, v in sorted(enc.items())):>20}", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
