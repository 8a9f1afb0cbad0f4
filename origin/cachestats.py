"""Cache statistics from nginx's JSON-lines access log (`ocr-origin cachestats`).

Reads the `ocr_json` format of deploy/nginx/snippets/logging.conf one line at a time, so a 1 GB
log (or a rotated `.gz`) is processed in bounded memory:

- counters are plain integers;
- latency percentiles come from a log-bucketed histogram (relative error <= 0.5%, at most a few
  thousand buckets whatever the number of requests);
- top keys come from the Space-Saving algorithm (Metwally et al., 2005) with a fixed number of
  counters: exact while the distinct keys fit, approximate (upper bounds) beyond;
- per-time-bucket rows grow with the time span, not with the number of lines.

Definitions (also in the README):
- `requests`: lines in the selected time range; `cacheable`: those that went through the cache
  (non-empty `$upstream_cache_status`; POST /ocr and health checks have none).
- served from cache: HIT, STALE, UPDATING, REVALIDATED. `hit_ratio` = served from cache / cacheable.
- `by_status`: count per cache status, with "NONE" for requests that bypassed the cache layer.
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import math
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

logger = logging.getLogger(__name__)

CACHE_SERVED = frozenset({"HIT", "STALE", "UPDATING", "REVALIDATED"})
NO_CACHE = "NONE"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# ----------------------------------------------------------------------------- bounded structures
class LogHistogram:
    """Bounded-memory histogram of non-negative values with relative precision `alpha`.

    Bucket i holds values in [min_value * g**i, min_value * g**(i+1)) with g = (1+a)/(1-a); a
    percentile is reported as the bucket's centre, within a relative error `alpha` of the truth.
    Values below `min_value` (nginx logs HITs as 0.000 s) share one "zero" bucket reported as 0.
    """

    def __init__(self, alpha: float = 0.005, min_value: float = 1e-4) -> None:
        self.alpha = alpha
        self.min_value = min_value
        self.gamma = (1 + alpha) / (1 - alpha)
        self._log_gamma = math.log(self.gamma)
        self.zero = 0
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value
        if value < self.min_value:
            self.zero += 1
        else:
            self.buckets[int(math.log(value / self.min_value) / self._log_gamma)] += 1

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0 <= q <= 100), nearest-rank; None when empty."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        if rank <= self.zero:
            return 0.0
        seen = self.zero
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                lower = self.min_value * self.gamma ** index
                # 2·L·g/(1+g) is within alpha of every value in [L, L·g) (as in DDSketch).
                return min(2 * lower * self.gamma / (1 + self.gamma), self.max)
        return self.max

    def summary(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "mean": (self.total / self.count) if self.count else None,
            "p50": self.percentile(50), "p90": self.percentile(90),
            "p99": self.percentile(99), "max": self.max if self.count else None,
        }


class SpaceSaving:
    """Top-k heavy hitters with a fixed number of counters (Metwally, Agrawal, El Abbadi 2005).

    While fewer than `capacity` distinct items have been seen, counts are exact. Afterwards a new
    item replaces the smallest counter and inherits its count (recorded as the error bound).
    """

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self.counts: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def add(self, item: str) -> None:
        if item in self.counts:
            self.counts[item] += 1
        elif len(self.counts) < self.capacity:
            self.counts[item] = 1
            self.errors[item] = 0
        else:
            # O(capacity) eviction keeps the code short; a log has few distinct hot keys and the
            # capacity is small, so this is not the bottleneck next to JSON parsing.
            victim = min(self.counts, key=self.counts.__getitem__)
            floor = self.counts.pop(victim)
            self.errors.pop(victim)
            self.counts[item] = floor + 1
            self.errors[item] = floor

    def top(self, n: int) -> list[tuple[str, int, int]]:
        """[(item, count, max_overcount)] by decreasing count."""
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        return [(item, count, self.errors[item]) for item, count in ranked]


# ----------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Entry:
    """The fields of one access-log line that the statistics use."""

    ts: float             # epoch seconds
    uri: str
    status: int
    bytes: int
    request_time: float   # seconds
    cache: str            # HIT, MISS, ..., or NONE


def parse_time(value: str) -> float:
    """ISO 8601 (nginx $time_iso8601) to epoch seconds; naive times are taken as UTC."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _uri_from_request(request: str) -> str:
    """"GET /results/k?x=1 HTTP/1.1" -> "/results/k" (for logs without a uri field)."""
    parts = request.split(" ")
    return parts[1].split("?", 1)[0] if len(parts) > 1 else ""


