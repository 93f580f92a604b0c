"""Device choice: CUDA only when a GPU is present and this torch build has kernels for it."""

from __future__ import annotations

import logging

import pytest

from classifier.device import build_supports, choose_device
from classifier.errors import DeviceError

from .support import H100, NO_GPU, TESLA_M60, TESLA_T4, TORCH_2_14_ARCHS, TWO_A10G, FakeCudaQuery


@pytest.mark.parametrize(
    ("requested", "gpus", "expected"),
    [
        ("auto", NO_GPU, "cpu"),
        ("auto", TESLA_M60, "cpu"),
        ("auto", TESLA_T4, "cuda:0"),
        ("auto", H100, "cuda:0"),
        ("cpu", H100, "cpu"),
        ("cuda", H100, "cuda:0"),
        ("cuda:1", TWO_A10G, "cuda:1"),
        ("CUDA", TESLA_T4, "cuda:0"),
    ],
)
def test_choose_device(requested, gpus, expected):
    assert str(choose_device(requested, FakeCudaQuery(gpus)).device) == expected


def test_old_gpu_falls_back_to_cpu_with_one_log_line_saying_why_and_what_to_install(caplog):
    choice = choose_device("auto", FakeCudaQuery(TESLA_M60))
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    line = caplog.records[0].getMessage()
    for words in ("Tesla M60", "5.2", "sm_75", "pip install torch=="):
        assert words in line
    assert choice.reason in line


def test_no_gpu_at_all_is_the_usual_case_an_info_line_not_a_warning(caplog):
    with caplog.at_level(logging.INFO, logger="classifier.device"):
        choose_device("auto", FakeCudaQuery(NO_GPU))
    assert [(record.levelname, record.getMessage()[:14]) for record in caplog.records] == [
        ("INFO", "Using the CPU:")
    ]


@pytest.mark.parametrize(
    ("requested", "gpus", "message"),
    [
        ("cuda", NO_GPU, "no CUDA GPU is visible"),
        ("cuda", TESLA_M60, "compute capability 5.2"),
        ("cuda:2", TWO_A10G, "there is no GPU 2"),
        ("cuda:x", H100, "Unknown device"),
        ("tpu", H100, "Unknown device"),
    ],
)
def test_unusable_device_request_is_a_clear_startup_error(requested, gpus, message):
    with pytest.raises(DeviceError, match=message):
        choose_device(requested, FakeCudaQuery(gpus))


@pytest.mark.parametrize(
    ("capability", "archs", "supported"),
    [
        ((5, 2), TORCH_2_14_ARCHS, False),
        ((7, 5), TORCH_2_14_ARCHS, True),
        ((8, 9), ["sm_80"], True),  # same major, newer minor runs sm_80 code
        ((9, 0), ["sm_80"], False),  # a newer major needs PTX
        ((12, 1), ["compute_120"], True),  # PTX is compiled for newer GPUs
        ((7, 0), ["compute_75"], False),  # but not for older ones
        ((9, 0), ["sm_90a"], True),
    ],
)
def test_build_supports(capability, archs, supported):
    assert build_supports(capability, archs) is supported
