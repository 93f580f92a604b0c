"""Choose the torch device: CUDA only when a GPU is present and torch has kernels for it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .errors import DeviceError

log = logging.getLogger(__name__)

OLD_GPU_ADVICE = (
    "To use this GPU, install a torch build that still ships kernels for it, for example "
    "a CUDA 11.8 build (`pip install torch==2.7.1 torchvision==0.22.1 --index-url "
    "https://download.pytorch.org/whl/cu118`), in a separate environment"
)


@dataclass(frozen=True)
class DeviceChoice:
    """The device to run on and, when it is not the one asked for, why."""

    device: torch.device
    reason: str = ""


class CudaQuery:
    """What torch can tell about the GPUs; a separate object so that tests can fake it."""

    def device_count(self) -> int:
        """Number of CUDA devices visible to this process (0 without a driver)."""
        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def name(self, index: int) -> str:
        """Marketing name of a GPU, e.g. `Tesla M60`."""
        return torch.cuda.get_device_name(index)

    def capability(self, index: int) -> tuple[int, int]:
        """Compute capability of a GPU, e.g. (5, 2)."""
        return torch.cuda.get_device_capability(index)

    def arch_list(self) -> list[str]:
        """Architectures this torch build has kernels for, e.g. ['sm_75', 'compute_120']."""
        return torch.cuda.get_arch_list()


def build_supports(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """True when a build with `arch_list` runs on a GPU of `capability`.

    Compiled kernels (sm_XY) run on the same major version with an equal or higher minor;
    PTX (compute_XY) is compiled on the fly for any equal or newer GPU.
    """
    major, minor = capability
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        if not digits.rstrip("a").isdigit():
            continue
        number = int(digits.rstrip("a"))
        arch_major, arch_minor = divmod(number, 10)
        if kind == "sm" and arch_major == major and arch_minor <= minor:
            return True
        if kind == "compute" and (arch_major, arch_minor) <= (major, minor):
            return True
    return False


def _unusable_reason(query: CudaQuery, index: int) -> str:
    """Why GPU `index` cannot be used by this torch build, or '' when it can."""
    capability = query.capability(index)
    arch_list = query.arch_list()
    if build_supports(capability, arch_list):
        return ""
    major, minor = capability
    return (
        f"GPU {index} ({query.name(index)}) has compute capability {major}.{minor}, but this torch "
        f"{torch.__version__} build only has kernels for {', '.join(arch_list) or 'no GPU'}. "
        f"{OLD_GPU_ADVICE}"
    )


def choose_device(requested: str = "auto", query: CudaQuery | None = None) -> DeviceChoice:
    """Resolve `auto`, `cpu`, `cuda` or `cuda:N` to a usable device, or raise DeviceError."""
    query = query or CudaQuery()
    requested = (requested or "auto").strip().lower()
    if requested == "cpu":
        return DeviceChoice(torch.device("cpu"))
    if requested not in ("auto", "cuda") and not requested.startswith("cuda:"):
        raise DeviceError(f"Unknown device {requested!r}: use auto, cpu, cuda or cuda:N.")
    index = 0
    if requested.startswith("cuda:"):
        suffix = requested.removeprefix("cuda:")
        if not suffix.isdigit():
            raise DeviceError(f"Unknown device {requested!r}: use auto, cpu, cuda or cuda:N.")
        index = int(suffix)

    count = query.device_count()
    if count == 0:
        reason = "no CUDA GPU is visible to torch (no GPU, or no NVIDIA driver)"
        if requested == "auto":
            # the usual case on a laptop or a small server, where the README says no GPU is
            # needed: worth a line in the log, not a warning
            log.info("Using the CPU: %s", reason)
            return DeviceChoice(torch.device("cpu"), reason)
    elif index >= count:
        reason = f"there is no GPU {index}: torch sees {count} GPU(s)"
    else:
        reason = _unusable_reason(query, index)
        if not reason:
            return DeviceChoice(torch.device(f"cuda:{index}"))

    if requested == "auto":
        log.warning("Using the CPU: %s", reason)
        return DeviceChoice(torch.device("cpu"), reason)
    raise DeviceError(f"Cannot use --device {requested}: {reason}. Use --device auto or cpu.")
