"""deploy/k8s/: Kubernetes manifests validated against the API schemas (kubernetes-validate),
and the KEDA ScaledObject (a CRD without a bundled schema) checked against what it must match:
the worker Deployment, the queue's Redis list and the Redis address the workers use."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from origin.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.37.0"


def docs() -> list[dict[str, Any]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, (kind, name)
    return matches[0]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


@pytest.mark.parametrize("doc", [d for d in docs() if not d["apiVersion"].startswith("keda.sh/")],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_core_resources_validate_strictly(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_broken_manifest_is_caught() -> None:
    """The validator really checks: a typo in a field name fails strict validation."""
    doc = find("Deployment", "ocr-worker")
    broken = yaml.safe_load(yaml.safe_dump(doc))
    broken["spec"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def test_origins_and_workers_run_the_right_commands_with_shared_settings() -> None:
    origin, worker = find("Deployment", "ocr-origin"), find("Deployment", "ocr-worker")
    assert container(origin)["command"][:2] == ["ocr-origin", "serve"]
    assert container(worker)["command"] == ["ocr-origin", "worker"]
    for d in (origin, worker):
        refs = {next(iter(r.values()))["name"] for r in container(d)["envFrom"]}
        assert refs == {"ocr-origin-config", "ocr-origin-secrets"}  # same secret: same keys
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    assert container(origin)["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = find("Service", "ocr-origin")
    assert service["spec"]["selector"] == origin["spec"]["template"]["metadata"]["labels"]


def test_configmap_sets_only_variables_the_code_reads() -> None:
    data = find("ConfigMap", "ocr-origin-config")["data"]
    known = set(re.findall(r"OCR_[A-Z0-9_]+", (ROOT / "origin/settings.py").read_text()))
    known |= set(re.findall(r"OCR_[A-Z0-9_]+", (ROOT / "deploy/gunicorn.conf.py").read_text()))
    assert {k for k in data if k.startswith("OCR_")} <= known


def test_keda_scales_the_worker_deployment_on_the_queue_list() -> None:
    scaled = find("ScaledObject", "ocr-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "ocr-worker")
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    config = find("ConfigMap", "ocr-origin-config")["data"]
    queue = config.get("OCR_QUEUE", Settings.queue_name)
    # RQ keeps a queue's waiting job ids in the Redis list `rq:queue:<name>` (origin/jobs.py)
    from rq import Queue

    assert trigger["metadata"]["listName"] == Queue.redis_queue_namespace_prefix + queue
    redis_url = urlparse(config["OCR_REDIS_URL"])
    assert trigger["metadata"]["address"] == f"{redis_url.hostname}:{redis_url.port}"
    assert trigger["metadata"]["databaseIndex"] == (redis_url.path.strip("/") or "0")
    assert int(trigger["metadata"]["listLength"]) >= 1
