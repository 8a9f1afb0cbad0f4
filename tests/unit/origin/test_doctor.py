"""`ocr-origin doctor` against real parts: a redis-server, a storage dir, nginx -t."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from origin import cli, doctor
from tests.servers import RedisServer, free_port


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("doctor-redis")).start()
    yield server
    server.stop()


@pytest.fixture()
def healthy_env(tmp_path: Path, redis_server: RedisServer) -> dict[str, str]:
    weights = tmp_path / "crnn.pt"
    weights.write_bytes(b"\0" * 1024)  # presence only: these tests run with load_model=False
    secret = tmp_path / "secret"
    secret.write_text("s" * 64)
    secret.chmod(0o600)
    return {
        "OCR_REDIS_URL": redis_server.url,
        "OCR_STORAGE_URL": f"file://{tmp_path / 'results'}",
        "OCR_SECRET_FILE": str(secret),
        "OCR_MODEL_PATH": str(weights),
    }


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_healthy_install_passes(healthy_env: dict[str, str]) -> None:
    checks = by_name(doctor.run_checks(healthy_env, load_model=False))
    assert {n: c.status for n, c in checks.items()} == {
        "settings": "ok", "secret": "ok", "redis": "ok", "storage": "ok", "model": "ok", "nginx": "ok"}


def test_each_problem_is_named_in_plain_words(healthy_env: dict[str, str], tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    env = {**healthy_env, "OCR_REDIS_URL": dead, "OCR_STORAGE_URL": f"file://{blocker}/results",
           "OCR_MODEL_PATH": str(tmp_path / "missing.pt"), "OCR_MAX_UPLOAD_BYTES": "lots"}
    checks = by_name(doctor.run_checks(env, load_model=False))
    assert checks["redis"].status == "FAIL" and dead in checks["redis"].detail
    assert "cannot reach Redis" in checks["redis"].detail
    assert checks["storage"].status == "FAIL" and "cannot be written" in checks["storage"].detail
    assert checks["model"].status == "FAIL" and "missing.pt" in checks["model"].detail
    assert checks["nginx"].status == "FAIL" and "OCR_MAX_UPLOAD_BYTES" in checks["nginx"].detail
    assert checks["settings"].status == "FAIL"


def test_missing_secret_and_disabled_redis(healthy_env: dict[str, str], tmp_path: Path) -> None:
    env = {**healthy_env, "OCR_SECRET_FILE": str(tmp_path / "nope"), "OCR_REDIS_URL": ""}
    checks = by_name(doctor.run_checks(env, load_model=False))
    assert checks["secret"].status == "FAIL" and "nope" in checks["secret"].detail
    assert checks["redis"].status == "warn"  # allowed: no dedup, still serves


def test_rendered_conf_with_another_body_limit_fails(healthy_env: dict[str, str], tmp_path: Path) -> None:
    from tests.servers import load_nginx_render

    render = load_nginx_render()
    conf = render.write_config(tmp_path / "ng" / "nginx.conf",
                               render.values_for(tmp_path / "ng", listen="127.0.0.1:1", max_upload_bytes=1024))
    check = doctor.check_nginx(healthy_env, conf)
    assert check.status == "FAIL" and "client_max_body_size" in check.detail


def test_cli_exit_code_and_json(healthy_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    for k, v in healthy_env.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["doctor", "--json", "--no-model-load"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    monkeypatch.setenv("OCR_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert cli.main(["doctor", "--no-model-load"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  redis" in out and "1 problem(s): redis" in out


def test_model_is_loaded_and_a_corrupt_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ocr_core.predictor as predictor_module
    from ocr_core.predictor import DEFAULT_INT8_WEIGHTS, DEFAULT_WEIGHTS

    # it names the file the precision picked: the int8 weights on a CPU with VNNI
    monkeypatch.setattr(predictor_module, "cpu_has_vnni", lambda: True)
    shipped = doctor.check_model({}, load=True)
    assert shipped.status == "ok" and f"(int8) loaded from {DEFAULT_INT8_WEIGHTS} (" in shipped.detail, shipped.detail
    fp32 = doctor.check_model({"OCR_RECOGNIZER_PRECISION": "fp32"}, load=True)
    assert f"(fp32) loaded from {DEFAULT_WEIGHTS} (" in fp32.detail, fp32.detail
    corrupt = tmp_path / "crnn.pt"
    corrupt.write_bytes(b"this is not a torch checkpoint")
    check = doctor.check_model({"OCR_MODEL_PATH": str(corrupt)}, load=True)
    assert check.status == "FAIL" and "do not load" in check.detail and str(corrupt) in check.detail


def test_skip_leaves_a_check_out(healthy_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Inside the origin container nginx runs elsewhere: `--skip nginx` keeps the exit status
    about what this container can fix."""
    for k, v in healthy_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(doctor, "check_nginx", lambda env, conf=None: doctor.Check("nginx", "FAIL", "x"))
    assert cli.main(["doctor", "--json", "--no-model-load"]) == 1
    capsys.readouterr()
    assert cli.main(["doctor", "--json", "--no-model-load", "--skip", "nginx"]) == 0
    names = [c["name"] for c in json.loads(capsys.readouterr().out)["checks"]]
    assert names == ["settings", "secret", "redis", "storage", "model"]


def test_redis_check_follows_ocr_redis_port(healthy_env: dict[str, str], redis_server: RedisServer) -> None:
    """Issue 16 item 11: doctor (like reindex) checked 127.0.0.1:6379 whatever OCR_REDIS_PORT said."""
    env = {k: v for k, v in healthy_env.items() if k != "OCR_REDIS_URL"}
    checks = by_name(doctor.run_checks({**env, "OCR_REDIS_PORT": str(redis_server.port)}, load_model=False))
    assert checks["redis"].status == "ok" and f":{redis_server.port}/" in checks["redis"].detail
    elsewhere = free_port()
    checks = by_name(doctor.run_checks({**env, "OCR_REDIS_PORT": str(elsewhere)}, load_model=False))
    assert checks["redis"].status == "FAIL" and f":{elsewhere}/" in checks["redis"].detail
