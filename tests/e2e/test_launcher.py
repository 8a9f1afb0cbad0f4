"""`make run` / `make stop`: deploy/run.py starts redis-server, gunicorn and nginx and stops them.

Each launcher runs with OCR_VAR_DIR in a temp dir and free ports, so it never touches the
checkout's var/ or a `make run` already running. The first test serves the real origin with
the embedded defaults (file storage under var/results, the local redis); the others use the
scripted stub origin (no model to load) to check how everything is stopped.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests

from tests.e2e.test_flow import INVOICE, render_line, upload
from tests.servers import REPO_ROOT, free_port, require_binary

RUN_PY = REPO_ROOT / "deploy" / "run.py"


def alive(pid: int) -> bool:
    """Running, not a zombie (a stopped child of an exited parent may wait to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Launcher:
    """deploy/run.py in its own process group, as `make run` runs it in a terminal."""

    def __init__(self, tmp: Path, *, app: str | None = None) -> None:
        require_binary("nginx", "nginx-light")
        require_binary("redis-server", "redis-server")
        self.var = tmp / "var"
        self.ports = {"OCR_HTTP_PORT": free_port(), "OCR_ORIGIN_PORT": free_port(),
                      "OCR_REDIS_PORT": free_port()}
        # The launcher's defaults must apply: no OCR_* from the environment running the tests.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OCR_", "AWS_")) and k != "PROMETHEUS_MULTIPROC_DIR"}
        env.update({k: str(v) for k, v in self.ports.items()})
        env.update(OCR_VAR_DIR=str(self.var), OCR_WORKERS="1", PYTHONUNBUFFERED="1")
        # The stub origin needs no recognition workers; the real one gets one (2 cores).
        env["OCR_RECOGNITION_WORKERS"] = "0" if app else "1"
        if app:
            env["OCR_WSGI_APP"] = app
        self.env = env
        self.output = tmp / "launcher.out"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['OCR_HTTP_PORT']}"

    def start(self, timeout: float = 180) -> "Launcher":
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(RUN_PY)], cwd=REPO_ROOT, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"launcher exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not serving after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def children(self) -> dict[str, int]:
        lines = (self.var / "run" / "children.pids").read_text().split("\n")
        return {name: int(pid) for name, pid in (line.split() for line in lines if line.strip())}

    def stop_command(self) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(RUN_PY), "stop"], cwd=REPO_ROOT, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def kill(self) -> None:
        """Last resort for a failed test: stop the launcher, then its recorded children."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            pids = self.children()
        except OSError:
            return
        for pid in pids.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


STUB_APP = "tests.e2e.stub_origin:app"


@pytest.fixture
def new_launcher(tmp_path: Path) -> Iterator[Callable[..., Launcher]]:
    """Make a launcher in this test's temp dir; whatever it left running is killed afterwards."""
    made: list[Launcher] = []

    def make(app: str | None = None) -> Launcher:
        made.append(Launcher(tmp_path, app=app))
        return made[-1]

    yield make
    for launcher in made:
        launcher.kill()


