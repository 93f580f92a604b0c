"""Choose the numeric precision of the forward pass: fp32, or bf16/fp16 autocast on a GPU."""

from __future__ import annotations

import torch

from .device import CudaQuery
from .errors import PrecisionError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
BF16_CAPABILITY = (8, 0)  # Ampere: the first NVIDIA GPUs with bf16 tensor cores


def choose_precision(
    requested: str, device: torch.device, query: CudaQuery | None = None
) -> torch.dtype | None:
    """The autocast dtype for `requested` (auto, fp32, bf16, fp16) on `device`; None means fp32.

    `auto` is bf16 on a GPU that has it (compute capability 8.0 and newer), else fp16 on a GPU,
    and fp32 on the CPU: CPU autocast only pays off on CPUs with bf16 instructions (AMX,
    AVX512-BF16) and it shifts the probabilities a little, so there it is opt-in.
    """
    requested = (requested or "auto").strip().lower()
    if requested != "auto" and requested not in PRECISIONS:
        raise PrecisionError(f"Unknown precision {requested!r}: use auto, fp32, bf16 or fp16.")
    if device.type != "cuda":
        return None if requested == "auto" else PRECISIONS[requested]
    capability = (query or CudaQuery()).capability(device.index or 0)
    has_bf16 = capability >= BF16_CAPABILITY
    if requested == "auto":
        return torch.bfloat16 if has_bf16 else torch.float16
    if requested == "bf16" and not has_bf16:
        major, minor = capability
        raise PrecisionError(
            f"Cannot use precision bf16 on {device}: its compute capability {major}.{minor} has "
            "no bf16 (it needs 8.0 or newer). Use SEAFRONT_PRECISION=fp16 or fp32."
        )
    return PRECISIONS[requested]


def precision_name(dtype: torch.dtype | None) -> str:
    """`fp32`, `bf16` or `fp16`, for logs and the health check."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
