"""`ocr-origin doctor`: check an installation and say in plain words what is wrong.

Checks, each independent (one failure never hides the others):
  settings  origin.settings.Settings.from_env() accepts the environment
  secret    the HMAC secret for result keys exists (OCR_SECRET or OCR_SECRET_FILE)
  redis     OCR_REDIS_URL answers PING (empty URL: disabled, a warning)
  storage   OCR_STORAGE_URL can be written and read (file:// dir or s3:// bucket)
  model     the recognizer weights exist (and load, unless --no-model-load)
  nginx     the nginx template renders and `nginx -t` accepts it; body limit matches the origin's

Exit status 0 when nothing FAILed (warnings allowed), 1 otherwise. Reads the same environment as
the origin, with the defaults of docs/architecture.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
RENDER_PY = REPO_ROOT / "deploy" / "nginx" / "render.py"

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: str   # ok | warn | FAIL
    detail: str   # what was found, in plain words (and what to do about it)


def env_get(env: Mapping[str, str], name: str) -> Any:
    """The option's value in `env`, with the one default declared in origin/settings.py."""
    from origin.settings import get

    return get(name, env)


# ----------------------------------------------------------------------------- checks
def check_settings(env: Mapping[str, str]) -> Check:
    try:
        from origin.settings import Settings
    except ImportError as exc:
        return Check("settings", FAIL, f"cannot import origin.settings ({exc}); is the package installed?")
    try:
        Settings.from_env(env)
    except Exception as exc:  # noqa: BLE001 - any error here is a configuration problem to report
        return Check("settings", FAIL, f"the environment is not a valid configuration: {exc}")
    return Check("settings", OK, "environment parsed by origin.settings")


def check_secret(env: Mapping[str, str]) -> Check:
    try:
        from cache.keys import MIN_SECRET_BYTES
    except ImportError:
        MIN_SECRET_BYTES = 16  # noqa: N806 - same meaning as the constant it stands in for
    if env_get(env, "OCR_SECRET"):
        if len(env_get(env, "OCR_SECRET").encode()) < MIN_SECRET_BYTES:
            return Check("secret", FAIL, f"OCR_SECRET is shorter than {MIN_SECRET_BYTES} bytes: "
                                         "result URLs would be guessable")
        return Check("secret", OK, "OCR_SECRET is set")
    path = Path(env_get(env, "OCR_SECRET_FILE"))
    if not path.exists():
        return Check("secret", FAIL, f"no secret: OCR_SECRET is unset and {path} does not exist "
                                     "(`make run` creates it; or set OCR_SECRET)")
    try:
        text = path.read_text().strip()
    except OSError as exc:
        return Check("secret", FAIL, f"cannot read the secret file {path}: {exc}")
    if len(text.encode()) < MIN_SECRET_BYTES:
        return Check("secret", FAIL, f"the secret file {path} holds fewer than {MIN_SECRET_BYTES} bytes")
    if path.stat().st_mode & 0o077:
        return Check("secret", WARN, f"{path} is readable by other users; chmod 600 it")
    return Check("secret", OK, f"secret file {path}")


