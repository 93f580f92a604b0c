"""How the model runs: bf16 where the CPU computes it, the exported runtimes (ONNX Runtime,
OpenVINO) within the bound of eager fp32, the agreement check's fallback to fp32, torch for a
model that cannot be exported, and SEAFRONT_BACKEND / SEAFRONT_PRECISION refused in a sentence."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from torch import nn

from classifier import runtimes
from classifier.agreement import BOUND, compare, synthetic_images
from classifier.backend import (
    Candidate,
    candidates,
    choose_runtime,
    resolve_backends,
    serve_with,
)
from classifier.errors import BackendError, PrecisionError
from classifier.loading import load_export
from classifier.precision import choose_precision
from classifier.predictor import Classifier
from classifier.runtimes import TorchRuntime, export_onnx, exported_runtime
from classifier.service import ModelService

from .support import service_settings
from .tinymodel import tiny_cnn

CPU = torch.device("cpu")
FP32, BF16 = None, torch.bfloat16


class FakeCpuQuery:
    """Stands in for torch.cpu.get_capabilities()."""

    def __init__(self, **features: bool):
        self.features = features

    def capabilities(self):
        """The fake CPU's instruction sets."""
        return self.features


@pytest.mark.parametrize(
    ("requested", "features", "expected"),
    [
        ("auto", {"avx512_bf16": True}, BF16),  # Cooper Lake, Zen 4 and newer
        ("auto", {"amx_bf16": True, "avx512_bf16": False}, BF16),  # Sapphire Rapids' AMX
        ("auto", {"avx512_f": True, "avx2": True}, FP32),  # AVX-512 without bf16: emulated
        ("auto", {}, FP32),
        ("fp32", {"avx512_bf16": True}, FP32),
        ("bf16", {}, BF16),  # asked for: served if it agrees, however slow
    ],
)
def test_auto_precision_on_the_cpu_is_bf16_only_where_the_cpu_computes_it(
    requested, features, expected
):
    assert choose_precision(requested, CPU, cpu=FakeCpuQuery(**features)) is expected


# ---------------------------------------------------------------- settings refused at start-up


@pytest.mark.parametrize(
    ("config", "error", "sentence"),
    [
        (
            {"BACKEND": "tensorrt"},
            BackendError,
            "Unknown backend 'tensorrt' (SEAFRONT_BACKEND): use auto, torch, onnxruntime or "
            "openvino.",
        ),
        (
            {"BACKEND": "onnxruntime", "PRECISION": "bf16"},
            BackendError,
            "SEAFRONT_BACKEND=onnxruntime cannot run in bf16 (SEAFRONT_PRECISION=bf16): use "
            "SEAFRONT_PRECISION=auto or fp32, or SEAFRONT_BACKEND=auto.",
        ),
        (
            {"PRECISION": "half"},
            PrecisionError,
            "Unknown precision 'half' (SEAFRONT_PRECISION): use auto, fp32, bf16 or fp16.",
        ),
    ],
)
def test_an_impossible_backend_or_precision_stops_start_up_with_one_sentence(
    make_app, config, error, sentence
):
    with pytest.raises(error) as raised:
        make_app(DEVICE="cpu", **config)
    assert str(raised.value) == sentence


def test_an_exported_backend_on_a_gpu_is_refused_in_a_sentence():
    with pytest.raises(BackendError, match=r"runs on the CPU only, not on cuda:0: use"):
        resolve_backends("openvino", torch.device("cuda:0"))


def test_a_backend_whose_package_is_missing_is_refused_in_a_sentence(monkeypatch):
    monkeypatch.setattr(runtimes, "backend_available", lambda backend: backend == "torch")
    monkeypatch.setattr("classifier.backend.backend_available", runtimes.backend_available)
    with pytest.raises(BackendError, match=r"needs the openvino package, which is not installed"):
        resolve_backends("openvino", CPU)
    assert resolve_backends("auto", CPU) == ("torch",)


