"""docker-compose.yml, .env.example and the Dockerfile, checked statically (no Docker engine here)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import load_nginx_render

ROOT = Path(__file__).resolve().parents[3]
LONG_RUNNING = {"nginx", "origin", "worker", "redis", "s3"}
# OCR_* variables that deployment code reads rather than origin/settings.py.
DEPLOY_VARS_READ_BY = [ROOT / "deploy/gunicorn.conf.py", ROOT / "origin/cli.py"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_services_and_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert LONG_RUNNING <= set(services)
    for name in LONG_RUNNING:
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
    # The S3 server is a maintained one, not MinIO (archived).
    assert not any("minio" in svc.get("image", "").lower() for svc in services.values())
    assert "seaweedfs" in services["s3"]["image"]


def test_depends_on_waits_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must use the long form with conditions"
        for dep, spec in deps.items():
            assert dep in services
            assert spec["condition"] in ("service_healthy", "service_completed_successfully"), (name, dep)
    origin = services["origin"]["depends_on"]
    assert origin["redis"]["condition"] == origin["s3"]["condition"] == "service_healthy"
    assert origin["s3-init"]["condition"] == "service_completed_successfully"
    assert services["nginx"]["depends_on"]["origin"]["condition"] == "service_healthy"


def test_mounted_files_exist_and_nginx_uses_the_same_template(compose: dict[str, Any]) -> None:
    mounts = []
    for svc in compose["services"].values():
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"mounted path {src} does not exist"
                mounts.append(vol)
    assert "./deploy/nginx/nginx.conf.template:/etc/nginx/templates/nginx.conf.template:ro" in mounts
    nginx_env = env_of(compose["services"]["nginx"])
    snippets_mount = [m for m in mounts if m.startswith("./deploy/nginx/snippets:")]
    assert snippets_mount and snippets_mount[0].split(":")[1] == nginx_env["OCR_NGINX_SNIPPETS"]
    # Every placeholder of the template gets a value from the nginx service environment.
    missing = load_nginx_render().placeholders() - set(nginx_env)
    assert not missing, f"nginx service lacks {missing}"
    assert nginx_env["OCR_UPSTREAM"].split(":")[0] == "origin"
    # The body limit is one variable for both sides.
    assert nginx_env["OCR_MAX_UPLOAD_BYTES"] == env_of(compose["services"]["origin"])["OCR_MAX_UPLOAD_BYTES"]


def test_origin_env_names_match_settings(compose: dict[str, Any]) -> None:
    origin_env = env_of(compose["services"]["origin"])
    settings_src = (ROOT / "origin/settings.py").read_text()
    known = set(re.findall(r"OCR_[A-Z0-9_]+", settings_src))
    for path in DEPLOY_VARS_READ_BY:
        known |= set(re.findall(r"OCR_[A-Z0-9_]+", path.read_text()))
    used = {k for k in origin_env if k.startswith("OCR_")}
    assert used <= known, f"compose sets variables nobody reads: {used - known}"
    for required in ("OCR_SECRET", "OCR_REDIS_URL", "OCR_STORAGE_URL", "OCR_S3_ENDPOINT_URL"):
        assert required in origin_env and required in settings_src
    assert origin_env["OCR_STORAGE_URL"].startswith("s3://")
    assert origin_env["OCR_S3_ENDPOINT_URL"].startswith("http://s3:")


def test_env_example_documents_every_variable_line_by_line(compose: dict[str, Any]) -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    documented: set[str] = set()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            name = line.split("=", 1)[0]
            assert i > 0 and lines[i - 1].startswith("#"), f"{name} has no comment line above it"
            documented.add(name)
    referenced = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert referenced == documented, (referenced ^ documented)


def test_dockerfile_installs_cpu_torch_first() -> None:
    text = (ROOT / "Dockerfile").read_text()
    torch_line = next(i for i, l in enumerate(text.splitlines()) if "torch==" in l and "RUN" in l)
    project_line = next(i for i, l in enumerate(text.splitlines()) if "pip install" in l and "-e ." in l)
    assert torch_line < project_line
    assert "download.pytorch.org/whl/cpu" in text
    assert "deploy/constraints.txt" in text


def test_image_runs_as_a_non_root_user() -> None:
    """Issue 16 item 8: the origin and worker containers do not run as root."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")):]
    users = [line.split()[1] for line in stage if line.startswith("USER ")]
    assert users, "the final stage sets no USER: the container runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any("useradd" in line and users[-1] in line for line in stage)  # the user exists in the image