def check_redis(env: Mapping[str, str]) -> Check:
    from origin.settings import redact_url

    secret_url = env_get(env, "OCR_REDIS_URL")
    url = redact_url(secret_url)  # what the report says: never the password
    if not url:
        return Check("redis", WARN, "OCR_REDIS_URL is empty: the index is disabled, so there is no "
                                    "near-duplicate reuse and no single flight")
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:
        return Check("redis", FAIL, f"the redis package is missing ({exc})")
    # Short timeouts and no retries: redis-py's defaults would block ~4 s on a refused port.
    client = redis.Redis.from_url(secret_url, socket_connect_timeout=1.0, socket_timeout=1.0,
                                  retry=Retry(NoBackoff(), 0))
    try:
        t0 = time.perf_counter()
        client.ping()
        ms = (time.perf_counter() - t0) * 1000
        info = client.info("persistence")
    except redis.AuthenticationError as exc:
        return Check("redis", FAIL, f"Redis at {url} refused our credentials: {exc}")
    except redis.RedisError as exc:
        return Check("redis", FAIL, f"cannot reach Redis at {url}: {str(exc).rstrip('.')}. Is redis-server running "
                                    "(`make run` starts it)? Uploads still work without it, but "
                                    "without deduplication.")
    finally:
        client.close()
    if not info.get("aof_enabled") and not info.get("rdb_last_save_time"):
        return Check("redis", WARN, f"Redis at {url} answers ({ms:.1f} ms) but persistence looks off; "
                                    "the index survives restarts only with AOF or RDB (`ocr-origin "
                                    "reindex` rebuilds it)")
    return Check("redis", OK, f"Redis at {url} answers PING in {ms:.1f} ms")


def check_storage(env: Mapping[str, str]) -> Check:
    url = env_get(env, "OCR_STORAGE_URL")
    endpoint = env_get(env, "OCR_S3_ENDPOINT_URL")
    try:
        from cache.errors import StorageUnavailable
        from cache.store import from_url
    except ImportError as exc:
        return Check("storage", FAIL, f"cannot import cache.store ({exc})")
    try:
        store = from_url(url, endpoint_url=endpoint)
        store.ping()
    except StorageUnavailable as exc:
        where = f" (endpoint {endpoint})" if url.startswith("s3://") and endpoint else ""
        return Check("storage", FAIL, f"storage {url}{where} cannot be written and read: {exc}. "
                                      "Without it uploads fail with 503.")
    except ValueError as exc:
        return Check("storage", FAIL, f"OCR_STORAGE_URL={url!r} is not usable: {exc} "
                                      "(use file://DIR or s3://bucket/prefix)")
    return Check("storage", OK, f"{store!r} is writable and readable")


def default_weights() -> Path | None:
    spec = importlib.util.find_spec("ocr_core")  # locate without importing torch
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / "crnn.pt"


def check_model(env: Mapping[str, str], load: bool = True) -> Check:
    path_s = env_get(env, "OCR_MODEL_PATH")
    path = Path(path_s) if path_s else default_weights()
    if path is None:
        return Check("model", FAIL, "the ocr_core package is not installed")
    if not path.exists():
        return Check("model", FAIL, f"the recognizer weights {path} do not exist "
                                    f"({'check OCR_MODEL_PATH' if path_s else 'the shipped weights are missing'})")
    size_mb = path.stat().st_size / 1e6
    if not load:
        return Check("model", OK, f"weights {path} ({size_mb:.1f} MB) present (not loaded)")
    try:
        from ocr_core import Predictor

        t0 = time.perf_counter()
        detector = env_get(env, "OCR_DETECTOR_PATH") or True
        if str(detector).lower() == "off":
            detector = False
        # The engine and precision the workers will run: both are part of the model version.
        predictor = Predictor.load(path if path_s else None, threads=1, detector=detector,
                                   engine=env_get(env, "OCR_RECOGNIZER_ENGINE"),
                                   precision=env_get(env, "OCR_RECOGNIZER_PRECISION"))
        seconds = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - any load failure is the finding
        return Check("model", FAIL, f"the weights {path} do not load: {type(exc).__name__}: {exc}")
    # Without OCR_MODEL_PATH the precision picks the shipped file (crnn.pt or crnn-int8.pt).
    loaded = predictor.weights_path or path
    return Check("model", OK, f"{predictor.model_name} {predictor.model_version} ({predictor.precision}) "
                              f"loaded from {loaded} ({loaded.stat().st_size / 1e6:.1f} MB) in {seconds:.1f} s")


