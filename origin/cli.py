"""The `ocr-origin` console script: serve | worker | cachestats | doctor | reindex.

    ocr-origin serve [--bind 127.0.0.1:8000] [--workers N] [-- GUNICORN_ARGS...]
    ocr-origin worker [--burst] [--name NAME]     (one recognition worker process)
    ocr-origin cachestats [--json] [--since 24h] [--bucket 1h] [--plot out.png] ACCESS_LOG...
    ocr-origin doctor [--json] [--no-model-load] [--nginx-conf PATH] [--skip CHECK]
    ocr-origin reindex [--clear] ...          (same as `python -m cache reindex`)

Subcommands import their modules lazily: `cachestats` must not pay for torch or Flask.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

from . import settings

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
GUNICORN_CONF = REPO_ROOT / "deploy" / "gunicorn.conf.py"


def serve_command(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """The gunicorn command line `serve` execs (separate for tests)."""
    cmd = [sys.executable, "-m", "gunicorn"]
    if GUNICORN_CONF.exists():  # hooks (prometheus multiprocess) and log format
        cmd += ["-c", str(GUNICORN_CONF)]
    cmd += [args.app, "--bind", args.bind, "--workers", str(args.workers)]
    return cmd + extra


def serve(args: argparse.Namespace, extra: list[str]) -> int:
    """Replace this process with gunicorn serving origin.wsgi:app."""
    # prometheus_client aggregates worker metrics through files in this dir; a fresh master must
    # not inherit the files of a previous run (counters would never reset, dead pids linger).
    prom = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(Path("var/prometheus").resolve())))
    if prom.exists() and not args.keep_metrics:
        shutil.rmtree(prom)
    prom.mkdir(parents=True, exist_ok=True)
    cmd = serve_command(args, extra)
    logger.info("exec %s", " ".join(cmd))
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocr-origin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the origin under gunicorn (arguments after -- go to gunicorn)")
    p.add_argument("--bind", default=settings.get("OCR_BIND"))
    p.add_argument("--workers", type=int, default=settings.get("OCR_WORKERS"),
                   help="worker processes (default: OCR_WORKERS, else one per core, at least 2)")
    p.add_argument("--app", default="origin.wsgi:app", help=argparse.SUPPRESS)
    p.add_argument("--keep-metrics", action="store_true", help="do not clear PROMETHEUS_MULTIPROC_DIR")

    p = sub.add_parser("worker", help="run one recognition worker (loads the model, takes jobs from the queue)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--name", help="worker name, unique per queue (default: HOSTNAME.PID)")

    from . import cachestats  # light: stdlib only at import time (matplotlib only for --plot)

    cachestats.build_parser(sub.add_parser("cachestats", help="hit ratio and latency from nginx's access log"))

    from .doctor import CHECKS as doctor_checks  # light too: heavy imports happen inside checks

    p = sub.add_parser("doctor", help="check Redis, storage, model, secret and nginx config")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument("--no-model-load", action="store_true", help="check the weights file exists, do not load it")
    p.add_argument("--nginx-conf", type=Path, help="an already rendered nginx.conf to check instead")
    p.add_argument("--skip", action="append", metavar="CHECK", choices=doctor_checks,
                   help="leave a check out (repeatable), e.g. nginx inside the origin container")

    sub.add_parser("reindex", help="rebuild the Redis index from storage (python -m cache reindex)",
                   add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=settings.get("OCR_LOG_LEVEL").upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Pass-through commands keep their own argument parsing.
    if argv[:1] == ["reindex"]:
        from cache.__main__ import main as cache_main  # lazy: pulls redis/boto3

        # The defaults are the origin's own settings (redis on OCR_REDIS_PORT, same storage),
        # never a hard-coded port that may belong to another deployment.
        return cache_main(["reindex", *argv[1:]], defaults={
            "redis_url": settings.get("OCR_REDIS_URL"), "storage_url": settings.get("OCR_STORAGE_URL"),
            "s3_endpoint_url": settings.get("OCR_S3_ENDPOINT_URL"),
            "hamming_distance": settings.get("OCR_HAMMING_DISTANCE")})
    extra: list[str] = []
    if argv[:1] == ["serve"] and "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]

    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args, extra)
    if args.command == "worker":
        from .logs import configure_logging
        from .settings import Settings
        from .worker import run_worker

        conf = Settings.from_env()
        configure_logging(conf.log_level)
        import socket

        return run_worker(conf, burst=args.burst, name=args.name or f"{socket.gethostname()}.{os.getpid()}")
    if args.command == "cachestats":
        from . import cachestats

        return cachestats.run(args)
    if args.command == "doctor":
        from . import doctor

        return doctor.run(args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
