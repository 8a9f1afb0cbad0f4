#!/usr/bin/env python3
"""Start redis-server, the recognition workers, the gunicorn origin and nginx for `make run`;
stop them all together.

    python deploy/run.py          # foreground; Ctrl-C (or `make stop`) stops everything
    python deploy/run.py stop     # from another shell: ask the running launcher to stop

Children run in their own sessions so that Ctrl-C reaches only this launcher, which then stops
them in order (nginx first so no new requests arrive, then gunicorn, then the recognition
workers, which finish their current job, then redis, which saves). OCR_RECOGNITION_WORKERS sets
how many `ocr-origin worker` processes run (default one per core; 0 for none).
A child that dies is restarted (with growing pauses while it keeps dying) and the others keep
running: a dead Redis only turns dedup off, and a dead origin leaves nginx serving cached
results; stopping everything would turn one failure into a total outage. Standard library
only; run it with the project's venv python (gunicorn is imported from there).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

logger = logging.getLogger("ocr-origin.run")

ROOT = Path(__file__).resolve().parents[1]


def load_render():
    spec = importlib.util.spec_from_file_location("ocr_nginx_render", ROOT / "deploy/nginx/render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RENDER = load_render()
SETTINGS = RENDER.load_settings()  # origin/settings.py: every OCR_* option and its default
VAR = (ROOT / SETTINGS.get("OCR_VAR_DIR")).resolve()
RUN_DIR = VAR / "run"
LAUNCHER_PID = RUN_DIR / "launcher.pid"
CHILD_PIDS = RUN_DIR / "children.pids"  # "name pid" lines, for `stop` when the launcher is gone
# gunicorn's own messages and the origin's structured log lines (`request_id=...`).
ORIGIN_LOG = VAR / "log/origin/origin.log"
WORKER_LOG = VAR / "log/origin/worker.log"  # the recognition workers (model load, jobs)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def which(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}")
                                       if Path(p).exists()), None)
    if not path:
        sys.exit(f"run: {name} not found; `make run` installs it (apt-get install -y {name})")
    return path


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def prepare_var() -> None:
    """Create the var/ layout and the HMAC secret (once: keys depend on it)."""
    for sub in ("results", "redis", "log/nginx", "log/origin", "run", "nginx"):
        (VAR / sub).mkdir(parents=True, exist_ok=True)
    (VAR / "log/nginx/access.log").touch()
    secret = VAR / "secret"
    if not secret.exists():
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        logger.info("generated %s (keep it: result keys are derived from it)", secret)
    # prometheus_client multiprocess files describe the previous run's workers: start clean.
    prom = VAR / "prometheus"
    shutil.rmtree(prom, ignore_errors=True)
    prom.mkdir()


NO_PORT = 0  # a child that listens on no port (recognition workers): nothing to wait for
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before restart n; a child that stays up
STABLE_AFTER = 60.0                            # this long is forgiven its earlier deaths


class Child:
    """One supervised process: how to start it again, and its restart history."""

    def __init__(self, name: str, cmd: list[str], stop_signal: signal.Signals, env: dict[str, str] | None,
                 log: Path | None, port: int) -> None:
        self.name, self.cmd, self.stop_signal, self.env, self.log, self.port = name, cmd, stop_signal, env, log, port
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.deaths = 0             # consecutive deaths without STABLE_AFTER seconds up
        self.restart_at: float | None = None

    def start(self) -> subprocess.Popen[bytes]:
        if self.log is None:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, start_new_session=True)
        else:
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, start_new_session=True,
                                             stdout=out, stderr=subprocess.STDOUT)
        self.started = time.monotonic()
        return self.proc

    def kill_group(self) -> None:
        """Kill what is left of the child's session (its own session: nothing else is in it),
        e.g. gunicorn workers whose master was killed and that still hold the port."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Launcher:
    def __init__(self) -> None:
        self.redis_port: int = SETTINGS.get("OCR_REDIS_PORT")
        self.origin_port: int = SETTINGS.get("OCR_ORIGIN_PORT")
        self.http_port: int = SETTINGS.get("OCR_HTTP_PORT")
        self.workers: int = SETTINGS.get("OCR_WORKERS")
        # Recognition runs in these (one model and one torch thread each): one per core.
        self.recognition_workers: int = SETTINGS.get("OCR_RECOGNITION_WORKERS")
        self.children: list[Child] = []
        self.stopping = False

    def spawn(self, name: str, cmd: list[str], stop_signal: signal.Signals, port: int,
              env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[bytes]:
        """Start a child in its own session (Ctrl-C reaches only the launcher); `log` gets its
        stdout and stderr (appended), else they stay on the terminal."""
        logger.info("starting %s: %s", name, " ".join(cmd))
        child = Child(name, cmd, stop_signal, env, log, port)
        proc = child.start()
        self.children.append(child)
        self._write_pids()
        return proc

    def _write_pids(self) -> None:
        """"name pid" lines for `make stop` when the launcher itself is gone."""
        tmp = CHILD_PIDS.with_suffix(".tmp")
        tmp.write_text("".join(f"{c.name} {c.proc.pid}\n" for c in self.children if c.proc is not None))
        tmp.replace(CHILD_PIDS)

    def check_ports(self) -> None:
        taken = [(n, p) for n, p in (("OCR_REDIS_PORT", self.redis_port), ("OCR_ORIGIN_PORT", self.origin_port),
                                     ("OCR_HTTP_PORT", self.http_port)) if port_in_use(p)]
        if taken:
            desc = ", ".join(f"{p} ({n})" for n, p in taken)
            sys.exit(f"run: port(s) already in use: {desc}. Is another `make run` (or a system "
                     f"redis/nginx) running? Stop it with `make stop`, or choose other ports, e.g. "
                     f"`make run OCR_HTTP_PORT=8081`.")

    def origin_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Absolute, so the settings' defaults (redis on OCR_REDIS_PORT, storage and secret under
        # OCR_VAR_DIR) mean the same in gunicorn as here.
        env["OCR_VAR_DIR"] = str(VAR)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(VAR / "prometheus")
        return env

    def wait_ready(self, url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode} while starting")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{url} not ready after {timeout:.0f}s")

    def start(self) -> None:
        self.check_ports()
        prepare_var()
        CHILD_PIDS.write_text("")
        LAUNCHER_PID.write_text(f"{os.getpid()}\n")

        redis = self.spawn("redis-server", [
            which("redis-server"), "--bind", "127.0.0.1", "--port", str(self.redis_port),
            "--dir", str(VAR / "redis"), "--daemonize", "no",
            # Persistence on: AOF (fsync every second) plus periodic RDB snapshots. The index can
            # be rebuilt from storage (`ocr-origin reindex`), but a restart should not need that.
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "3600 1 300 100 60 10000",
            "--logfile", str(VAR / "log/redis.log"),
        ], signal.SIGTERM, self.redis_port)
        self._wait_port(self.redis_port, redis, "redis-server", 15)

        for n in range(self.recognition_workers):
            # `worker` in the command line lets `stop` recognise the pid as ours.
            self.spawn("worker", [sys.executable, "-m", "origin.cli", "worker",
                                  "--name", f"{socket.gethostname()}-{os.getpid()}-worker-{n + 1}"],
                       signal.SIGTERM, NO_PORT, env=self.origin_env(), log=WORKER_LOG)

        gunicorn = self.spawn("gunicorn", [
            sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy/gunicorn.conf.py"),
            SETTINGS.get("OCR_WSGI_APP"),  # override only to debug the launcher
            "--bind", f"127.0.0.1:{self.origin_port}", "--workers", str(self.workers),
            "--access-logfile", str(VAR / "log/origin/access.log"),
            "--pid", str(RUN_DIR / "gunicorn.pid"),
        ], signal.SIGTERM, self.origin_port, env=self.origin_env(), log=ORIGIN_LOG)
        try:
            self.wait_ready(f"http://127.0.0.1:{self.origin_port}/healthz", gunicorn, 300)
        except RuntimeError as exc:
            raise RuntimeError(f"origin (gunicorn origin.wsgi:app): {exc}; last lines of "
                               f"{ORIGIN_LOG}:\n{tail(ORIGIN_LOG)}") from None
        if self.recognition_workers:
            self.wait_workers(300)

        render = RENDER
        nginx_dir = VAR / "nginx"
        # body limit and cache size come from the same settings as the origin's (render.py)
        values = render.values_for(nginx_dir, listen=str(self.http_port),
                                   upstream=f"127.0.0.1:{self.origin_port}", log_dir=VAR / "log/nginx")
        conf = render.write_config(nginx_dir / "nginx.conf", values)
        check = render.nginx_test(conf)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed on {conf}:\n{check.stderr}")
        nginx = self.spawn("nginx", [which("nginx"), "-p", str(nginx_dir), "-c", str(conf),
                                     "-e", str(VAR / "log/nginx/error.log")], signal.SIGQUIT, self.http_port)
        self._wait_port(self.http_port, nginx, "nginx", 15)
        logger.info("serving on http://localhost:%d (origin 127.0.0.1:%d, redis 127.0.0.1:%d); "
                    "Ctrl-C or `make stop` stops all", self.http_port, self.origin_port, self.redis_port)
        logger.info("logs: %s (origin), %s (nginx, JSON lines), %s", ORIGIN_LOG,
                    VAR / "log/nginx/access.log", VAR / "log/redis.log")

    def wait_workers(self, timeout: float) -> None:
        """Until a worker has loaded the model and announced it (the origin's /readyz says so):
        uploads before that would get 503."""
        url = f"http://127.0.0.1:{self.origin_port}/readyz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in self.children:
                if child.name == "worker" and child.proc is not None and child.proc.poll() is not None:
                    raise RuntimeError(f"a recognition worker exited with {child.proc.returncode} while "
                                       f"starting; last lines of {WORKER_LOG}:\n{tail(WORKER_LOG)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if str(json.load(resp).get("checks", {}).get("model", "")).startswith("ok"):
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"no recognition worker ready after {timeout:.0f}s; see {WORKER_LOG}")

    def _wait_port(self, port: int, proc: subprocess.Popen[bytes], name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} while starting (see var/log/)")
            if port_in_use(port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name} not listening on {port} after {timeout:.0f}s")

    def supervise(self) -> int:
        """Restart dead children until asked to stop; the others keep serving meanwhile."""
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                proc = child.proc
                if child.restart_at is None and proc is not None and proc.poll() is not None:
                    child.kill_group()  # e.g. orphaned gunicorn workers still on the port
                    if now - child.started >= STABLE_AFTER:
                        child.deaths = 0
                    delay = RESTART_DELAYS[min(child.deaths, len(RESTART_DELAYS) - 1)]
                    child.deaths += 1
                    child.restart_at = now + delay
                    logger.error("%s exited with %s; restarting it in %.0f s (the others keep running)",
                                 child.name, proc.returncode, delay)
                elif child.restart_at is not None and now >= child.restart_at:
                    if child.port != NO_PORT and port_in_use(child.port):
                        child.restart_at = now + 1.0  # something still holds the port: wait
                        continue
                    child.restart_at = None
                    logger.info("restarting %s (restart %d)", child.name, child.deaths)
                    child.start()
                    self._write_pids()
            time.sleep(0.2)
        return 0

    def stop_all(self) -> None:
        # Reverse start order: nginx (no new requests), gunicorn (drain), redis (saves on SIGTERM).
        for child in reversed(self.children):
            proc = child.proc
            if proc is not None and proc.poll() is None:
                logger.info("stopping %s (pid %d)", child.name, proc.pid)
                proc.send_signal(child.stop_signal)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    logger.warning("%s did not stop in 30 s; killing it", child.name)
                    proc.kill()
                    proc.wait()
            child.kill_group()  # nothing of it may outlive the launcher
        self.children.clear()
        for path in (LAUNCHER_PID, CHILD_PIDS):
            path.unlink(missing_ok=True)


