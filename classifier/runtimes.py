"""What turns a prepared batch into logits: the learner's model in torch, or that model exported
to ONNX and run by ONNX Runtime or OpenVINO on the CPU.

The learner's own item and batch transforms still prepare every batch (predictor.py); a runtime
only replaces the model's forward pass. Every runtime is called from the batcher's thread alone.
ONNX Runtime and OpenVINO keep their own thread pools; each is sized to the worker's share of the
cores, as torch's is (threads.py), so that the workers never ask for more threads than cores.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import logging
import re
import warnings
from typing import Any

import torch
from torch import nn

from .precision import precision_name

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
# what each exported runtime can compute in; ONNX Runtime's CPU kernels are fp32 (its bf16
# kernels cover a few operators only, so a converted graph runs slower than in fp32)
EXPORTED_PRECISIONS: dict[str, tuple[torch.dtype | None, ...]] = {
    "onnxruntime": (None,),
    "openvino": (None, torch.bfloat16),
}
PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
ONNX_OPSET = 18  # what ONNX Runtime 1.32 and OpenVINO 2026.4 both read in full
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # torch.export colours its messages


class ExportError(RuntimeError):
    """The model cannot be exported to ONNX (a custom layer, data-dependent control flow)."""


class Runtime:
    """Runs the model on prepared batches: logits as a float32 tensor on the batch's device."""

    backend = "torch"
    precision: torch.dtype | None = None
    takes_channels_last = False  # the input layout it wants; exported graphs take NCHW

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def name(self) -> str:
        """`openvino bf16`, `torch fp32`: for logs, the health check and the benchmark."""
        return f"{self.backend} {precision_name(self.precision)}"


class TorchRuntime(Runtime):
    """The learner's model in eager PyTorch.

    On a GPU reduced precision is autocast (matmuls and convolutions in bf16 or fp16 on the
    tensor cores, the rest in fp32). On the CPU it is a copy of the model with bf16 weights fed
    bf16 inputs: on the 2-core AMD EPYC (AVX512-BF16), a resnet34 at batch 8 took 6-39% less
    time per image that way than with autocast, which converts every weight on every call; at
    batch 1 neither was reliably faster (bench/RESULTS.md, 2026-12-02).
    """

    takes_channels_last = True

    def __init__(self, model: nn.Module, device: torch.device, precision: torch.dtype | None):
        self.device, self.precision = device, precision
        self._autocast = precision is not None and device.type == "cuda"
        self._cast = precision if precision is not None and not self._autocast else None
        self.model = copy.deepcopy(model).to(self._cast) if self._cast else model

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self._cast is not None:
            batch = batch.to(self._cast)
        with torch.autocast(self.device.type, dtype=self.precision, enabled=self._autocast):
            logits = self.model(batch)
        return logits.float()


def backend_available(backend: str) -> bool:
    """True when the package of an exported backend is installed (torch always is)."""
    return backend == "torch" or importlib.util.find_spec(PACKAGES[backend]) is not None


def export_onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    """The model as an ONNX graph (bytes) that takes any batch size of `example`'s image shape.

    torch.onnx's TorchScript exporter traces the model on `example`. It is the one torch calls
    legacy, chosen by measurement: a resnet18 took 3.5 s with it on this project's busy 2-core
    CPU and 38 s with the torch.export-based one (a resnet34 11-80 s), a start-up cost that a
    busy machine could push past gunicorn's timeout. A trace records what one input did, so
    every tracer warning (a branch on a tensor's value, a call out of torch) is an error here:
    such a layer raises ExportError, and the model is then served by torch.
    """
    # a private fp32 NCHW copy: the served model keeps its layout, and tracing never touches it
    model = copy.deepcopy(model).float().to(memory_format=torch.contiguous_format).eval()
    example = example.float().contiguous()
    graph = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # "legacy exporter"
            torch.onnx.export(
                model,
                (example,),
                graph,  # type: ignore[arg-type]  # the TorchScript exporter writes file objects too
                dynamo=False,
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=ONNX_OPSET,
            )
    except Exception as error:  # the exporter fails in many ways on custom layers
        raise ExportError(_first_line(error)) from error
    return graph.getvalue()


def _first_line(error: BaseException) -> str:
    """The root cause's name and first line (torch.export's messages run to pages)."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = ANSI_ESCAPE.sub("", str(error)).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


class _ExportedRuntime(Runtime):
    """A runtime of an exported graph: NCHW float32 batches on the CPU, of the exported shape."""

    def __init__(self, image_shape: tuple[int, ...]):
        self.image_shape = image_shape

    def _inputs(self, batch: torch.Tensor) -> Any:
        """The batch as a C-contiguous float32 numpy array (no copy when it already is one)."""
        if tuple(batch.shape[1:]) != self.image_shape:
            raise ValueError(
                f"the exported graph takes images of shape {self.image_shape}, not "
                f"{tuple(batch.shape[1:])}"
            )
        return batch.float().contiguous().numpy()


class OnnxRuntimeRuntime(_ExportedRuntime):
    """The exported graph in ONNX Runtime's CPU provider, fp32, on `threads` threads."""

    backend = "onnxruntime"

    def __init__(self, graph: bytes, image_shape: tuple[int, ...], threads: int):
        super().__init__(image_shape)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # one graph at a time: no second pool
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
        self._session = onnxruntime.InferenceSession(
            graph, options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        (logits,) = self._session.run(None, {self._input: self._inputs(batch)})
        return torch.from_numpy(logits)


class OpenVinoRuntime(_ExportedRuntime):
    """The exported graph compiled by OpenVINO for the CPU, in fp32 or bf16, on `threads` threads.

    bf16 is OpenVINO's inference precision hint: convolutions and matmuls in bf16 on CPUs with
    AVX512-BF16 or AMX, with the layers that need it kept in fp32.
    """

    backend = "openvino"

    def __init__(
        self,
        graph: bytes,
        image_shape: tuple[int, ...],
        threads: int,
        precision: torch.dtype | None,
    ):
        super().__init__(image_shape)
        import openvino

        self.precision = precision
        core = openvino.Core()
        model = core.read_model(graph, b"")  # the weights are inside the ONNX bytes
        compiled = core.compile_model(
            model,
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads,
                "NUM_STREAMS": 1,  # one batch at a time, on every thread it has
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "bf16" if precision == torch.bfloat16 else "f32",
            },
        )
        self._request = compiled.create_infer_request()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self._request.infer({0: self._inputs(batch)})
        # a copy: the request reuses its output buffer on the next call
        return torch.from_numpy(self._request.get_output_tensor(0).data.copy())


def exported_runtime(
    backend: str,
    graph: bytes,
    image_shape: tuple[int, ...],
    threads: int,
    precision: torch.dtype | None,
) -> Runtime:
    """ONNX Runtime or OpenVINO on an exported graph."""
    if backend == "onnxruntime":
        return OnnxRuntimeRuntime(graph, image_shape, threads)
    return OpenVinoRuntime(graph, image_shape, threads, precision)
