"""The Helm chart renders, lints, every manifest validates against Kubernetes' schemas, and
secrets stay in Secrets: passwords in the pipeline's Secret, certificate files mounted from
theirs, the ConfigMap holding only what is not secret."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

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


def render(*sets: str, values: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [helm_binary(), "template", "demo", str(CHART)]
    if values is not None:
        args += ["--values", str(values)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def manifests(*sets: str, values: Path | None = None) -> list[dict[str, Any]]:
    done = render(*sets, values=values)
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


# -- a secured cluster: SASL_SSL with mutual TLS, a registry with basic auth and its own CA --------

SECRETS = {
    "KAFKA_SASL_PASSWORD": "kafka-pw-Zq81",
    "SCHEMA_REGISTRY_PASSWORD": "registry-pw-Yx27",
    "ARDARY_ACCESS_KEY": "access-key-Wv63",
    "ARDARY_ACCESS_KEYS": '{"team@example.com": "team-key-Ut45"}',
    "PIPELINE_CALLBACK_TOKEN": "callback-token-Ts09",
    "WAREHOUSE_PII_KEY": "pii-key-Sr18",
    "WAREHOUSE_URL": "postgresql://sink:warehouse-pw-Rq72@warehouse:5432/ardary",
}
SECURED = {
    "kafka": {
        "bootstrapServers": "kafka-1.example.com:9096,kafka-2.example.com:9096",
        "securityProtocol": "SASL_SSL",
        "replicationFactor": 3,
        "sasl": {"mechanism": "SCRAM-SHA-512", "username": "ardary-pipeline"},
        "tls": {
            "secretName": "kafka-certs",
            "caKey": "ca.pem",
            "certKey": "service.cert",
            "keyKey": "service.key",
        },
    },
    "schemaRegistry": {
        "url": "https://registry.example.com",
        "username": "registry-user",
        "tls": {"secretName": "registry-ca", "caKey": "ca.crt"},
    },
    "warehouse": {"url": ""},  # the URL carries a password: it is in the Secret
    "secrets": SECRETS,
}
# what each file setting must point at: (Secret, key)
FILES = {
    "KAFKA_SSL_CA_FILE": ("kafka-certs", "ca.pem"),
    "KAFKA_SSL_CERT_FILE": ("kafka-certs", "service.cert"),
    "KAFKA_SSL_KEY_FILE": ("kafka-certs", "service.key"),
    "SCHEMA_REGISTRY_CA_FILE": ("registry-ca", "ca.crt"),
}
WORKLOADS = {
    ("StatefulSet", "demo-ardary-ingress"),
    ("StatefulSet", "demo-ardary-worker"),
    ("Deployment", "demo-ardary-sink"),
    ("Job", "demo-ardary-topics"),
}


def _values(tmp_path: Path, values: dict[str, object]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


Doc = dict[str, Any]


def _by_name(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _secured(tmp_path: Path, *sets: str) -> dict[tuple[str, str], Doc]:
    return _by_name(manifests(*sets, values=_values(tmp_path, SECURED)))


def _pod(doc: Doc) -> Doc:
    pod: Doc = doc["spec"]["template"]["spec"]
    return pod


def test_no_secret_value_appears_outside_the_secret(tmp_path: Path) -> None:
    docs = _secured(tmp_path)
    config = docs[("ConfigMap", "demo-ardary-config")]["data"]
    for name in SECRETS:
        assert name not in config
    values = [*SECRETS.values(), "warehouse-pw-Rq72", "team-key-Ut45"]
    for key, doc in docs.items():
        text = yaml.safe_dump(doc)
        leaked = [v for v in values if v in text]
        if key == ("Secret", "demo-ardary-secrets"):
            assert doc["stringData"] == SECRETS  # all of them, verbatim, here only
        else:
            assert leaked == [], f"{key} holds {leaked}"


def test_the_configmap_holds_the_security_settings_that_are_not_secret(tmp_path: Path) -> None:
    config = _secured(tmp_path)[("ConfigMap", "demo-ardary-config")]["data"]
    assert {k: v for k, v in config.items() if "SASL" in k or "PROTOCOL" in k} == {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "ardary-pipeline",
    }
    assert config["SCHEMA_REGISTRY_URL"] == "https://registry.example.com"
    assert config["SCHEMA_REGISTRY_USERNAME"] == "registry-user"
    assert config["PIPELINE_REPLICATION_FACTOR"] == "3"
    assert "WAREHOUSE_URL" not in config  # left to the Secret
    assert set(FILES) <= config.keys()
    # every value a setting the pipeline knows (a typo would be silently ignored)
    from pipeline.settings import Settings

    assert {k.lower() for k in config} <= Settings.model_fields.keys()


def test_every_pod_mounts_the_certificate_files_where_the_settings_point(
    tmp_path: Path,
) -> None:
    docs = _secured(tmp_path)
    config = docs[("ConfigMap", "demo-ardary-config")]["data"]
    for key in WORKLOADS:
        pod = _pod(docs[key])
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert pod["securityContext"] == {"fsGroup": 10001}  # 0440 files readable by the app
        for container in pod["containers"]:
            refs = [next(iter(r.values()))["name"] for r in container["envFrom"]]
            assert refs == ["demo-ardary-config", "demo-ardary-secrets"], key
            mounts = container["volumeMounts"]
            for setting, (secret, secret_key) in FILES.items():
                path = Path(config[setting])
                mount = next(m for m in mounts if path.parent == Path(m["mountPath"]))
                assert mount["readOnly"] is True
                source = volumes[mount["name"]]["secret"]
                assert source["secretName"] == secret, (key, setting)
                assert {"key": secret_key, "path": path.name} in source["items"]
                assert source["defaultMode"] == 0o440


def test_secured_manifests_validate_against_kubernetes_schemas(tmp_path: Path) -> None:
    import kubernetes_validate

    for doc in _secured(tmp_path).values():
        kubernetes_validate.validate(doc, "1.33.0", strict=True)


def test_defaults_mount_nothing_and_speak_plaintext() -> None:
    docs = _by_name(manifests())
    config = docs[("ConfigMap", "demo-ardary-config")]["data"]
    assert config["KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert not [k for k in config if "SASL" in k or k.endswith("_FILE")]
    for key in WORKLOADS:
        assert "volumes" not in _pod(docs[key])


def test_an_existing_secret_needs_no_password_in_the_values(tmp_path: Path) -> None:
    values = {**SECURED, "secrets": {}, "secretName": "prod-ardary"}
    docs = manifests(values=_values(tmp_path, values))
    assert not [d for d in docs if d["kind"] == "Secret"]
    job: Doc = next(d for d in docs if d["kind"] == "Job")
    refs = _pod(job)["containers"][0]["envFrom"]
    assert {"name": "prod-ardary", "optional": True} in [r.get("secretRef") for r in refs]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["kafka.sasl.mechanism=null"],
            "kafka.securityProtocol=SASL_SSL needs kafka.sasl.mechanism and kafka.sasl.username",
        ),
        (["secrets.KAFKA_SASL_PASSWORD="], "KAFKA_SASL_PASSWORD: set secrets.KAFKA_SASL_PASSWORD"),
        (
            ["secrets.SCHEMA_REGISTRY_PASSWORD="],
            "SCHEMA_REGISTRY_PASSWORD: set secrets.SCHEMA_REGISTRY_PASSWORD",
        ),
        (["kafka.tls.keyKey="], "kafka.tls.certKey and kafka.tls.keyKey go together"),
        (["kafka.securityProtocol=SASL_PLAINTEXT"], "uses no TLS"),
        (["kafka.securityProtocol=SSL"], "kafka.sasl.* is set but kafka.securityProtocol=SSL"),
        (["kafka.sasl.mechanism=GSSAPI"], "/kafka/sasl/mechanism"),
        # a password as a value would land in a ConfigMap's neighbourhood: refused by the schema
        (["kafka.sasl.password=oops"], "additional properties 'password' not allowed"),
        (["kafka.schemaRegistryUrl=http://r"], "additional properties 'schemaRegistryUrl'"),
        (["schemaRegistry.tls.caKey="], "schemaRegistry.tls.secretName and schemaRegistry.tls"),
    ],
)
def test_settings_the_pipeline_would_refuse_fail_the_render(
    tmp_path: Path, sets: list[str], message: str
) -> None:
    done = render(*sets, values=_values(tmp_path, SECURED))
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert "kafka-pw-Zq81" not in done.stderr


def test_a_new_username_or_password_rolls_every_long_running_pod(tmp_path: Path) -> None:
    def annotations(*sets: str) -> dict[tuple[str, str], dict[str, str]]:
        docs = _secured(tmp_path, *sets)
        return {
            key: docs[key]["spec"]["template"]["metadata"]["annotations"]
            for key in WORKLOADS
            if key[0] != "Job"
        }

    before = annotations()
    user = annotations("kafka.sasl.username=ardary-pipeline-2")
    password = annotations("secrets.KAFKA_SASL_PASSWORD=kafka-pw-new")
    for key, seen in before.items():
        assert user[key]["checksum/config"] != seen["checksum/config"], key
        assert password[key]["checksum/secret"] != seen["checksum/secret"], key
        assert password[key]["checksum/config"] == seen["checksum/config"], key
    # the annotation is a digest: the password itself is not in it
    assert "kafka-pw-new" not in yaml.safe_dump(password)
