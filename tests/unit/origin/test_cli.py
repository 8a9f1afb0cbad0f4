"""The `ocr-origin` console script: argument handling and delegation (no servers needed)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from origin import cli


def test_serve_execs_gunicorn_with_the_deploy_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    prom = tmp_path / "prom"
    prom.mkdir()
    (prom / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(prom))
    monkeypatch.setenv("OCR_TORCH_THREADS", "unset-me")  # registers the original state for undo
    monkeypatch.delenv("OCR_TORCH_THREADS")
    calls: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, argv: calls.append(argv))
    cli.main(["serve", "--bind", "127.0.0.1:9999", "--workers", "3", "--", "--log-level", "debug"])
    (argv,) = calls
    assert argv[1:3] == ["-m", "gunicorn"]
    assert argv[argv.index("-c") + 1].endswith("deploy/gunicorn.conf.py")
    assert "origin.wsgi:app" in argv
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:9999"
    assert argv[argv.index("--workers") + 1] == "3"
    assert argv[-2:] == ["--log-level", "debug"]
    # one torch thread per worker is the declared default (origin/settings.py), not set here
    from origin.settings import get
    assert "OCR_TORCH_THREADS" not in os.environ and get("OCR_TORCH_THREADS") == 1
    assert list(prom.iterdir()) == []  # previous run's metric files cleared


def test_reindex_delegates_to_cache_main(capsys: pytest.CaptureFixture[str]) -> None:
    # An empty Redis URL makes `python -m cache reindex` refuse with 2 before touching anything.
    assert cli.main(["reindex", "--redis-url", "", "--storage-url", "file:///nonexistent"]) == 2
    assert "index is disabled" in capsys.readouterr().err


def test_cachestats_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "a.log"
    log.write_text('{"msec": 1.0, "uri": "/results/x", "status": 200, "bytes": 5, '
                   '"request_time": 0.0, "cache": "HIT"}\n')
    assert cli.main(["cachestats", "--json", str(log)]) == 0
    assert '"hit_ratio": 1.0' in capsys.readouterr().out


def test_unknown_command_is_an_error() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2