@pytest.mark.parametrize(
    ("backends", "precision", "asked", "expected"),
    [
        # auto precision: each backend at its best, ONNX Runtime in fp32
        (
            ("torch", "onnxruntime", "openvino"),
            BF16,
            False,
            [("torch", BF16), ("onnxruntime", FP32), ("openvino", BF16)],
        ),
        # bf16 asked for: a backend without it is left out
        (("torch", "onnxruntime", "openvino"), BF16, True, [("torch", BF16), ("openvino", BF16)]),
        (("torch", "openvino"), torch.float16, True, [("torch", torch.float16)]),
        (("onnxruntime",), FP32, True, [("onnxruntime", FP32)]),
    ],
)
def test_the_candidates_are_each_backend_at_a_precision_it_can_run(
    backends, precision, asked, expected
):
    assert candidates(backends, precision, asked) == [Candidate(*pair) for pair in expected]


# ---------------------------------------------------------------- the runtimes agree with fp32


@pytest.fixture(scope="module")
def tiny_classifier(model_path) -> Classifier:
    """The tiny model, served by eager torch in fp32."""
    return Classifier(load_export(model_path), CPU, model_path)


@pytest.fixture(scope="module")
def tiny_batch(tiny_classifier, pictures) -> torch.Tensor:
    """Every test picture and the warm-up pictures as one prepared batch."""
    images = [*pictures.values(), *synthetic_images()]
    return tiny_classifier.prepare_batch([tiny_classifier.preprocess(i.copy()) for i in images])


@pytest.fixture(scope="module")
def tiny_graph(tiny_classifier, tiny_batch) -> bytes:
    """The tiny model exported to ONNX once (seconds)."""
    return export_onnx(tiny_classifier.model, tiny_batch)


@pytest.mark.parametrize(
    ("backend", "precision"),
    [("torch", BF16), ("onnxruntime", FP32), ("openvino", FP32), ("openvino", BF16)],
    ids=["torch-bf16", "onnxruntime-fp32", "openvino-fp32", "openvino-bf16"],
)
def test_each_backend_answers_like_eager_fp32_within_the_bound(
    tiny_classifier, tiny_batch, tiny_graph, backend, precision
):
    if backend == "torch":
        runtime = TorchRuntime(tiny_classifier.model, CPU, precision)
    else:
        runtime = exported_runtime(backend, tiny_graph, tuple(tiny_batch.shape[1:]), 1, precision)
    reference = tiny_classifier.probabilities(
        TorchRuntime(tiny_classifier.model, CPU, None)(tiny_batch)
    )
    served = tiny_classifier.probabilities(runtime(tiny_batch))
    agreement = compare(reference, served)
    assert agreement.passed, agreement.describe()
    assert agreement.largest_difference <= BOUND
    assert (served.argmax(1) == reference.argmax(1)).all()


def test_the_exported_runtimes_use_the_workers_share_of_the_cores(tiny_graph, tiny_batch):
    shape = tuple(tiny_batch.shape[1:])
    # one thread: what each of two workers gets on two cores (OpenVINO caps it at the cores)
    onnx = exported_runtime("onnxruntime", tiny_graph, shape, 1, FP32)
    assert onnx._session.get_session_options().intra_op_num_threads == 1
    openvino = exported_runtime("openvino", tiny_graph, shape, 1, FP32)
    assert openvino._request.get_compiled_model().get_property("INFERENCE_NUM_THREADS") == 1


