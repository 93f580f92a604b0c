"""`python application.py`: gunicorn, start-up log lines, clear start-up errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile

import pytest
import requests
import torch

from .support import ROOT, free_port, wait_until


def test_served_by_gunicorn_and_the_log_says_file_classes_device_and_time(live_server, model_path):
    log = live_server.log()
    assert "Starting gunicorn" in log and "Werkzeug" not in log
    assert f"Loaded {model_path} in " in log
    assert "classes mod, rocker, device cpu" in log
    assert requests.get(f"{live_server.url}/healthz", timeout=5).json()["model_loaded"]


def test_gunicorn_serves_the_module_level_application(model_path, tmp_path):
    port = free_port()
    environment = {
        **os.environ,
        "SEAFRONT_MODEL_PATH": str(model_path),
        "SEAFRONT_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "application:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--threads",
            "4",
        ],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = wait_for_health(f"http://127.0.0.1:{port}", process)
        assert health == {
            "status": "ok",
            "model_loaded": True,
            "device": "cpu",
            "classes": ["mod", "rocker"],
        }
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "classes mod, rocker, device cpu" in output


def wait_for_health(url: str, process: subprocess.Popen, timeout: float = 60) -> dict:
    """Poll /healthz until it answers; fail if the process exits first."""

    def health() -> dict | None:
        assert process.poll() is None, "the server exited early"
        try:
            return requests.get(f"{url}/healthz", timeout=1).json()
        except (requests.ConnectionError, requests.Timeout):
            return None

    return wait_until(health, timeout, every=0.2, message=f"{url} did not answer in {timeout} s")


def run_application(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run `python application.py ARGS` to completion (its secret key in a temporary folder)."""
    with tempfile.TemporaryDirectory() as instance:
        environment = {**os.environ, "SEAFRONT_INSTANCE_PATH": instance}
        return subprocess.run(
            [sys.executable, str(ROOT / "application.py"), "--port", "0", *args],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def test_a_broken_model_file_stops_start_up_with_one_sentence(tmp_path):
    # every kind of broken file has its sentence in test_model_loading; this is the start-up path
    bad = tmp_path / "export.pkl"
    bad.write_bytes(b"this is not a pickle")
    words = "is not a loadable fastai export"
    result = run_application("--model", str(bad))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert words in output and str(bad) in output
    assert "Traceback" not in output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine with no GPU")
def test_device_cuda_without_a_usable_gpu_stops_start_up_with_one_sentence(model_path):
    result = run_application("--model", str(model_path), "--device", "cuda")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Cannot use --device cuda: no CUDA GPU is visible" in output
    assert "Traceback" not in output


def test_a_normal_start_logs_no_warning(live_server):
    # the start-up alone: other tests' requests may have logged since
    log = live_server.log()
    log = log[: log.index("\n", log.index("Serving in "))]
    assert "Loaded " in log
    # no torch.jit.script notice from fastai, no "Using the CPU" warning on a machine without GPU
    assert "Warning" not in log and " WARNING " not in log
    assert "Using the CPU: no CUDA GPU is visible" in log or "device cuda" in log


def test_a_busy_port_is_one_sentence_that_suggests_another(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_application("--port", str(port), "--model", str(tmp_path / "none.pkl"))
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"python application.py --port {port + 1}" in result.stderr


@pytest.mark.parametrize("flags", [[], ["--debug"]])
def test_flask_run_stops_at_once_saying_how_to_start_the_app(tmp_path, flags):
    environment = {
        **os.environ,
        "SEAFRONT_INSTANCE_PATH": str(tmp_path / "instance"),
        "SEAFRONT_MODEL_PATH": str(tmp_path / "none.pkl"),
    }
    command = [sys.executable, "-m", "flask", "--app", "application", *flags, "run"]
    result = subprocess.run(
        [*command, "--port", str(free_port())],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode != 0
    assert "start it with `python application.py`" in result.stderr
    assert "Traceback" not in result.stderr and "Running on" not in result.stderr
