"""Near-duplicate index benchmark: load 10^5, 10^6, 10^7 pHashes into a real redis-server and
measure lookups (p50/p99) and Redis memory per indexed result.

    .venv/bin/python bench/index_bench.py [--sizes 100000 1000000 10000000] [--queries 2000]

Hashes are half uniform random, half "documents from templates" (a template hash with 0-6 random
bit flips: docs/facts.md §2: 60 invoices of one template spread over 7 pHash values within 4 bits),
so some band buckets are crowded as in production. Loading is cumulative and writes exactly the
keys `RedisResultIndex.record` writes (band SADDs, one ZADD per pHash), as raw Redis protocol
piped through `redis-cli --pipe`: 4 commands per result, 4 × 10^7 for the last step, which
redis-py's pipeline (~10 µs of Python per command) would take ten minutes to send. Lookups go
through the real `RedisResultIndex.candidates` (one Lua round trip plus one pipelined read), with
4 unstable query bits as the origin sends them.
The Python side stays small (one chunk of protocol at a time), so the run fits in Redis's
memory plus a few hundred MB.
"""
from __future__ import annotations

import argparse
import base64
import os
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
from cache.fingerprint import UNSTABLE_BITS  # noqa: E402
from cache.index import RedisResultIndex, make_client  # noqa: E402
from tests.servers import free_port, wait_for_port  # noqa: E402

NS = "bnch"
CHUNK = 250_000  # results per protocol chunk: ~60 MB of protocol in memory at a time


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
    out = np.concatenate([uniform, base ^ flips])
    rng.shuffle(out)
    return out


def _bulk(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def protocol(index: RedisResultIndex, hashes: np.ndarray, first: int, created: float) -> bytes:
    """Redis protocol for what `record` writes for these hashes (results first, first+1, ...)."""
    parts: list[bytes] = []
    score = b"%d" % int(created)
    for n, h in enumerate(hashes.tolist()):
        for i, band in enumerate(index.bands):
            parts.append(_bulk(b"SADD", redis_keys.band(NS, i, band.value(h)).encode(), b"%d" % band.rest(h)))
        key = NS + base64.b32encode((first + n).to_bytes(20, "big")).decode().lower()[-28:]
        parts.append(_bulk(b"ZADD", redis_keys.phash_members(NS, f"{h:016x}").encode(), score, key.encode()))
    return b"".join(parts)


def load(cli: list[str], index: RedisResultIndex, hashes: np.ndarray, first: int) -> None:
    """Pipe the protocol for `hashes` through one `redis-cli --pipe` (it reads all replies)."""
    proc = subprocess.Popen(cli + ["--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdin is not None
    created = time.time()
    for start in range(0, len(hashes), CHUNK):
        proc.stdin.write(protocol(index, hashes[start:start + CHUNK], first + start, created))
    proc.stdin.close()
    out = proc.stdout.read().decode() if proc.stdout else ""
    if proc.wait() != 0 or "errors: 0" not in out:
        raise RuntimeError(f"redis-cli --pipe failed: {out}")


def measure(index: RedisResultIndex, stored: np.ndarray, rng: np.random.Generator, queries: int) -> dict:
    lat, found = [], []
    picks = stored[rng.integers(0, len(stored), size=queries // 2)]
    near = [int(h) ^ (1 << int(rng.integers(0, 64))) * int(rng.integers(0, 2)) for h in picks]
    far = rng.integers(0, 2**64, size=queries - len(near), dtype=np.uint64).tolist()
    qs = near + [int(x) for x in far]
    # as the origin asks: the query's 4 least stable bits not counted (random positions here)
    masks = [sum(1 << int(b) for b in rng.choice(64, UNSTABLE_BITS, replace=False)) for _ in qs]
    for _ in range(50):
        index.candidates(NS, qs[0], unstable=masks[0])  # warm up the script cache and connections
    for q, mask in zip(qs, masks):
        t0 = time.perf_counter()
        c = index.candidates(NS, q, limit=8, unstable=mask)
        lat.append((time.perf_counter() - t0) * 1000)
        found.append(len(c))
    lat_arr = np.array(lat)
    return {"p50_ms": float(np.percentile(lat_arr, 50)), "p99_ms": float(np.percentile(lat_arr, 99)),
            "mean_candidates": float(np.mean(found)),
            "near_found": float(np.mean([f > 0 for f in found[:len(near)]]))}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10**5, 10**6, 10**7])
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--radius", type=int, default=4)
    args = ap.parse_args()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    cli_binary = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    workdir = tempfile.mkdtemp(prefix="index-bench-")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        url = f"redis://127.0.0.1:{port}/0"
        cli = [cli_binary, "-h", "127.0.0.1", "-p", str(port)]
        client = redis.Redis.from_url(url, socket_timeout=300)
        index = RedisResultIndex(make_client(url), radius=args.radius)
        rng = np.random.default_rng(2026)
        templates = rng.integers(0, 2**64, size=5000, dtype=np.uint64)
        version = client.info("server")["redis_version"]
        probes = sum(1 for b in index.bands for _ in b.neighbours(0, index.probe))
        print(f"redis {version}, radius {args.radius}: {len(index.bands)} bands of "
              f"{'/'.join(str(b.length) for b in index.bands)} bits, {probes} buckets per lookup "
              f"({UNSTABLE_BITS} unstable query bits: 168-350); "
              f"{args.queries} lookups per size (half: a stored hash with 0-1 bit flipped; half: random)")
        print(f"{'results':>10} {'load s':>7} {'p50 ms':>7} {'p99 ms':>7} {'cands':>6} {'found':>6} "
              f"{'keys':>9} {'MB used':>8} {'B/result':>9} {'redis RSS MB':>12} {'bench RSS MB':>12}  band encodings")
        base_mem = client.info("memory")["used_memory"]
        loaded = 0
        stored = np.zeros(0, dtype=np.uint64)
        for size in sorted(args.sizes):
            t0 = time.perf_counter()
            new = gen_hashes(size - loaded, rng, templates)
            load(cli, index, new, loaded)
            stored = np.concatenate([stored, new])
            loaded = size
            load_s = time.perf_counter() - t0
            mem = client.info("memory")["used_memory"] - base_mem
            enc: dict[str, int] = {}
            for k in client.scan_iter(match=f"{redis_keys.PREFIX}b:*", count=200):
                e = client.object("encoding", k).decode()
                enc[e] = enc.get(e, 0) + 1
                if sum(enc.values()) >= 200:
                    break
            m = measure(index, stored, rng, args.queries)
            print(f"{size:>10} {load_s:>7.1f} {m['p50_ms']:>7.2f} {m['p99_ms']:>7.2f} {m['mean_candidates']:>6.1f} "
                  f"{m['near_found']:>6.2f} {client.dbsize():>9} {mem / 2**20:>8.0f} {mem / size:>9.0f} "
                  f"{rss_mb(proc.pid):>12.0f} {rss_mb(os.getpid()):>12.0f}  "
                  f"{','.join(f'{k}:{v}' for k, v in sorted(enc.items()))}", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
