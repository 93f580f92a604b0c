"""GPU serving: nothing touches CUDA before gunicorn forks; on a GPU, the fast path keeps answers.

The tests marked `cuda` need a CUDA GPU that this torch build has kernels for; without one they
are skipped (the only skips in the suite). Run them on a GPU machine with `pytest -m cuda`.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests
import torch

from bench.photos import PHOTO_NAMES, VGA, photo_jpeg
from classifier.decode import decode_image
from classifier.device import CudaQuery, build_supports
from classifier.loading import load_export
from classifier.predictor import Classifier
from classifier.service import warm_up
from webapp import cli, server
from webapp.cli import FLAGGED

from .support import MAX_PIXELS, LiveServer

CUDA_CALLS = (
    "is_available",
    "device_count",
    "init",
    "_lazy_init",
    "current_device",
    "get_device_name",
    "get_device_capability",
    "get_arch_list",
    "set_device",
)


def usable_gpu() -> bool:
    """True when torch sees a GPU it has kernels for."""
    query = CudaQuery()
    return query.device_count() > 0 and build_supports(query.capability(0), query.arch_list())


needs_gpu = pytest.mark.skipif(not usable_gpu(), reason="needs a CUDA GPU this torch can use")


@pytest.fixture
def cuda_trap(monkeypatch) -> list[str]:
    """Make every torch.cuda entry point record its name and fail, as a forked worker would."""
    touched: list[str] = []
    for name in CUDA_CALLS:

        def trap(*args, name=name, **kwargs):
            touched.append(name)
            raise AssertionError(f"torch.cuda.{name} called")

        monkeypatch.setattr(torch.cuda, name, trap)
    return touched


def test_the_gunicorn_master_never_touches_cuda(cuda_trap, monkeypatch, model_path, tmp_path):
    for setting in FLAGGED:
        monkeypatch.setenv(setting.env, str(setting.default))  # main() writes the flags here
    monkeypatch.setenv("SEAFRONT_INSTANCE_PATH", str(tmp_path))
    started = {}
    monkeypatch.setattr(
        server,
        "serve",
        lambda load_app, options: started.update(load_app=load_app, options=options),
    )
    cli.main(["--port", "0", "--model", str(model_path)])
    assert not started["options"].get("preload_app")
    assert cuda_trap == []
    # the trap works: building the app, as each worker does after the fork, asks torch.cuda
    with pytest.raises(AssertionError):
        started["load_app"]()
    assert cuda_trap


def test_the_app_is_built_by_gunicorns_worker_hook_not_before(monkeypatch):
    built = []
    app = server._GunicornApp(lambda: built.append("app") or "wsgi", {"bind": "127.0.0.1:0"})
    assert built == []
    assert app.load() == "wsgi" and built == ["app"]


# ---------------------------------------------------------------- on a GPU


@pytest.fixture
def gpu_pair(model_path):
    """The tiny model on the CPU (fp32) and on the GPU with the serving defaults."""
    cpu = Classifier(load_export(model_path), torch.device("cpu"), model_path)
    gpu = Classifier(
        load_export(model_path),
        torch.device("cuda:0"),
        model_path,
        torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16,
    )
    warm_up(gpu, 8)
    return cpu, gpu


@pytest.mark.cuda
@needs_gpu
def test_on_a_gpu_the_model_runs_in_eval_mode_with_autocast_and_keeps_every_label(
    gpu_pair, pictures
):
    cpu, gpu = gpu_pair
    assert not gpu.model.training and next(gpu.model.parameters()).is_cuda
    items = [image.copy() for image in pictures.values()]
    want = cpu.predict_batch([cpu.preprocess(image) for image in items])
    got = gpu.predict_batch([gpu.preprocess(image) for image in items])
    for served, expected in zip(got, want, strict=True):
        assert served.label == expected.label and served.device == "cuda:0"
        assert served.confidence == pytest.approx(expected.confidence, abs=0.02)


@pytest.mark.cuda
@needs_gpu
def test_on_a_gpu_a_resnet_runs_channels_last(tmp_path):
    from bench.bench import build_model

    path = build_model(tmp_path)
    classifier = Classifier(load_export(path), torch.device("cuda:0"), path)
    warm_up(classifier, 8)
    assert classifier.channels_last
    conv = next(m for m in classifier.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    photos = [decode_image(photo_jpeg(name, VGA), max_pixels=MAX_PIXELS) for name in PHOTO_NAMES]
    assert len(classifier.predict_batch([classifier.preprocess(p) for p in photos])) == 2


@pytest.mark.cuda
@needs_gpu
def test_on_a_gpu_only_the_worker_holds_a_cuda_context(model_path, tmp_path, pictures):
    live = LiveServer(model_path, tmp_path, "--device", "cuda")
    try:
        live.wait_ready(timeout=120)
        assert requests.get(f"{live.url}/healthz", timeout=5).json()["device"] == "cuda:0"
        answer = requests.post(
            f"{live.url}/api/predict",
            data=photo_jpeg("china.jpg", VGA),
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
        assert answer.status_code == 200 and answer.json()["device"] == "cuda:0"
        if shutil.which("nvidia-smi"):
            listed = subprocess.run(
                ["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            assert str(live.process.pid) not in listed
    finally:
        live.stop()


@pytest.mark.cuda
@needs_gpu
def test_on_a_gpu_auto_serves_torch_with_autocast_once_it_agrees_with_fp32(model_path, pictures):
    from classifier.service import ModelService

    from .support import service_settings

    settings = service_settings(model_path, device="cuda", backend="auto", precision="auto")
    service = ModelService(settings)
    service.start()
    try:
        assert service.choice is not None
        assert [trial.candidate.backend for trial in service.choice.trials] == ["torch"]
        assert service.classifier.runtime.name in ("torch bf16", "torch fp16")
        image = next(iter(pictures.values())).copy()
        assert service.predict_image(image).device == "cuda:0"
    finally:
        service.stop()
