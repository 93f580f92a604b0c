"""deploy/ holds files for the real tools; with no Docker engine or cluster here, each is checked
as far as the tool's own parser (nginx -t) or a YAML loader and the app's settings allow."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest
import yaml

from webapp.cli import parse_args
from webapp.settings import SETTINGS, default

from .support import ROOT, nginx_config

DEPLOY = ROOT / "deploy"
README = (ROOT / "README.md").read_text()
KNOWN = {setting.env for setting in SETTINGS}
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
MANIFESTS = [
    document
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
    if path.name != "kustomization.yaml"
    for document in yaml.safe_load_all(path.read_text())
]
BY_KIND = {(m["kind"], m["metadata"]["name"]): m for m in MANIFESTS}
SITE = (DEPLOY / "nginx" / "seafront.conf").read_text()


def test_nginx_accepts_the_site_config(tmp_path):
    config = nginx_config(tmp_path, 8080, ["127.0.0.1:5001", "127.0.0.1:5002"])
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(config), "-e", str(tmp_path / "e.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def nginx_value(directive: str) -> str:
    """The value of an nginx directive in the site config (its first use)."""
    match = re.search(rf"^\s*{directive}\s+([^;]+);", SITE, re.MULTILINE)
    assert match, f"{directive} is not set"
    return match.group(1)


def seconds(value: str) -> float:
    """An nginx time such as 75s or 2m, in seconds."""
    number, unit = re.fullmatch(r"(\d+)([smh]?)", value).groups()
    return int(number) * {"": 1, "s": 1, "m": 60, "h": 3600}[unit]


def test_nginx_buffers_uploads_within_the_apps_limits():
    assert nginx_value("proxy_request_buffering") == "on"
    body = int(nginx_value("client_max_body_size").rstrip("m")) * 1024 * 1024
    # the app, not nginx, refuses a slightly large upload, with its own sentence
    assert default("MAX_CONTENT_LENGTH") < body <= default("MAX_CONTENT_LENGTH") + 1024 * 1024
    assert seconds(nginx_value("proxy_read_timeout")) > default("REQUEST_TIMEOUT")
    assert seconds(nginx_value("client_body_timeout")) <= default("READ_TIMEOUT")


def test_nginx_retries_only_what_has_no_effect_to_repeat():
    retried = re.findall(r"location = (\S+) \{\s*proxy_next_upstream [^;]*non_idempotent;", SITE)
    assert sorted(retried) == ["/", "/api/predict"]
    assert "location = /metrics {\n        return 404;" in SITE


def test_compose_runs_nginx_in_front_of_two_replicas_and_redis():
    services = COMPOSE["services"]
    assert set(services) == {"nginx", "app1", "app2", "redis"}
    assert services["app1"] == services["app2"]
    assert services["app1"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert "./nginx/seafront.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]
    assert "/readyz" in " ".join(services["app1"]["healthcheck"]["test"])
    upstreams = re.findall(r"server (app\d):5000", SITE)
    assert upstreams == ["app1", "app2"]


@pytest.mark.parametrize("source", ["compose", "kubernetes"])
def test_the_deployments_set_only_settings_the_app_has(source):
    if source == "compose":
        names = set(COMPOSE["services"]["app1"]["environment"])
    else:
        container = BY_KIND["Deployment", "seafront"]["spec"]["template"]["spec"]["containers"][0]
        names = {variable["name"] for variable in container["env"]}
    assert names <= KNOWN, names - KNOWN
    assert "SEAFRONT_REDIS_URL" in names and "SEAFRONT_TRUSTED_PROXIES" in names


def test_kubernetes_has_the_deployment_service_autoscaler_and_volumes():
    kinds = {kind for kind, _ in BY_KIND}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim"} <= kinds
    listed = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    assert all((DEPLOY / "kubernetes" / name).exists() for name in listed["resources"])
    assert len(listed["resources"]) == len(list((DEPLOY / "kubernetes").glob("*.yaml"))) - 1


def test_the_deployment_probes_liveness_and_readiness_and_asks_for_resources():
    deployment = BY_KIND["Deployment", "seafront"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    ports = {port["name"] for port in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["port"] in ports
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    drain, graceful = float(env["SEAFRONT_DRAIN_SECONDS"]), float(env["SEAFRONT_GRACEFUL_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > drain + graceful
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    claims = {volume["persistentVolumeClaim"]["claimName"] for volume in pod["volumes"]}
    assert claims == {name for kind, name in BY_KIND if kind == "PersistentVolumeClaim"}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert BY_KIND["Service", "seafront"]["spec"]["selector"].items() <= labels.items()
    target = BY_KIND["HorizontalPodAutoscaler", "seafront"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "seafront")


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(instruction, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / dockerfile).read_text())
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [tuple(line.split(None, 1)) for line in lines]  # type: ignore[misc]


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_the_dockerfiles_run_the_readmes_commands(dockerfile):
    steps = instructions(dockerfile)
    runs = " && ".join(arguments for instruction, arguments in steps if instruction == "RUN")
    assert "pip install -r requirements.txt" in runs
    assert "pip install -r requirements.txt" in README  # the quick start's own command
    [command] = [json.loads(arguments) for instruction, arguments in steps if instruction == "CMD"]
    assert command[:2] == ["python", "application.py"]
    assert parse_args(command[2:]).host == "0.0.0.0"  # flags the app has
    assert f"docker build -f deploy/{dockerfile} " in README
    ignored = (DEPLOY / f"{dockerfile}.dockerignore").read_text().split()
    assert {".venv", "models", "uploads", "instance"} <= set(ignored)


def test_the_cuda_image_runs_one_worker_on_the_gpu():
    env = dict(
        pair.split("=", 1)
        for instruction, arguments in instructions("Dockerfile.cuda")
        if instruction == "ENV"
        for pair in shlex.split(arguments)
    )
    assert env["SEAFRONT_DEVICE"] == "cuda" and env["SEAFRONT_WORKERS"] == "1"
