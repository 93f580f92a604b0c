"""`python application.py`: gunicorn, start-up log lines, clear start-up errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
import torch

from .conftest import ROOT


def test_served_by_gunicorn_and_the_log_says_file_classes_device_and_time(live_server, model_path):
    log = live_server.log()
    assert "Starting gunicorn" in log and "Werkzeug" not in log
    assert f"Loaded {model_path} in " in log
    assert "classes mod, rocker, device cpu" in log
    assert requests.get(f"{live_server.url}/healthz", timeout=5).json()["model_loaded"]


def run_application(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run `python application.py ARGS` to completion."""
    return subprocess.run([sys.executable, str(ROOT / "application.py"), "--port", "0", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("contents", "words"), [
    (b"this is not a pickle", "is not a loadable fastai export"),
    (b"", "is not a loadable fastai export"),
])
def test_a_broken_model_file_stops_start_up_with_one_sentence(tmp_path, contents, words):
    bad = tmp_path / "export.pkl"
    bad.write_bytes(contents)
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
