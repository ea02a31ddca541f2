"""The Helm chart renders, lints, and every manifest validates against Kubernetes' schemas."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "ardary-pipeline"


def helm_binary() -> str:
    found = os.environ.get("ARDARY_HELM") or shutil.which("helm")
    cached = Path.home() / ".cache" / "ardary-pipeline" / "bin" / "helm"
    if found is None and cached.is_file():
        found = str(cached)
    if found is None:
        pytest.skip("helm not installed (make tools installs it from the Go module proxy)")
    return found


def render(*sets: str) -> subprocess.CompletedProcess[str]:
    args = [helm_binary(), "template", "demo", str(CHART)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def manifests(*sets: str) -> list[dict[str, object]]:
    done = render(*sets)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_helm_lint() -> None:
    done = subprocess.run(
        [helm_binary(), "lint", "--strict", str(CHART)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_manifests_validate_against_kubernetes_schemas() -> None:
    import kubernetes_validate

    docs = manifests()
    kinds = sorted(str(d["kind"]) for d in docs)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Secret",
            "Job",
            "StatefulSet",  # ingress (its spool volume)
            "Service",
            "Service",
            "HorizontalPodAutoscaler",
            "StatefulSet",  # worker
            "Service",
            "Deployment",  # sink
        ]
    )
    version = "1.33.0"
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError
    # the validator does reject a wrong manifest (a misspelt field), so the loop above means it
    broken = next(d for d in docs if d["kind"] == "Deployment")
    broken["spec"]["replica"] = 2  # type: ignore[index]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def _containers(doc: dict[str, object]) -> list[dict[str, object]]:
    spec = doc["spec"]["template"]["spec"]  # type: ignore[index]
    return list(spec["containers"])  # type: ignore[index]


def test_probes_config_and_secrets_wiring() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in manifests()}  # type: ignore[index]
    ingress_set = docs[("StatefulSet", "demo-ardary-ingress")]
    ingress = _containers(ingress_set)[0]
    # the spool lives on the replica's own volume, mounted where INGRESS_SPOOL_DIR points
    env = {e["name"]: e["value"] for e in ingress["env"]}  # type: ignore[union-attr,index]
    mounts = {m["name"]: m["mountPath"] for m in ingress["volumeMounts"]}  # type: ignore[union-attr,index]
    assert env["INGRESS_SPOOL_DIR"].startswith(mounts["spool"] + "/")
    claims = ingress_set["spec"]["volumeClaimTemplates"]  # type: ignore[index]
    assert [c["metadata"]["name"] for c in claims] == ["spool"]
    worker = _containers(docs[("StatefulSet", "demo-ardary-worker")])[0]
    for container in (ingress, worker):
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"  # type: ignore[index]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # type: ignore[index]
        refs = container["envFrom"]
        assert {"configMapRef", "secretRef"} == {next(iter(r)) for r in refs}  # type: ignore[union-attr]
    hpa = docs[("HorizontalPodAutoscaler", "demo-ardary-ingress")]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"  # type: ignore[index]
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"  # type: ignore[index]
    config = docs[("ConfigMap", "demo-ardary-config")]["data"]
    assert "ARDARY_ACCESS_KEY" not in config and "PIPELINE_CALLBACK_TOKEN" not in config  # type: ignore[operator]
    # every command the chart runs is a real subcommand (same check as docker-compose)
    from pipeline.cli import COMMANDS

    for doc in docs.values():
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            for container in _containers(doc):
                assert container["args"][0] in COMMANDS  # type: ignore[index]


def test_more_workers_than_partitions_is_refused() -> None:
    done = render("worker.replicas=7", "kafka.partitions=6")
    assert done.returncode != 0
    assert "must not exceed kafka.partitions" in done.stderr


def test_existing_secret_replaces_the_generated_one() -> None:
    docs = manifests("secretName=prod-ardary")
    assert not [d for d in docs if d["kind"] == "Secret"]
    worker = next(d for d in docs if d["kind"] == "StatefulSet")
    refs = _containers(worker)[0]["envFrom"]
    assert {"name": "prod-ardary", "optional": True} in [r.get("secretRef") for r in refs]  # type: ignore[union-attr]
