"""CPU threads for torch in each worker, so that the workers share the cores without fighting."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _cgroup_cpu_limit(cpu_max: Path = CGROUP_CPU_MAX) -> int | None:
    """The cores a cgroup v2 CPU quota allows (`docker run --cpus 2`), or None without one."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def available_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU quota.

    os.cpu_count() counts the host's cores, which oversubscribes a container or a `taskset`.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cpu_max)
    return min(cores, limit) if limit else cores


def torch_threads_for(workers: int, requested: int = 0, cores: int | None = None) -> int:
    """`requested` when set, else each worker's share of the cores (at least one)."""
    if requested > 0:
        return requested
    return max(1, (cores or available_cores()) // max(1, workers))


def configure_torch_threads(workers: int, requested: int = 0) -> int:
    """Set torch's intra-op threads for this worker; returns the number set.

    The inter-op pool is left alone: it only serves `torch.jit.fork`-style parallel graphs,
    which a plain forward pass never starts, and torch creates it lazily, so it costs nothing.
    """
    threads = torch_threads_for(workers, requested)
    torch.set_num_threads(threads)
    return threads
