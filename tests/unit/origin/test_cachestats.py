"""origin.cachestats on generated ocr_json logs whose answers are known by construction."""
from __future__ import annotations

import gzip
import json
import math
import random
import re
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from origin import cachestats
from origin.cachestats import LogHistogram, SpaceSaving, collect

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc)


def line(ts: datetime, uri: str, cache: str, *, status: int = 200, nbytes: int = 1000,
         request_time: float = 0.0, method: str = "GET") -> str:
    """One record exactly as deploy/nginx/snippets/logging.conf writes it."""
    return json.dumps({
        "time": ts.isoformat(), "msec": round(ts.timestamp(), 3), "request": f"{method} {uri} HTTP/1.1",
        "method": method, "uri": uri, "status": status, "bytes": nbytes, "request_time": request_time,
        "upstream_response_time": "" if cache == "HIT" else "0.010", "upstream_status": "",
        "cache": cache, "request_id": "0" * 32, "remote_addr": "127.0.0.1", "user_agent": "t",
    })


@pytest.fixture()
def known_log(tmp_path: Path) -> Path:
    """3 hours. Hour h has 10*(h+1) GETs on /results/ of which 6*(h+1)... see the constants below.

    Hour 0: 10 MISS + 30 HIT + 2 STALE           -> cacheable 42, from cache 32
    Hour 1: 20 MISS + 20 HIT + 1 EXPIRED         -> cacheable 41, from cache 20
    Hour 2: 10 MISS + 60 HIT + 5 POST (no cache) -> cacheable 70, from cache 60
    MISS latencies 0.010, 0.011, ... (40 values, 0.010..0.049 s); HITs 0.000 or 0.001 s.
    Key /results/hot gets every HIT of hour 2 (60); others are spread.
    Bytes: HIT/STALE 1000 each, MISS/EXPIRED 1500, POST 0.
    Plus 2 garbage lines that must be counted as bad, not crash.
    """
    rows: list[str] = []
    miss_i = 0

    def miss(ts: datetime, uri: str) -> None:
        nonlocal miss_i
        rows.append(line(ts, uri, "MISS", nbytes=1500, request_time=round(0.010 + 0.001 * miss_i, 3)))
        miss_i += 1

    for i in range(10):
        miss(T0 + timedelta(minutes=i), f"/results/k{i}")
    for i in range(30):
        rows.append(line(T0 + timedelta(minutes=10 + i), f"/results/k{i % 10}", "HIT", request_time=0.001 * (i % 2)))
    for i in range(2):
        rows.append(line(T0 + timedelta(minutes=50 + i), "/results/k0", "STALE"))
    h1 = T0 + timedelta(hours=1)
    for i in range(20):
        miss(h1 + timedelta(minutes=i), f"/results/m{i}")
        rows.append(line(h1 + timedelta(minutes=i, seconds=30), f"/results/m{i}", "HIT"))
    rows.append(line(h1 + timedelta(minutes=59), "/results/m0", "EXPIRED", nbytes=1500, request_time=0.02))
    h2 = T0 + timedelta(hours=2)
    for i in range(10):
        miss(h2 + timedelta(minutes=i), f"/results/n{i}")
    for i in range(60):
        rows.append(line(h2 + timedelta(seconds=30 * i + 5), "/results/hot", "HIT"))
    for i in range(5):
        rows.append(line(h2 + timedelta(minutes=40 + i), "/ocr", "", status=303, nbytes=0, method="POST",
                         request_time=0.2))
    rows.insert(5, "not json at all")
    rows.insert(50, '{"truncated": ')
    path = tmp_path / "access.log"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_known_answers(known_log: Path) -> None:
    stats = collect([str(known_log)], bucket_seconds=3600)
    d = stats.to_dict(top=3)
    assert d["requests"] == 42 + 41 + 75
    assert d["cacheable"] == 42 + 41 + 70
    assert d["served_from_cache"] == 32 + 20 + 60
    assert d["hit_ratio"] == pytest.approx(112 / 153, abs=1e-6)
    assert d["by_status"] == {"EXPIRED": 1, "HIT": 110, "MISS": 40, "NONE": 5, "STALE": 2}
    assert d["http_status"] == {"200": 153, "303": 5}
    assert d["bytes"] == {"from_cache": 112 * 1000, "from_origin": 41 * 1500}
    assert d["bad_lines"] == 2
    assert [b["requests"] for b in d["buckets"]] == [42, 41, 75]
    assert [b["hit_ratio"] for b in d["buckets"]] == [pytest.approx(32 / 42, abs=1e-6),
                                                      pytest.approx(20 / 41, abs=1e-6),
                                                      pytest.approx(60 / 70, abs=1e-6)]
    assert d["buckets"][0]["start"] == T0.isoformat()
    assert d["top_keys"][0] == {"uri": "/results/hot", "requests": 60, "max_overcount": 0}
    # MISS latencies are exactly 0.010 .. 0.049: nearest-rank p50 = 20th = 0.029, p99 = 40th = 0.049.
    miss = d["latency_s"]["MISS"]
    assert miss["count"] == 40
    assert miss["p50"] == pytest.approx(0.029, rel=0.006)
    assert miss["p99"] == pytest.approx(0.049, rel=0.006)
    hit = d["latency_s"]["HIT"]
    assert hit["count"] == 110 and hit["p50"] == 0.0 and hit["max"] == pytest.approx(0.001)