def assert_all_stopped(launcher: Launcher, children: dict[str, int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in children.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [name for name, pid in children.items() if alive(pid)], launcher.log()
    assert not [name for name, port in launcher.ports.items() if listening(port)]


def test_make_run_serves_the_flow_with_embedded_defaults_and_make_stop_stops_all(
        new_launcher: Callable[..., Launcher]) -> None:
    launcher = new_launcher()
    launcher.start()
    children = launcher.children()
    # one recognition worker (OCR_RECOGNITION_WORKERS=1 here), ready before the launcher says so
    assert set(children) == {"redis-server", "worker", "gunicorn", "nginx"}
    assert requests.get(launcher.url + "/readyz", timeout=10).json()["checks"]["model"].startswith("ok")

    r = upload(launcher.url, render_line(INVOICE))
    assert r.status_code == 303 and r.headers["X-OCR-Cache"] == "MISS", r.text
    location = r.headers["Location"]
    first = requests.get(launcher.url + location, timeout=10)
    second = requests.get(launcher.url + location, timeout=10)
    assert (first.headers["X-Cache-Status"], second.headers["X-Cache-Status"]) == ("MISS", "HIT")
    assert upload(launcher.url, render_line(INVOICE)).headers["X-OCR-Cache"] == "HIT"

    # Embedded defaults: results as files under var/, the index in the launcher's redis-server
    # (persistent: AOF on), a secret made once with mode 0600, nginx's JSON access log.
    key = location.rsplit("/", 1)[1]
    assert (launcher.var / "results" / key / "result.json").exists()
    assert (launcher.var / "secret").stat().st_mode & 0o777 == 0o600
    # logs (and everything else under var/) are not world-readable: the launcher's umask is 027
    logs = {p.relative_to(launcher.var): p.stat().st_mode & 0o777 for p in (launcher.var / "log").rglob("*")}
    assert any(str(p).endswith("access.log") for p in logs) and all(m & 0o007 == 0 for m in logs.values()), logs
    import redis

    client = redis.Redis(port=launcher.ports["OCR_REDIS_PORT"])
    try:
        assert client.dbsize() > 0
        assert client.config_get("appendonly")["appendonly"] == "yes"
    finally:
        client.close()
    ready = requests.get(launcher.url + "/readyz", timeout=10).json()
    assert ready["checks"]["redis"] == "ok" and ready["checks"]["storage"] == "ok"
    time.sleep(0.2)
    logged = [json.loads(line) for line in (launcher.var / "log/nginx/access.log").read_text().splitlines()]
    assert [e["cache"] for e in logged if e["uri"] == location] == ["MISS", "HIT"]
    origin_log = (launcher.var / "log/origin/origin.log").read_text()
    assert f"key={key}" in origin_log and "request_id=" in origin_log
    assert f"job done key={key}" in (launcher.var / "log/origin/worker.log").read_text()  # recognised there

    # `make stop` from another shell.
    stop = launcher.stop_command()
    assert launcher.proc is not None
    assert launcher.proc.wait(timeout=60) == 0, launcher.log()
    out, _ = stop.communicate(timeout=60)
    assert stop.returncode == 0 and "stopped" in out, out
    assert_all_stopped(launcher, children)
    assert not (launcher.var / "run" / "launcher.pid").exists()
    assert (launcher.var / "results" / key / "result.json").exists()  # data stays


def test_ctrl_c_stops_everything(new_launcher: Callable[..., Launcher]) -> None:
    launcher = new_launcher(app=STUB_APP)
    launcher.start()
    children = launcher.children()
    assert launcher.proc is not None
    os.killpg(launcher.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends to `make run`
    assert launcher.proc.wait(timeout=60) == 0, launcher.log()
    assert_all_stopped(launcher, children)


def test_make_stop_after_the_launcher_was_killed(new_launcher: Callable[..., Launcher]) -> None:
    launcher = new_launcher(app=STUB_APP)
    launcher.start()
    children = launcher.children()
    assert launcher.proc is not None
    launcher.proc.kill()  # no chance to clean up: its children run on in their own sessions
    launcher.proc.wait()
    assert all(alive(pid) for pid in children.values())
    stop = launcher.stop_command()
    out, _ = stop.communicate(timeout=60)
    assert stop.returncode == 0, out
    assert_all_stopped(launcher, children)


def test_ports_in_use_are_refused_with_a_clear_message(new_launcher: Callable[..., Launcher]) -> None:
    launcher = new_launcher(app=STUB_APP)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", launcher.ports["OCR_HTTP_PORT"]))
        busy.listen()
        proc = subprocess.run([sys.executable, str(RUN_PY)], cwd=REPO_ROOT, env=launcher.env,
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "already in use" in proc.stderr and "OCR_HTTP_PORT" in proc.stderr
    assert not (launcher.var / "run" / "children.pids").exists()  # nothing was started


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def gunicorn_workers(master: int) -> list[int]:
    """Live processes in the master's process group other than the master (its workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        if pid != master and int(fields[2]) == master and fields[0] != "Z":  # fields[2]: pgrp
            found.append(pid)
    return found


def test_one_dead_child_is_restarted_and_nothing_else_stops(new_launcher: Callable[..., Launcher]) -> None:
    """Issue 16 item 1: killing redis-server or the gunicorn master stopped nginx too, so even
    cached results were gone; gunicorn's orphaned workers served on for ~100 s."""
    launcher = new_launcher(app=STUB_APP)
    launcher.start()
    assert launcher.proc is not None
    path = "/results/launcher-cached"
    assert requests.get(launcher.url + path, timeout=10).status_code == 200  # now in nginx's cache
    children = launcher.children()

    os.kill(children["redis-server"], signal.SIGKILL)
    time.sleep(1.5)
    assert launcher.proc.poll() is None, launcher.log()
    assert alive(children["nginx"]) and alive(children["gunicorn"])
    assert requests.get(launcher.url + "/healthz", timeout=10).status_code == 200
    assert wait_until(lambda: launcher.children()["redis-server"] != children["redis-server"]
                      and listening(launcher.ports["OCR_REDIS_PORT"]), 30), launcher.log()

    workers = gunicorn_workers(children["gunicorn"])
    assert workers
    os.kill(children["gunicorn"], signal.SIGKILL)
    # its workers follow it at once (no orphan keeps the port and serves unseen by `make stop`)
    assert wait_until(lambda: not any(alive(w) for w in workers), 10), workers
    cached = requests.get(launcher.url + path, timeout=10)
    assert cached.status_code == 200 and cached.headers["X-Cache-Status"] in ("HIT", "STALE")
    assert launcher.proc.poll() is None and alive(children["nginx"])
    assert wait_until(lambda: launcher.children()["gunicorn"] != children["gunicorn"], 30), launcher.log()
    assert wait_until(lambda: requests.get(launcher.url + "/healthz", timeout=10).status_code == 200, 60)

    after = launcher.children()
    stop = launcher.stop_command()
    out, _ = stop.communicate(timeout=60)
    assert stop.returncode == 0, out
    assert_all_stopped(launcher, after)
