"""How long a run will take: the words, the advice on a CPU, the faster settings it suggests."""

from __future__ import annotations

import pytest

from training.estimate import (
    FAST_SIZE,
    FORWARD_SHARE,
    LONG_ON_CPU_S,
    UNFROZEN_COST,
    RunPlan,
    describe_duration,
    estimate_lines,
    faster_settings,
)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.2, "1 s"),
        (40, "40 s"),
        (89, "89 s"),
        (150, "2 min"),  # 2.5 min rounds to even
        (59 * 60, "59 min"),
        (3600, "1 h"),
        (3600 + 5 * 60, "1 h 5 min"),
        (3 * 3600 + 59 * 60 + 50, "4 h"),
    ],
)
def test_durations_read_as_a_person_says_them(seconds, words):
    assert describe_duration(seconds) == words


@pytest.mark.parametrize(
    ("arch", "size", "flags"),
    [
        ("resnet34", 224, ["--arch", "resnet18", "--size", "128"]),
        ("resnet50", 128, ["--arch", "resnet18"]),
        ("resnet18", 224, ["--size", "128"]),
        ("resnet18", 64, []),
        ("squeezenet1_1", 64, []),  # already cheaper than resnet18
        ("not-a-torchvision-name", 160, ["--size", "128"]),  # no operation count: size only
    ],
)
def test_faster_settings_are_a_smaller_resnet_and_image(arch, size, flags):
    faster = faster_settings(arch, size)
    assert faster.flags == flags
    assert (faster.factor < 1) == bool(flags)


def test_resnet18_at_128_pixels_is_about_a_sixth_of_resnet34_at_224():
    # torchvision's operation counts: 1.814 and 3.664 GFLOPs at 224 px
    factor = faster_settings("resnet34", 224).factor
    assert factor == pytest.approx(1.814 / 3.664 * (FAST_SIZE / 224) ** 2)


def test_the_plan_counts_lr_find_training_and_forward_batches():
    plan = RunPlan(lr_find_batches=40, train_batches=30, unfrozen_batches=10, forward_batches=9)
    assert plan.cost() == pytest.approx(40 + 30 + 10 * UNFROZEN_COST + 9 * FORWARD_SHARE)


def test_a_short_run_gets_its_estimate_and_no_advice():
    lines = estimate_lines(1.5, RunPlan(train_batches=100), True, faster_settings("resnet34", 224))
    assert lines == ["estimate: about 2 min in all on the CPU (1.5 s a batch)"]


def test_a_long_cpu_run_is_told_so_with_faster_settings_and_their_estimate():
    plan = RunPlan(train_batches=100)
    seconds_per_batch = 2 * LONG_ON_CPU_S / 100  # 30 minutes
    faster = faster_settings("resnet34", 224)
    lines = estimate_lines(seconds_per_batch, plan, True, faster)
    assert lines[0] == "estimate: about 30 min in all on the CPU (18 s a batch)"
    assert lines[1].startswith("that is over 15 minutes on the CPU: --arch resnet18 --size 128")
    assert f"roughly {describe_duration(30 * 60 * faster.factor)}" in lines[1]
    assert "GPU" in lines[1]


def test_a_long_cpu_run_with_nothing_faster_to_suggest_is_still_told_so():
    lines = estimate_lines(20, RunPlan(train_batches=100), True, faster_settings("resnet18", 64))
    assert len(lines) == 2 and lines[1].startswith("that is over 15 minutes on the CPU;")


def test_a_long_gpu_run_gets_no_cpu_advice():
    lines = estimate_lines(20, RunPlan(train_batches=100), False, faster_settings("resnet34", 224))
    assert lines == ["estimate: about 33 min in all on the GPU (20 s a batch)"]
