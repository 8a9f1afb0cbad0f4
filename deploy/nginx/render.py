#!/usr/bin/env python3
"""Render deploy/nginx/nginx.conf.template into a runnable nginx.conf.

Used by `make run` (deploy/run.py), `make test` (`nginx -t`), the test fixtures and
`ocr-origin doctor`. docker-compose renders the same template with the nginx image's envsubst.
Only `${OCR_...}` placeholders are replaced, so nginx's own `$variables` are left alone.

    python deploy/nginx/render.py --out var/nginx/nginx.conf             # make run defaults
    python deploy/nginx/render.py --out /tmp/x/nginx.conf --listen 127.0.0.1:18080 \
        --upstream 127.0.0.1:18000 --dir /tmp/x

Standard library only: it runs before the virtual environment exists.
"""
from __future__ import annotations

import argparse
import getpass
import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Mapping

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "nginx.conf.template"
SNIPPETS = HERE / "snippets"
SETTINGS_PY = HERE.parents[1] / "origin" / "settings.py"

PLACEHOLDER = re.compile(r"\$\{(OCR_[A-Z0-9_]+)\}")


def load_settings() -> ModuleType:
    """origin/settings.py (the one declaration of every OCR_* option), loaded by path: importing
    the `origin` package would pull Flask, and this runs before the venv exists."""
    name = "ocr_origin_settings"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SETTINGS_PY)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while building classes
        spec.loader.exec_module(module)
    return sys.modules[name]


def load_units() -> ModuleType:
    """origin/units.py (limits in words, standard library only), loaded by path like the settings."""
    name = "ocr_origin_units"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SETTINGS_PY.with_name("units.py"))
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class RenderError(Exception):
    """The template references a placeholder that has no value."""


def placeholders(template: str | None = None) -> set[str]:
    """Return the `${OCR_...}` names the template uses."""
    text = TEMPLATE.read_text() if template is None else template
    return set(PLACEHOLDER.findall(text))


def render(values: Mapping[str, str], template: str | None = None) -> str:
    """Substitute every `${OCR_...}` placeholder; raise RenderError when one has no value."""
    text = TEMPLATE.read_text() if template is None else template
    missing = sorted(placeholders(text) - set(values))
    if missing:
        raise RenderError(f"no value for nginx template placeholder(s): {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def default_user() -> str:
    """Worker user: the current user (root when run as root, see the template header)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "root" if os.geteuid() == 0 else "nobody"


def values_for(
    workdir: Path,
    *,
    listen: str = "8080",
    upstream: str = "127.0.0.1:8000",
    max_upload_bytes: int | str | None = None,
    log_dir: Path | None = None,
    cache_dir: Path | None = None,
    cache_max_size: str | None = None,
    user: str | None = None,
) -> dict[str, str]:
    """Placeholder values for an nginx instance whose files all live under `workdir`; limits left
    None come from the environment through origin/settings.py."""
    workdir = Path(workdir).resolve()
    settings = load_settings()
    if max_upload_bytes is None:
        max_upload_bytes = settings.get("OCR_MAX_UPLOAD_BYTES")
    if cache_max_size is None:
        cache_max_size = settings.get("OCR_NGINX_CACHE_MAX_SIZE")
    return {
        "OCR_NGINX_USER": user or default_user(),
        "OCR_NGINX_LISTEN": str(listen),
        "OCR_UPSTREAM": upstream_servers(upstream),
        "OCR_MAX_UPLOAD_BYTES": str(int(max_upload_bytes)),
        "OCR_MAX_UPLOAD_HUMAN": load_units().human_bytes(int(max_upload_bytes)),
        "OCR_NGINX_RUN_DIR": str(workdir / "run"),
        "OCR_NGINX_CACHE_DIR": str((cache_dir or workdir / "cache").resolve()),
        "OCR_NGINX_CACHE_MAX_SIZE": cache_max_size,
        "OCR_NGINX_LOG_DIR": str((log_dir or workdir / "log").resolve()),
        "OCR_NGINX_SNIPPETS": str(SNIPPETS),
    }


def upstream_servers(upstream: str) -> str:
    """`host:port`, or several separated by commas or spaces (more origins behind one nginx):
    the value of the template's `server ${OCR_UPSTREAM};`, one `server` line per origin."""
    servers = [s for s in re.split(r"[,\s]+", upstream.strip()) if s]
    if not servers:
        raise RenderError("no upstream origin given")
    return ";\n        server ".join(servers)


def write_config(out: Path, values: Mapping[str, str]) -> Path:
    """Render to `out` and create the directories the config points at."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for key in ("OCR_NGINX_RUN_DIR", "OCR_NGINX_CACHE_DIR", "OCR_NGINX_LOG_DIR"):
        Path(values[key]).mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(render(values))
    tmp.replace(out)  # atomic: a running `nginx -s reload` never reads half a file
    return out


def nginx_binary() -> str | None:
    """Path of the nginx binary ($PATH or /usr/sbin, which non-root PATHs often lack)."""
    from shutil import which

    return which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def nginx_test(conf: Path, nginx: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `nginx -t` on a rendered config (prefix = its directory); return the finished process."""
    nginx = nginx or nginx_binary()
    if not nginx:
        raise FileNotFoundError("nginx not found: install it with `apt-get install -y nginx-light`")
    conf = Path(conf).resolve()
    return subprocess.run(
        [nginx, "-t", "-q", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")],
        capture_output=True, text=True, timeout=30,
    )


def main(argv: list[str] | None = None) -> int:
    opt = load_settings().get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("var/nginx/nginx.conf"),
                        help="rendered config path (default var/nginx/nginx.conf)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="nginx work dir for run/ and cache/ (default: the --out directory)")
    parser.add_argument("--log-dir", type=Path, default=Path(opt("OCR_VAR_DIR")) / "log" / "nginx")
    parser.add_argument("--listen", default=str(opt("OCR_HTTP_PORT")))
    parser.add_argument("--upstream", default=f"127.0.0.1:{opt('OCR_ORIGIN_PORT')}")
    parser.add_argument("--max-upload-bytes", type=int, default=opt("OCR_MAX_UPLOAD_BYTES"))
    parser.add_argument("--cache-max-size", default=opt("OCR_NGINX_CACHE_MAX_SIZE"))
    parser.add_argument("--check", action="store_true", help="run `nginx -t` on the result")
    args = parser.parse_args(argv)

    workdir = args.dir or args.out.parent
    values = values_for(workdir, listen=args.listen, upstream=args.upstream,
                        max_upload_bytes=args.max_upload_bytes, log_dir=args.log_dir,
                        cache_max_size=args.cache_max_size)
    try:
        out = write_config(args.out, values)
    except RenderError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    print(out)
    if args.check:
        proc = nginx_test(out)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr, end="")
            return proc.returncode
        print(f"nginx -t: {out} is valid", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
