"""One declaration of every OCR_* option (origin/settings.py), read by every part that needs one."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from origin import settings as S
from origin.settings import OPTIONS, ConfigError, Settings

ROOT = Path(__file__).resolve().parents[3]
# Reads of the environment: os.environ.get("OCR_X"), os.environ["OCR_X"] (not an assignment),
# os.getenv("OCR_X"), env.get("OCR_X", ...).
ENV_READ = re.compile(r"""(?:environ|env|getenv)(?:\.get)?\(\s*["'](OCR_[A-Z0-9_]+)["']|"""
                      r"""environ\[["'](OCR_[A-Z0-9_]+)["']\](?!\s*=[^=])""")
SOURCES = [p for d in ("origin", "cache", "deploy") for p in (ROOT / d).rglob("*.py")]


def _readme_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def test_readme_table_is_the_declaration() -> None:
    assert _readme_rows() == S.readme_table().splitlines()
    # and the table is not empty: every declared option has a row
    assert len(_readme_rows()) == len(OPTIONS) + 2


def test_no_module_reads_ocr_variables_itself() -> None:
    offenders = []
    for path in SOURCES:
        if path == ROOT / "origin/settings.py":
            continue
        for m in ENV_READ.finditer(path.read_text()):
            offenders.append(f"{path.relative_to(ROOT)}: {m.group(1) or m.group(2)}")
    assert SOURCES and not offenders, offenders


def test_every_ocr_name_in_the_code_is_declared() -> None:
    from tests.servers import load_nginx_render

    placeholders = load_nginx_render().placeholders()  # nginx template values, not settings
    names: set[str] = set()
    for path in [*SOURCES, ROOT / "Makefile"]:
        names |= set(re.findall(r"\b(OCR_[A-Z0-9_]+[A-Z0-9])\b", path.read_text()))
    undeclared = sorted(names - set(OPTIONS) - placeholders)
    assert names and not undeclared, undeclared


def test_constants_match_the_modules_that_own_them() -> None:
    from cache.index import MAX_RADIUS
    from cache.keys import MIN_SECRET_BYTES

    assert S.MIN_SECRET_BYTES == MIN_SECRET_BYTES
    assert OPTIONS["OCR_HAMMING_DISTANCE"].maximum == MAX_RADIUS
    from ocr_core.runtime import DEFAULT_ENGINE, ENGINES

    assert OPTIONS["OCR_RECOGNIZER_ENGINE"].choices == ENGINES
    assert OPTIONS["OCR_RECOGNIZER_ENGINE"].default == DEFAULT_ENGINE
    from ocr_core.quantized import DEFAULT_PRECISION, PRECISIONS

    assert OPTIONS["OCR_RECOGNIZER_PRECISION"].choices == PRECISIONS
    assert OPTIONS["OCR_RECOGNIZER_PRECISION"].default == DEFAULT_PRECISION


def test_defaults_and_parsing() -> None:
    env = {"OCR_SECRET": "s" * 16}
    s = Settings.from_env(env)
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.storage_url == "file://var/results"
    assert s == Settings(secret=b"s" * 16)  # the dataclass defaults are the declaration's
    # the default Redis URL follows the launcher's port: reindex/doctor can never hit another
    # deployment's Redis on 6379 (issue 16 item 11)
    assert Settings.from_env({**env, "OCR_REDIS_PORT": "6390"}).redis_url == "redis://127.0.0.1:6390/0"
    assert Settings.from_env({**env, "OCR_REDIS_URL": ""}).redis_url == ""  # empty: index off
    assert Settings.from_env({**env, "OCR_VAR_DIR": "/srv/x"}).storage_url == "file:///srv/x/results"
    assert S.get("OCR_MAX_REQUESTS_JITTER", {"OCR_MAX_REQUESTS": "40"}) == 10
    assert S.get("OCR_WORKERS", {}) >= 2
    assert Settings.from_env({**env, "OCR_RECOGNIZER_ENGINE": "Torch"}).recognizer_engine == "torch"
    assert Settings.from_env({**env, "OCR_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    for bad in ({"OCR_MAX_PIXELS": "lots"}, {"OCR_HAMMING_DISTANCE": "9"}, {"OCR_LOG_LEVEL": "LOUD"},
                {"OCR_HTTP_PORT": "0"}, {"OCR_RECOGNIZER_ENGINE": "tensorrt"}):
        with pytest.raises(ConfigError):
            Settings.from_env({**env, **bad}) if "PORT" not in next(iter(bad)) else S.get("OCR_HTTP_PORT", bad)


def test_secret_file_under_var_dir(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("f" * 20 + "\n")
    assert Settings.from_env({"OCR_VAR_DIR": str(tmp_path)}).secret == b"f" * 20


def test_nginx_render_reads_the_same_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """OCR_NGINX_CACHE_MAX_SIZE was documented and ignored by `make run`; the body limit had a
    second default in render.py."""
    from tests.servers import load_nginx_render

    render = load_nginx_render()
    monkeypatch.setenv("OCR_NGINX_CACHE_MAX_SIZE", "37m")
    monkeypatch.setenv("OCR_MAX_UPLOAD_BYTES", "12345")
    values = render.values_for(tmp_path)
    assert values["OCR_NGINX_CACHE_MAX_SIZE"] == "37m"
    assert values["OCR_MAX_UPLOAD_BYTES"] == "12345"


def test_gunicorn_config_reads_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    monkeypatch.setenv("OCR_ORIGIN_PORT", "18123")
    monkeypatch.setenv("OCR_MAX_REQUESTS", "100")
    conf = runpy.run_path(str(ROOT / "deploy/gunicorn.conf.py"))
    assert conf["bind"] == "127.0.0.1:18123"
    assert conf["max_requests"] == 100 and conf["max_requests_jitter"] == 25
    assert callable(conf["post_fork"]) and callable(conf["child_exit"])


def test_error_max_age_is_used(app_factory) -> None:
    app = app_factory(error_max_age=7)
    resp = app.test_client().get("/results/" + "a" * 32)
    assert resp.status_code == 404
    assert resp.headers["Cache-Control"] == "public, max-age=7"


def test_reindex_follows_ocr_redis_port(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_server,
                                        redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`ocr-origin reindex --clear` defaulted to 127.0.0.1:6379 whatever OCR_REDIS_PORT said."""
    import redis

    from cache.store import FileResultStore
    from origin.cli import main

    store = FileResultStore(tmp_path / "res")
    key = "abcd" + "a" * 28
    store.put(key, "result.json", json.dumps({"key": key, "phash": "00000000000000ff",
                                              "created_at": "2026-01-02T03:04:05+00:00"}).encode(),
              content_type="application/json")
    monkeypatch.delenv("OCR_REDIS_URL", raising=False)
    monkeypatch.setenv("OCR_REDIS_PORT", str(redis_server.port))
    monkeypatch.setenv("OCR_STORAGE_URL", f"file://{tmp_path / 'res'}")
    assert main(["reindex"]) == 0
    assert json.loads(capsys.readouterr().out)["indexed"] == 1
    assert redis.Redis.from_url(redis_url).dbsize() > 0


def test_cache_cli_has_no_default_redis() -> None:
    from cache.__main__ import main

    with pytest.raises(SystemExit):
        main(["reindex", "--clear"])
