"""Where training runs: one process or several (Hugging Face Accelerate), on the CPU or a GPU,
in fp32 or mixed precision.

`accelerate launch train.py fit ...` starts one train.py per process (per GPU, or N on a CPU)
with RANK and WORLD_SIZE set; each builds the same learner and trains inside fastai's
`learn.distrib_ctx()`, which wraps the model in DistributedDataParallel and gives every process
its share of each batch. Only the main process writes the export, the card and the reports.
Alone (`python train.py fit ...`) every function here does nothing special.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import fastai.callback.fp16  # noqa: F401 - adds Learner.to_fp16, to_bf16 and to_fp32
import torch
from fastai.learner import Learner
from fastai.torch_core import defaults, num_distrib, rank_distrib

from classifier.device import CudaQuery, choose_device
from training.errors import InputError

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16", "fp16")
Value = TypeVar("Value")


def process_count() -> int:
    """How many processes train together (WORLD_SIZE, which accelerate launch sets); 1 alone."""
    return max(1, num_distrib())


def is_main_process() -> bool:
    """True in the process that writes the results (rank 0), and when training alone."""
    return rank_distrib() == 0


def training_device(query: CudaQuery | None = None) -> torch.device:
    """The device this process trains on, chosen as the app chooses: a GPU torch can use, else
    the CPU; fastai is told, so that its DataLoaders and model go there.

    A GPU this torch build has no kernels for (the Tesla M60 of an AWS g3) would fail at the
    first batch; the app's rule skips it and says why (README, GPU server).
    """
    query = query or CudaQuery()
    count = query.device_count()
    # without any GPU there is nothing to say; choose_device explains an unusable one
    device = choose_device("auto", query).device if count else torch.device("cpu")
    defaults.use_cuda = device.type == "cuda"
    if device.type != "cuda":
        return device
    index = int(os.environ.get("LOCAL_RANK", 0)) if process_count() > 1 else 0
    if index >= count:
        raise InputError(
            f"accelerate launch started {process_count()} processes on this machine, but torch "
            f"sees {count} GPU(s): pass --num_processes {count} or fewer"
        )
    device = torch.device("cuda", index)
    torch.cuda.set_device(device)  # fastai's default_device() is the current one
    return device


def check_precision(precision: str, device: torch.device) -> None:
    """Fail with one sentence unless `device` can train in `precision` (fp32, bf16, fp16)."""
    if precision == "fp32":
        return
    if device.type != "cuda":
        raise InputError(
            f"--precision {precision} needs a CUDA GPU (fastai's mixed precision autocasts on "
            "CUDA only), and this process trains on the CPU: leave out --precision to train "
            "in fp32"
        )
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise InputError(
            f"--precision bf16 needs a GPU of compute capability 8.0 or newer, and {device} is "
            f"{torch.cuda.get_device_name(device)}: use --precision fp16"
        )


def use_precision(learn: Learner, precision: str) -> None:
    """Train `learn` in mixed precision (fastai's to_bf16/to_fp16); fp32 changes nothing.

    The weights stay float32 either way (autocast), so `learn.to_fp32()` after training leaves
    an export like any other.
    """
    if precision == "bf16":
        learn.to_bf16()
    elif precision == "fp16":
        learn.to_fp16()


def join_processes(device: torch.device) -> None:
    """Join the other processes' group (gloo on the CPU, nccl on GPUs); alone, nothing.

    Joined before any image is read: fastai gathers every loss across processes whenever
    WORLD_SIZE says there are several, and an lr-find before training needs the group too.
    """
    if process_count() == 1:
        return
    # only now: fastai.distributed imports accelerate, and adds Learner.distrib_ctx
    from accelerate import PartialState
    from fastai.distributed import DistributedDL

    # fastai 2.8's DistributedDL shares out each epoch's shuffled indices with `.cuda()`; with
    # the same call on the group's own device, CPU processes (gloo) train too
    DistributedDL._broadcast = _broadcast_on_the_groups_device
    state = PartialState(cpu=device.type == "cpu")
    log.info("process %d of %d, on %s", state.process_index + 1, state.num_processes, device)


@contextmanager
def on_its_own() -> Iterator[None]:
    """Run the block as if this process trained alone (WORLD_SIZE 1), before the group is
    joined: fastai then gathers nothing across processes and waits at no barrier.

    fit's lr-find runs so in every process: fastai's lr_find saves the weights in the main
    process only and then waits at a barrier to load them, which only the main one reaches.
    """
    saved = os.environ.get("WORLD_SIZE")
    os.environ["WORLD_SIZE"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("WORLD_SIZE", None)
        else:
            os.environ["WORLD_SIZE"] = saved


@contextmanager
def across_processes(learn: Learner) -> Iterator[Learner]:
    """Train `learn` with every process inside (fastai's `distrib_ctx`); alone, as it is.

    sync_bn=False keeps the model's BatchNorm layers as they are: gloo cannot run SyncBatchNorm
    on the CPU, and the export then holds the same modules as a one-process run, which serve
    and explain like any other. Each process normalises over its own share of a batch.
    """
    if process_count() == 1:
        yield learn
        return
    with learn.distrib_ctx(sync_bn=False, cpu=not defaults.use_cuda):
        yield learn


def same_on_every_process(value: Value) -> Value:
    """The main process's `value`, in every process (a learning rate chosen by lr-find, say)."""
    if process_count() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def continue_on_main_only() -> bool:
    """After training: True in the process that writes the results, which goes on alone.

    Every process waits for the others, leaves the group, and all but the main one stop. The
    main one then counts as the only process: fastai's `to_detach` gathers predictions across
    processes whenever WORLD_SIZE says there are several, and the others are gone.
    """
    if process_count() == 1:
        return True
    main = is_main_process()
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    os.environ["WORLD_SIZE"] = "1"
    return main


def _broadcast_on_the_groups_device(self, t: list[int], rank: int) -> list[int]:
    """DistributedDL._broadcast for any backend: fastai's moves the indices to CUDA for nccl,
    which gloo on a CPU cannot take."""
    on = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(t, dtype=torch.long, device=on)
    torch.distributed.broadcast(tensor, rank)
    return tensor.cpu().tolist()