def parse_line(line: str | bytes) -> Entry | None:
    """One log line to an Entry; None for a line that is not an ocr_json record."""
    try:
        rec = json.loads(line)
        ts = float(rec["msec"]) if "msec" in rec else parse_time(rec["time"])
        cache = rec.get("cache") or ""
        return Entry(
            ts=ts,
            uri=str(rec.get("uri") or _uri_from_request(rec.get("request", ""))),
            status=int(rec.get("status", 0)),
            bytes=int(rec.get("bytes", 0) or 0),
            request_time=float(rec.get("request_time", 0) or 0),
            cache=cache if cache and cache != "-" else NO_CACHE,
        )
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def parse_since(value: str, now: float | None = None) -> float:
    """`--since`: an ISO time (2026-11-23T10:00:00+00:00) or a duration back from now (90m, 24h, 7d)."""
    m = _DURATION.match(value.strip())
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return parse_time(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time or a duration like 24h: {value!r}") from None


def parse_duration(value: str) -> int:
    """`--bucket`: 30s, 5m, 1h, 1d or plain seconds."""
    m = _DURATION.match(value.strip())
    seconds = float(m.group(1)) * _UNITS[m.group(2)] if m else float(value)
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"bucket must be at least 1 s: {value!r}")
    return int(seconds)