def test_since_until_filter(known_log: Path) -> None:
    since = cachestats.parse_since((T0 + timedelta(hours=1)).isoformat())
    until = cachestats.parse_since((T0 + timedelta(hours=2)).isoformat())
    stats = collect([str(known_log)], since=since, until=until)
    assert stats.requests == 41
    assert stats.hit_ratio == pytest.approx(20 / 41)
    assert stats.skipped == 42 + 75


def test_relative_since_and_bucket_parsing() -> None:
    assert cachestats.parse_since("24h", now=100_000.0) == 100_000.0 - 86400
    assert cachestats.parse_since("90m", now=10_000.0) == 10_000.0 - 5400
    assert cachestats.parse_duration("5m") == 300
    assert cachestats.parse_duration("1d") == 86400
    with pytest.raises(Exception):
        cachestats.parse_since("yesterday-ish")


def test_cli_json_has_the_documented_keys(known_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cachestats.main(["--json", str(known_log)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["requests"] == 158
    assert out["hit_ratio"] == pytest.approx(112 / 153, abs=1e-6)
    assert out["by_status"]["HIT"] == 110 and out["by_status"]["MISS"] == 40


def test_text_report_and_gz(known_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gz = tmp_path / "access.log.1.gz"
    gz.write_bytes(gzip.compress(known_log.read_bytes()))
    assert cachestats.main([str(gz), "--bucket", "1h"]) == 0
    out = capsys.readouterr().out
    assert "hit ratio         73.2%" in out
    assert "/results/hot" in out


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cachestats.main([str(tmp_path / "nope.log")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_plot_is_a_png(known_log: Path, tmp_path: Path) -> None:
    out = tmp_path / "plots" / "cache.png"
    assert cachestats.main([str(known_log), "--plot", str(out), "--json"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as img:
        assert img.size == (1000, 600)
        # Not a blank canvas: the lines and bars put many distinct colours on it.
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 20


def test_log_histogram_is_bounded_and_accurate() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-4, 1.5) for _ in range(50_000)]
    h = LogHistogram()
    for v in values:
        h.add(v)
    values.sort()
    for q in (50, 90, 99, 99.9):
        exact = values[max(0, math.ceil(q / 100 * len(values)) - 1)]
        assert h.percentile(q) == pytest.approx(exact, rel=h.alpha * 1.01)
    assert len(h.buckets) < 3000  # bounded by the value range, not the count


def test_space_saving_exact_when_it_fits_and_bounded_when_not() -> None:
    s = SpaceSaving(capacity=50)
    for i in range(1000):
        s.add("hot")
        s.add(f"cold-{i}")  # 1000 distinct one-offs flowing through 50 counters
    assert len(s.counts) == 50
    (item, count, err), = s.top(1)
    assert item == "hot" and count - err <= 1000 <= count


def test_streams_a_large_log_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    rng = random.Random(1)
    with path.open("w") as f:
        for i in range(25_000):
            cache = "HIT" if rng.random() < 0.9 else "MISS"
            f.write(line(T0 + timedelta(seconds=i), f"/results/k{rng.randrange(5000)}", cache,
                         request_time=0.0 if cache == "HIT" else 0.05) + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    stats = collect([str(path)], bucket_seconds=600)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stats.requests == 25_000
    assert 0.88 < stats.hit_ratio < 0.92
    # Key counters (5000 distinct keys, capped at 1000) and buckets dominate; never the file.
    assert peak < size / 5, (peak, size)


def test_cli_since_and_bucket(known_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    since = (T0 + timedelta(hours=1)).isoformat()
    assert cachestats.main(["--json", "--since", since, "--bucket", "30m", str(known_log)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["requests"] == 41 + 75 and out["skipped_by_time"] == 42
    assert out["bucket_seconds"] == 1800
    # Hour 1: 20 MISS + 20 HIT in minutes 0..19, EXPIRED at 59. Hour 2: 10 MISS and 60 HIT in
    # the first half hour, the 5 POSTs (no cache status) at minutes 40..44.
    assert [(b["start"], b["requests"]) for b in out["buckets"]] == [
        ((T0 + timedelta(hours=1)).isoformat(), 40), ((T0 + timedelta(hours=1, minutes=30)).isoformat(), 1),
        ((T0 + timedelta(hours=2)).isoformat(), 70), ((T0 + timedelta(hours=2, minutes=30)).isoformat(), 5)]
    assert [b["hit_ratio"] for b in out["buckets"]] == [0.5, 0.0, pytest.approx(60 / 70, abs=1e-6), None]
    # A duration counts back from now (parse_since is pinned above): far enough back, all lines.
    assert cachestats.main(["--json", "--since", "100000w", str(known_log)]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 158


def test_text_report_has_bytes_and_latency_lines(known_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cachestats.main([str(known_log)]) == 0
    out = capsys.readouterr().out
    assert "bytes             from cache 109.4 KiB, from origin 60.1 KiB" in out
    assert "HIT: p50 0.0 ms" in out
    miss_p50 = float(re.search(r"MISS: p50 ([\d.]+) ms", out).group(1))
    assert miss_p50 == pytest.approx(29.0, rel=0.006)
    assert "2 line(s) were not ocr_json records" in out
