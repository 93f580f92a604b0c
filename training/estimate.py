"""How long a training run will take: time its first batches, extrapolate, advise on a CPU.

fastai's progress bar estimates one epoch at a time; this estimates the whole run (lr-find,
every stage, the validation passes and the reports) once the first batches have been timed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastai.callback.core import Callback

# a batch that only runs forward (validation, predictions for the reports) costs about a third
# of a training step (forward, backward and the optimizer step)
FORWARD_SHARE = 1 / 3
# a step with every layer trainable, against one with the pretrained body frozen (fastai keeps
# the batch-norm layers trainable, so the backward pass still runs through the body, but skips
# the convolutions' weight gradients): resnet34 at 224 px, batches of 64, 2 threads on this
# project's CPU took 13.9 s against 11.2 s
UNFROZEN_COST = 1.25
# on a CPU, runs estimated above this many seconds get advice on faster settings
LONG_ON_CPU_S = 15 * 60
# the first batch pays for start-up (worker processes, memory, kernels): time the next few
WARMUP_BATCHES = 1
TIMED_BATCHES = 5
# the settings that advice suggests: the smallest resnet, and the size whose last feature map
# is still 4x4 (resnets downsample by 32), which Grad-CAM needs to show where the model looked
FAST_ARCH = "resnet18"
FAST_SIZE = 128


@dataclass
class RunPlan:
    """What a run will do, counted in batches."""

    lr_find_batches: int = 0  # at most: lr-find stops early when the loss diverges
    train_batches: int = 0  # training steps of the first (or only) stage
    unfrozen_batches: int = 0  # training steps with the pretrained body unfrozen
    forward_batches: int = 0  # validation and prediction batches

    def cost(self) -> float:
        """The run in units of one first-stage training step."""
        return (
            self.lr_find_batches
            + self.train_batches
            + self.unfrozen_batches * UNFROZEN_COST
            + self.forward_batches * FORWARD_SHARE
        )


@dataclass
class Faster:
    """Settings that would make the run faster, and roughly how much (a factor below 1)."""

    flags: list[str] = field(default_factory=list)
    factor: float = 1.0


def describe_duration(seconds: float) -> str:
    """`seconds` as a person says it: "40 s", "3 min", "1 h 5 min"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def operations(arch: str) -> float | None:
    """The architecture's multiply-adds per 224-pixel image (torchvision's table), if known."""
    from torchvision.models import get_model_weights

    try:
        return float(get_model_weights(arch).DEFAULT.meta["_ops"])
    except (KeyError, ValueError, AttributeError):
        return None


def faster_settings(arch: str, size: int) -> Faster:
    """A smaller architecture and image size than `arch` at `size`, scaled by operation count.

    Convolutions cost in proportion to the pixels and to the network's multiply-adds, so the
    factor is the ratio of both; the time of loading images shrinks less, so it is rough.
    """
    faster = Faster()
    current, fast = operations(arch), operations(FAST_ARCH)
    if current and fast and fast < current:
        faster.flags += ["--arch", FAST_ARCH]
        faster.factor *= fast / current
    if size > FAST_SIZE:
        faster.flags += ["--size", str(FAST_SIZE)]
        faster.factor *= (FAST_SIZE / size) ** 2
    return faster


def estimate_lines(
    seconds_per_batch: float, plan: RunPlan, on_cpu: bool, faster: Faster
) -> list[str]:
    """What to print once the first batches are timed: the estimate, and advice if it is long."""
    total = seconds_per_batch * plan.cost()
    where = "on the CPU" if on_cpu else "on the GPU"
    lines = [
        f"estimate: about {describe_duration(total)} in all {where} "
        f"({seconds_per_batch:.2g} s a batch)"
    ]
    if on_cpu and total > LONG_ON_CPU_S:
        advice = f"that is over {LONG_ON_CPU_S // 60} minutes on the CPU"
        if faster.flags:
            advice += (
                f": {' '.join(faster.flags)} would take roughly "
                f"{describe_duration(total * faster.factor)}"
            )
        lines.append(advice + "; a CUDA GPU is faster still (Ctrl+C stops this run)")
    return lines


class RunTimer(Callback):
    """Times the first training batches of the run it is added to and reports the estimate once.

    Add the same timer to every fit of a run (lr-find, then each stage): it reports after the
    first fit's first few batches and stays quiet after that. The median batch counts, so that
    one batch slowed by another job on a shared CPU does not skew it.
    """

    order = 99  # after the other callbacks' work on each batch

    def __init__(
        self,
        plan: RunPlan,
        on_cpu: bool,
        faster: Faster,
        report: Callable[[str], object] = print,
    ):
        self.plan, self.on_cpu, self.faster, self.report = plan, on_cpu, faster, report
        self.batches = 0
        self.last: float | None = None
        self.durations: list[float] = []
        self.seconds_per_batch: float | None = None

    def after_batch(self) -> None:
        """Time a training batch; once enough are timed, report."""
        if not self.training or self.seconds_per_batch is not None:
            return
        now = time.perf_counter()
        self.batches += 1
        if self.batches > WARMUP_BATCHES and self.last is not None:
            self.durations.append(now - self.last)
        self.last = now
        if len(self.durations) == TIMED_BATCHES:
            self.seconds_per_batch = statistics.median(self.durations)
            for line in estimate_lines(self.seconds_per_batch, self.plan, self.on_cpu, self.faster):
                self.report(line)
