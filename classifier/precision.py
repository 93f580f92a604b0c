"""Choose the numeric precision of the forward pass: fp32, or bf16/fp16 where hardware has it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .device import CudaQuery
from .errors import PrecisionError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
BF16_CAPABILITY = (8, 0)  # Ampere: the first NVIDIA GPUs with bf16 tensor cores
# x86 instructions that compute bf16 dot products natively (Cooper Lake, Zen 4 and newer; Sapphire
# Rapids' AMX tiles). Without them torch and oneDNN emulate bf16 with fp32 arithmetic plus
# conversions, which is slower than fp32 alone.
NATIVE_BF16_FEATURES = ("avx512_bf16", "amx_bf16")


class CpuQuery:
    """What torch (through cpuinfo) knows about this CPU; a separate object so tests can fake it."""

    def capabilities(self) -> Mapping[str, Any]:
        """Instruction sets by name, e.g. {'avx512_bf16': True, 'amx_bf16': False, ...}."""
        return torch.cpu.get_capabilities()


def cpu_computes_bf16(query: CpuQuery | None = None) -> bool:
    """True when this CPU has native bf16 instructions (AVX512-BF16 or AMX-BF16)."""
    capabilities = (query or CpuQuery()).capabilities()
    return any(bool(capabilities.get(feature)) for feature in NATIVE_BF16_FEATURES)


def choose_precision(
    requested: str,
    device: torch.device,
    query: CudaQuery | None = None,
    cpu: CpuQuery | None = None,
) -> torch.dtype | None:
    """The dtype for `requested` (auto, fp32, bf16, fp16) on `device`; None means fp32.

    `auto` is bf16 on a GPU that has it (compute capability 8.0 and newer), else fp16 on a GPU;
    on the CPU it is bf16 where the CPU computes bf16 natively (AVX512-BF16 or AMX) and fp32
    elsewhere. Either way a model is served in bf16 or fp16 only if it passes the agreement check
    at load (classifier/agreement.py); otherwise it falls back to fp32.
    """
    requested = (requested or "auto").strip().lower()
    if requested != "auto" and requested not in PRECISIONS:
        raise PrecisionError(
            f"Unknown precision {requested!r} (SEAFRONT_PRECISION): use auto, fp32, bf16 or fp16."
        )
    if device.type != "cuda":
        if requested == "auto":
            return torch.bfloat16 if cpu_computes_bf16(cpu) else None
        return PRECISIONS[requested]
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