def open_log(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    if path.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # a GzipFile reads bytes
    return open(path, "rb", buffering=1024 * 1024)


def iter_entries(paths: Iterable[str], stats: "CacheStats") -> Iterator[Entry]:
    for path in paths:
        with open_log(path) as fh:
            for line in fh:  # line by line: memory does not grow with the file
                if not line.strip():
                    continue
                entry = parse_line(line)
                if entry is None:
                    stats.bad_lines += 1
                    continue
                yield entry


# ----------------------------------------------------------------------------- statistics
@dataclass
class Bucket:
    requests: int = 0
    cacheable: int = 0
    served_from_cache: int = 0
    bytes: int = 0


@dataclass
class CacheStats:
    bucket_seconds: int = 3600
    top_capacity: int = 1000
    requests: int = 0
    bad_lines: int = 0
    skipped: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    http_status: Counter[int] = field(default_factory=Counter)
    bytes_from_cache: int = 0
    bytes_from_origin: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    latency: dict[str, LogHistogram] = field(default_factory=dict)
    buckets: dict[int, Bucket] = field(default_factory=dict)
    keys: SpaceSaving = field(init=False)

    def __post_init__(self) -> None:
        self.keys = SpaceSaving(self.top_capacity)
        self.latency = {"HIT": LogHistogram(), "MISS": LogHistogram(), "ALL": LogHistogram()}

    def add(self, e: Entry) -> None:
        self.requests += 1
        self.by_status[e.cache] += 1
        self.http_status[e.status] += 1
        self.first_ts = e.ts if self.first_ts is None else min(self.first_ts, e.ts)
        self.last_ts = e.ts if self.last_ts is None else max(self.last_ts, e.ts)
        from_cache = e.cache in CACHE_SERVED
        if from_cache:
            self.bytes_from_cache += e.bytes
        else:
            self.bytes_from_origin += e.bytes
        self.latency["ALL"].add(e.request_time)
        if e.cache == "HIT":
            self.latency["HIT"].add(e.request_time)
        elif e.cache == "MISS":
            self.latency["MISS"].add(e.request_time)
        start = int(e.ts // self.bucket_seconds * self.bucket_seconds)
        b = self.buckets.get(start)
        if b is None:
            b = self.buckets[start] = Bucket()
        b.requests += 1
        b.bytes += e.bytes
        if e.cache != NO_CACHE:
            b.cacheable += 1
            b.served_from_cache += from_cache
            self.keys.add(e.uri)

    @property
    def cacheable(self) -> int:
        return self.requests - self.by_status.get(NO_CACHE, 0)

    @property
    def served_from_cache(self) -> int:
        return sum(n for status, n in self.by_status.items() if status in CACHE_SERVED)

    @property
    def hit_ratio(self) -> float:
        return self.served_from_cache / self.cacheable if self.cacheable else 0.0

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        def iso(ts: float | None) -> str | None:
            return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()

        return {
            "requests": self.requests,
            "cacheable": self.cacheable,
            "served_from_cache": self.served_from_cache,
            "hit_ratio": round(self.hit_ratio, 6),
            "by_status": dict(sorted(self.by_status.items())),
            "http_status": {str(k): v for k, v in sorted(self.http_status.items())},
            "bytes": {"from_cache": self.bytes_from_cache, "from_origin": self.bytes_from_origin},
            "latency_s": {name: h.summary() for name, h in self.latency.items()},
            "first": iso(self.first_ts),
            "last": iso(self.last_ts),
            "bucket_seconds": self.bucket_seconds,
            "buckets": [
                {"start": iso(start), "requests": b.requests, "cacheable": b.cacheable,
                 "served_from_cache": b.served_from_cache,
                 "hit_ratio": round(b.served_from_cache / b.cacheable, 6) if b.cacheable else None,
                 "requests_per_s": round(b.requests / self.bucket_seconds, 6), "bytes": b.bytes}
                for start, b in sorted(self.buckets.items())
            ],
            "top_keys": [{"uri": uri, "requests": n, "max_overcount": err}
                         for uri, n, err in self.keys.top(top)],
            "bad_lines": self.bad_lines,
            "skipped_by_time": self.skipped,
        }


def collect(paths: Iterable[str], *, since: float | None = None, until: float | None = None,
            bucket_seconds: int = 3600, top_capacity: int = 1000) -> CacheStats:
    """Stream the logs once and return the statistics."""
    stats = CacheStats(bucket_seconds=bucket_seconds, top_capacity=top_capacity)
    for entry in iter_entries(paths, stats):
        if (since is not None and entry.ts < since) or (until is not None and entry.ts >= until):
            stats.skipped += 1
            continue
        stats.add(entry)
    return stats


# ----------------------------------------------------------------------------- output
def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f} ms"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def format_text(stats: CacheStats, top: int = 10) -> str:
    d = stats.to_dict(top)
    lines = [
        f"requests          {d['requests']}  (cacheable {d['cacheable']}, served from cache "
        f"{d['served_from_cache']})",
        f"hit ratio         {d['hit_ratio']:.1%}",
        f"time range        {d['first']} .. {d['last']}",
        "by cache status   " + "  ".join(f"{k}={v}" for k, v in d["by_status"].items()),
        "by HTTP status    " + "  ".join(f"{k}={v}" for k, v in d["http_status"].items()),
        f"bytes             from cache {_size(stats.bytes_from_cache)}, from origin "
        f"{_size(stats.bytes_from_origin)}",
        "latency           " + "   ".join(
            f"{name}: p50 {_ms(h['p50'])} p90 {_ms(h['p90'])} p99 {_ms(h['p99'])} (n={h['count']})"
            for name, h in d["latency_s"].items() if name in ("HIT", "MISS")),
        "",
        f"per {stats.bucket_seconds} s bucket:",
        f"  {'start':<26} {'requests':>9} {'req/s':>9} {'hit ratio':>9}",
    ]
    for b in d["buckets"]:
        ratio = "-" if b["hit_ratio"] is None else f"{b['hit_ratio']:.1%}"
        lines.append(f"  {b['start']:<26} {b['requests']:>9} {b['requests_per_s']:>9.3f} {ratio:>9}")
    lines += ["", "top keys:"]
    lines += [f"  {k['requests']:>9}  {k['uri']}" for k in d["top_keys"]]
    if stats.bad_lines:
        lines.append(f"\n{stats.bad_lines} line(s) were not ocr_json records and were ignored")
    return "\n".join(lines)


def plot(stats: CacheStats, out: Path) -> Path:
    """PNG with hit ratio and request rate per time bucket."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    starts = sorted(stats.buckets)
    times = [datetime.fromtimestamp(s, timezone.utc) for s in starts]
    ratios = [100 * b.served_from_cache / b.cacheable if b.cacheable else float("nan")
              for b in (stats.buckets[s] for s in starts)]
    rates = [stats.buckets[s].requests / stats.bucket_seconds for s in starts]

    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), constrained_layout=True)
    ax1.plot(times, ratios, marker="o", markersize=3, color="tab:green")
    ax1.set_ylabel("hit ratio (%)")
    ax1.set_ylim(0, 105)
    ax1.set_title(f"nginx cache: {stats.requests} requests, overall hit ratio {stats.hit_ratio:.1%}")
    ax1.grid(True, alpha=0.3)
    width = stats.bucket_seconds / 86400 * 0.9  # bar width in days (matplotlib date units)
    ax2.bar(times, rates, width=width, color="tab:blue", align="edge")
    ax2.set_ylabel("requests / s")
    ax2.set_xlabel(f"time (UTC, {stats.bucket_seconds} s buckets)")
    ax2.grid(True, alpha=0.3)
    ax2.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    fig.autofmt_xdate()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="ocr-origin cachestats")
    parser.description = "Hit ratio, cache statuses, bytes, latency and top keys from nginx's access log."
    parser.add_argument("logs", nargs="+", metavar="ACCESS_LOG",
                        help="ocr_json access log(s); .gz is read transparently, - is stdin")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--since", type=parse_since, help="ISO time or duration back from now (24h, 7d)")
    parser.add_argument("--until", type=parse_since, help="ISO time or duration back from now")
    parser.add_argument("--bucket", type=parse_duration, default=3600, help="time bucket (default 1h)")
    parser.add_argument("--top", type=int, default=10, help="number of top keys (default 10)")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="write a PNG plot")
    return parser


def run(args: argparse.Namespace) -> int:
    missing = [p for p in args.logs if p != "-" and not Path(p).exists()]
    if missing:
        print(f"cachestats: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    stats = collect(args.logs, since=args.since, until=args.until, bucket_seconds=args.bucket,
                    top_capacity=max(1000, 10 * args.top))
    if args.json:
        print(json.dumps(stats.to_dict(args.top), indent=2))
    else:
        print(format_text(stats, args.top))
    if args.plot:
        out = plot(stats, args.plot)
        print(f"plot written to {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
