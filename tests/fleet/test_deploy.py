"""deploy/k8s: `kubectl kustomize` output validated against the official Kubernetes schemas
(kubernetes-validate), and checked for what the gateway needs from it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.config import ENV_VARS, load_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBE_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        message = "kubectl is not installed (apt-get install -y kubernetes-client; .ci/run does it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True)
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_every_manifest_is_valid_against_the_kubernetes_schemas(rendered: dict[tuple[str, str], Any]) -> None:
    for (kind, name), doc in rendered.items():
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{kind}/{name}: {exc.message} at {'.'.join(map(str, exc.path))}")
    kinds = {kind for kind, _ in rendered}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret"} <= kinds


def test_an_invalid_manifest_is_caught() -> None:
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSION, strict=True)


def test_the_deployment_drains_and_probes_the_gateway(rendered: dict[tuple[str, str], Any]) -> None:
    from gateway.workers import DRAIN_TIMEOUT_S

    dep = rendered[("Deployment", "gradium-gateway")]
    pod = dep["spec"]["template"]["spec"]
    (gw,) = pod["containers"]
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop_s = int(gw["lifecycle"]["preStop"]["exec"]["command"][-1])
    # The pod must outlive the preStop sleep plus the workers' drain, or running sessions are killed.
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_s + DRAIN_TIMEOUT_S
    assert pod["securityContext"]["runAsNonRoot"] and gw["securityContext"]["readOnlyRootFilesystem"]
    assert any(m["mountPath"] == "/tmp" for m in gw["volumeMounts"])  # the multiprocess metrics directory
    assert gw["args"] == ["serve"]  # the image's ENTRYPOINT is gradium-gateway
    labels = dep["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        obj = rendered[(kind, "gradium-gateway")]
        selector = obj["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind
    hpa = rendered[("HorizontalPodAutoscaler", "gradium-gateway")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert rendered[("Service", "gradium-gateway-redis")]["spec"]["ports"][0]["port"] == 6379


def test_config_and_secrets_are_what_the_gateway_reads(
    rendered: dict[tuple[str, str], Any], tmp_path: Path
) -> None:
    dep = rendered[("Deployment", "gradium-gateway")]
    (gw,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in gw["env"]}
    secret = rendered[("Secret", "gradium-gateway-secrets")]["stringData"]
    assert set(secret) <= set(ENV_VARS), set(secret) - set(ENV_VARS)
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(rendered[("ConfigMap", "gradium-gateway-config")]["data"]["gateway.yaml"])
    settings = load_settings(cfg, env={**env, **secret, "GATEWAY_CONFIG": str(cfg)})
    assert settings.state.redis_url == "redis://gradium-gateway-redis:6379/0"
    assert settings.host == "0.0.0.0" and settings.workers == int(env["GATEWAY_WORKERS"])
    assert not settings.uses_emulator


def test_dockerfile_installs_dependencies_before_the_code_and_runs_as_non_root() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    copies = [i for i, ln in enumerate(lines) if ln.startswith("COPY")]
    deps = next(i for i, ln in enumerate(lines) if "pip install -r" in ln)
    code = next(i for i, ln in enumerate(lines) if ln.startswith("COPY gateway"))
    assert lines[copies[0]] == "COPY pyproject.toml ./" and copies[0] < deps < code
    assert any(ln.startswith("USER ") and not ln.startswith("USER root") for ln in lines)
    base = next(ln for ln in lines if ln.startswith("ARG BASE="))
    assert base.split(":", 1)[1].split("-")[0].count(".") == 2  # an exact Python version, not `3.11`