def test_torch_keeps_one_thread_beside_an_exported_runtime(model_path, tiny_graph, tiny_batch):
    # a second OpenMP team would spin on the cores the runtime needs after every batch transform
    classifier = Classifier(load_export(model_path), CPU, model_path)
    before = torch.get_num_threads()
    try:
        exported = exported_runtime("openvino", tiny_graph, tuple(tiny_batch.shape[1:]), 2, FP32)
        serve_with(classifier, exported, threads=2)
        assert (classifier.runtime, torch.get_num_threads()) == (exported, 1)
        serve_with(classifier, TorchRuntime(classifier.model, CPU, None), threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- the fallbacks


class Magnified(nn.Module):
    """Logits near 1000 that differ by 1: exact in fp32, rounded by bf16 (its step there is 4)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(3, 2)
        with torch.no_grad():
            self.head.weight.fill_(300.0)
            self.head.bias.copy_(torch.tensor([1000.0, 1001.0]))

    def forward(self, images):
        return self.head(self.pool(images).flatten(1))


class DataDependent(nn.Module):
    """A custom layer whose branch depends on the pixels: a trace would record one branch."""

    def forward(self, images):
        return images if images.mean() > 0 else -images


def classifier_of(tiny_learner, model: nn.Module, path: Path) -> Classifier:
    """A Classifier of `model` with the tiny model's data and transforms."""
    learner = Learner(tiny_learner.dls, model.eval(), loss_func=CrossEntropyLossFlat())
    return Classifier(learner, CPU, path)


def test_a_model_that_disagrees_in_bf16_is_served_in_fp32_and_the_log_says_why(
    tiny_learner, model_path, caplog
):
    classifier = classifier_of(tiny_learner, Magnified(), model_path)
    with caplog.at_level(logging.WARNING, logger="classifier.backend"):
        choice = choose_runtime(
            classifier, [Candidate("torch", BF16)], synthetic_images(), threads=1, max_batch_size=4
        )
    assert choice.runtime.name == "torch fp32"
    assert "Not serving with torch bf16: its probabilities differ from fp32 by" in caplog.text
    assert "(bound 0.02), 5 of 5 clear top labels changed; trying torch fp32 instead." in (
        caplog.text
    )


def test_a_model_that_cannot_be_exported_is_served_by_torch_and_the_log_says_so(
    tiny_learner, model_path, caplog
):
    model = nn.Sequential(DataDependent(), tiny_cnn(len(tiny_learner.dls.vocab)))
    classifier = classifier_of(tiny_learner, model, model_path)
    wanted = [Candidate("torch", BF16), Candidate("onnxruntime", FP32), Candidate("openvino", BF16)]
    with caplog.at_level(logging.WARNING, logger="classifier.backend"):
        choice = choose_runtime(classifier, wanted, synthetic_images(), threads=1, max_batch_size=4)
    assert choice.runtime.backend == "torch"
    assert "The model cannot be exported to ONNX (TracerWarning: Converting a tensor to a " in (
        caplog.text
    )
    assert "so it is served by torch." in caplog.text


# ---------------------------------------------------------------- auto, end to end


@pytest.fixture(scope="module")
def auto_service(model_path):
    """The tiny model served with SEAFRONT_BACKEND=auto and SEAFRONT_PRECISION=auto."""
    service = ModelService(service_settings(model_path, backend="auto", precision="auto"))
    service.start()
    yield service
    service.stop()


def test_auto_tries_every_installed_backend_and_serves_the_fastest_that_agrees(auto_service):
    choice = auto_service.choice
    tried = {trial.candidate.backend for trial in choice.trials}
    assert tried == {"torch", "onnxruntime", "openvino"}
    assert all(trial.passed for trial in choice.trials)
    fastest = min(choice.trials, key=lambda trial: trial.cost(8))
    assert auto_service.classifier.runtime.name == fastest.candidate.name


def test_auto_answers_within_the_bound_of_eager_fp32(auto_service, model_path, png_pictures):
    fp32 = Classifier(load_export(model_path), CPU, model_path)
    for data in png_pictures.values():
        served = auto_service.predict_bytes(data)
        expected = fp32.predict_batch([fp32.preprocess(auto_service.decode(data))])[0]
        assert served.label == expected.label
        for label, probability in served.probabilities.items():
            assert probability == pytest.approx(expected.probabilities[label], abs=BOUND)