def run() -> int:
    # Logs, the Redis files and results written by the children: owner and group only
    # (results hold a signature of every upload; logs hold client addresses).
    os.umask(0o027)
    launcher = Launcher()

    def on_signal(signum: int, _frame: object) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        launcher.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        launcher.start()
        return launcher.supervise()
    except RuntimeError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        launcher.stop_all()


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop() -> int:
    """Ask a running launcher to stop; if it is gone, stop the children it recorded."""
    if LAUNCHER_PID.exists():
        pid = int(LAUNCHER_PID.read_text().split()[0])
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                if not pid_alive(pid):
                    print("stopped")
                    return 0
                time.sleep(0.2)
            print(f"launcher {pid} still running after 60 s", file=sys.stderr)
            return 1
    if CHILD_PIDS.exists():  # launcher was killed hard: stop only the pids it started
        signals = {"nginx": signal.SIGQUIT}
        signalled: list[tuple[str, int]] = []
        # Same order as the launcher: nginx, gunicorn, then redis (which saves on SIGTERM).
        for line in reversed(CHILD_PIDS.read_text().splitlines()):
            name, pid_s = line.split()
            pid = int(pid_s)
            # The pid must still be the process we started (pids are reused after a crash).
            if pid_alive(pid) and name in cmdline(pid):
                os.kill(pid, signals.get(name, signal.SIGTERM))
                print(f"sent stop signal to {name} (pid {pid})")
                signalled.append((name, pid))
        deadline = time.monotonic() + 30
        while any(pid_alive(pid) for _, pid in signalled) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [f"{name} (pid {pid})" for name, pid in signalled if pid_alive(pid)]
        if left:
            print(f"still running after 30 s: {', '.join(left)}", file=sys.stderr)
            return 1
        CHILD_PIDS.unlink()
        LAUNCHER_PID.unlink(missing_ok=True)
        return 0
    print("nothing running")
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s run: %(message)s", datefmt="%H:%M:%S")
    if argv[1:2] == ["stop"]:
        return stop()
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    return run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