def _load_render() -> ModuleType | None:
    if not RENDER_PY.exists():
        return None
    spec = importlib.util.spec_from_file_location("ocr_nginx_render", RENDER_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_nginx(env: Mapping[str, str], conf: Path | None = None) -> Check:
    render = _load_render()
    if render is None:
        return Check("nginx", WARN, f"{RENDER_PY} not found (package installed without deploy/): "
                                    "nginx config not checked")
    nginx = render.nginx_binary()
    if nginx is None:
        return Check("nginx", FAIL, "nginx is not installed (apt-get install -y nginx-light, or `make run`)")
    try:
        max_upload = env_get(env, "OCR_MAX_UPLOAD_BYTES")
    except ValueError as exc:
        return Check("nginx", FAIL, f"OCR_MAX_UPLOAD_BYTES is not usable: {exc}")
    with tempfile.TemporaryDirectory(prefix="ocr-doctor-nginx-") as tmp:
        if conf is None:
            try:
                values = render.values_for(Path(tmp), listen="127.0.0.1:8080",
                                           upstream=f"127.0.0.1:{env_get(env, 'OCR_ORIGIN_PORT')}",
                                           max_upload_bytes=max_upload)
                conf = render.write_config(Path(tmp) / "nginx.conf", values)
            except render.RenderError as exc:
                return Check("nginx", FAIL, f"the nginx template does not render: {exc}")
            except ValueError as exc:
                return Check("nginx", FAIL, f"OCR_MAX_UPLOAD_BYTES={max_upload!r} is not a number: {exc}")
        if not Path(conf).exists():
            return Check("nginx", FAIL, f"{conf} does not exist")
        proc = render.nginx_test(conf, nginx)
        if proc.returncode != 0:
            err = " ".join(proc.stderr.split())
            return Check("nginx", FAIL, f"`nginx -t` rejects {conf}: {err}")
        limits = re.findall(r"^\s*client_max_body_size\s+(\S+);", Path(conf).read_text(), re.M)
    if limits != [str(max_upload)]:
        return Check("nginx", FAIL, f"nginx client_max_body_size {limits} differs from the origin's "
                                    f"OCR_MAX_UPLOAD_BYTES={max_upload}: uploads in between fail "
                                    "with confusing errors; re-render the config")
    return Check("nginx", OK, f"`nginx -t` accepts the config; body limit {max_upload} bytes matches the origin")


# ----------------------------------------------------------------------------- runner
CHECKS = ("settings", "secret", "redis", "storage", "model", "nginx")


def run_checks(env: Mapping[str, str] | None = None, *, load_model: bool = True,
               nginx_conf: Path | None = None, skip: frozenset[str] = frozenset()) -> list[Check]:
    """Run every check not in `skip` (e.g. "nginx" inside the origin container, where nginx
    runs in a container of its own) and return their findings in order."""
    env = os.environ if env is None else env
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("settings", lambda: check_settings(env)),
        ("secret", lambda: check_secret(env)),
        ("redis", lambda: check_redis(env)),
        ("storage", lambda: check_storage(env)),
        ("model", lambda: check_model(env, load=load_model)),
        ("nginx", lambda: check_nginx(env, nginx_conf)),
    ]
    results = []
    for name, fn in checks:
        if name in skip:
            continue
        try:
            results.append(fn())
        except Exception as exc:  # noqa: BLE001 - a crashing check is reported, the others still run
            logger.exception("doctor check %s crashed", name)
            results.append(Check(name, FAIL, f"the check itself crashed: {type(exc).__name__}: {exc}"))
    return results


def run(args: argparse.Namespace) -> int:
    results = run_checks(load_model=not args.no_model_load, nginx_conf=args.nginx_conf,
                         skip=frozenset(args.skip or ()))
    failed = [c for c in results if c.status == FAIL]
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in results]}, indent=2))
    else:
        for c in results:
            print(f"{c.status:<5} {c.name:<9} {c.detail}")
        print("\nall good" if not failed else f"\n{len(failed)} problem(s): " + ", ".join(c.name for c in failed))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    from origin.cli import main as cli_main

    return cli_main(["doctor", *(argv or [])])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