def test_redis_persists_to_a_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert any(v.endswith(":/data") and not v.startswith("./") for v in redis["volumes"])
    assert "redis-data" in compose["volumes"]


def test_origin_runs_several_gunicorn_workers(compose: dict[str, Any]) -> None:
    origin = compose["services"]["origin"]
    assert origin["command"][:2] == ["ocr-origin", "serve"]  # gunicorn with deploy/gunicorn.conf.py
    workers = env_of(origin)["OCR_WORKERS"]
    m = re.fullmatch(r"\$\{OCR_WORKERS:-(\d+)\}", workers)
    assert m and int(m.group(1)) >= 2, workers
    assert "OCR_WORKERS" in (ROOT / "deploy/gunicorn.conf.py").read_text()
    # prometheus_client needs a multiprocess dir to add up the workers' metrics.
    assert env_of(origin)["PROMETHEUS_MULTIPROC_DIR"]


def test_bucket_is_created_at_start_and_is_the_one_the_origin_uses(compose: dict[str, Any]) -> None:
    services = compose["services"]
    init = services["s3-init"]
    assert "s3.bucket.create" in " ".join(init["command"])
    assert env_of(init)["OCR_S3_BUCKET"] == "${OCR_S3_BUCKET:-ocr-results}"
    assert env_of(services["origin"])["OCR_STORAGE_URL"].startswith("s3://${OCR_S3_BUCKET:-ocr-results}/")
    assert init["depends_on"]["s3"]["condition"] == "service_healthy"
    assert init.get("restart") == "no"  # a one-shot job


def test_healthchecks_probe_real_endpoints(compose: dict[str, Any]) -> None:
    services = compose["services"]
    template = load_nginx_render().TEMPLATE.read_text()
    assert "/nginx-health" in " ".join(services["nginx"]["healthcheck"]["test"])
    assert "location = /nginx-health" in template
    assert "/readyz" in " ".join(services["origin"]["healthcheck"]["test"])
    assert '@bp.get("/readyz")' in (ROOT / "origin/views.py").read_text()


def test_only_nginx_is_published(compose: dict[str, Any]) -> None:
    published = {name for name, svc in compose["services"].items() if svc.get("ports")}
    assert published == {"nginx"}
    assert compose["services"]["nginx"]["ports"] == ["${OCR_HTTP_PORT:-8080}:8080"]


def test_envsubst_touches_only_our_placeholders(compose: dict[str, Any]) -> None:
    """The nginx image substitutes every environment variable it knows, in `$NAME` form too:
    the filter keeps it to OCR_*, and none of nginx's own variables may be spelt like one."""
    nginx_env = env_of(compose["services"]["nginx"])
    assert nginx_env["NGINX_ENVSUBST_FILTER"] == "^OCR_"
    template = load_nginx_render().TEMPLATE.read_text()
    bare = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", template))
    assert not {name for name in bare if name.startswith("OCR_")}, "use ${OCR_...}, not $OCR_..."


def test_origin_can_read_the_nginx_access_log_for_cachestats(compose: dict[str, Any]) -> None:
    log_dir = env_of(compose["services"]["nginx"])["OCR_NGINX_LOG_DIR"]
    assert f"nginx-logs:{log_dir}" in compose["services"]["nginx"]["volumes"]
    assert f"nginx-logs:{log_dir}:ro" in compose["services"]["origin"]["volumes"]


def test_worker_service_shares_the_origins_keys_storage_and_queue(compose: dict[str, Any]) -> None:
    services = compose["services"]
    worker, origin = services["worker"], services["origin"]
    assert worker["command"] == ["ocr-origin", "worker"]
    assert worker["image"] == origin["image"]  # built once by the origin service
    w, o = env_of(worker), env_of(origin)
    for name in ("OCR_SECRET", "OCR_REDIS_URL", "OCR_STORAGE_URL", "OCR_S3_ENDPOINT_URL",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "OCR_MAX_PIXELS"):
        assert w[name] == o[name], name  # same keys, same results, same queue
    known = set(re.findall(r"OCR_[A-Z0-9_]+", (ROOT / "origin/settings.py").read_text()))
    assert {k for k in w if k.startswith("OCR_")} <= known | {"OCR_TORCH_THREADS"}
    assert not worker.get("ports") and "deploy" not in worker  # scaled with --scale worker=N
    # its healthcheck looks for the name `ocr-origin worker` registers by default
    assert "socket.gethostname() + '.1'" in worker["healthcheck"]["test"][-1]
    assert 'f"{socket.gethostname()}.{os.getpid()}"' in (ROOT / "origin/cli.py").read_text()
