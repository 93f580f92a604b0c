"""`accelerate launch train.py fit ...`: one model trained by two CPU processes (gloo), written
once by the main process, served like any other; and --precision where it cannot run."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import types
from types import SimpleNamespace

import pytest
import torch

import train
from training.demo import write_digits
from training.distributed import training_device
from training.errors import InputError
from webapp import create_app

from .support import NO_GPU, ROOT, TESLA_M60, TWO_A10G, FakeCudaQuery, free_port

DIGITS = ("0", "1", "7")
PROCESSES = 2


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> SimpleNamespace:
    """One two-process `accelerate launch train.py fit` on 90 digits (tiny: 32 px, 3 epochs)."""
    folder = tmp_path_factory.mktemp("launched")
    write_digits(folder / "data", DIGITS, size=32, per_class=30)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # two processes on a small shared CPU: one thread each
        "HF_HOME": str(folder / "hf"),  # no accelerate config of this machine's user applies
    }
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        # accelerate's name for its torchrun launcher: N processes, here on the CPU (gloo)
        "--multi_gpu",
        "--num_processes",
        str(PROCESSES),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(ROOT / "train.py"),
        "fit",
        "--data",
        "data",
        *("--no-pretrained", "--arch", "resnet18", "--size", "32", "--epochs", "3"),
        *("--lr", "3e-3", "--batch-size", "16", "--workers", "0", "--no-augment"),
    ]
    result = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    return SimpleNamespace(
        result=result,
        models=folder / "models",
        card=json.loads((folder / "models" / "export.json").read_text())
        if result.returncode == 0
        else None,
        data=folder / "data",
    )


@pytest.mark.multiprocess
def test_two_processes_train_one_model_and_the_main_one_writes_it_once(launched):
    result = launched.result
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # the other process prints nothing of its own: one result, one set of paths
    assert result.stdout.count("validation accuracy") == 1
    assert result.stdout.count("model: ") == 1
    # the model, its card and example photos; nothing was served before, so nothing kept
    assert sorted(p.name for p in launched.models.iterdir()) == [
        "examples",
        "export.json",
        "export.pkl",
    ]
    assert launched.card["processes"] == PROCESSES and launched.card["precision"] == "fp32"
    assert launched.card["classes"] == list(DIGITS)
    assert launched.card["train_count"] + launched.card["valid_count"] == 90


@pytest.mark.multiprocess
def test_the_jointly_trained_model_learnt_something(launched):
    assert launched.card["accuracy"] > 0.5, launched.card  # chance is a third


@pytest.mark.multiprocess
def test_the_export_holds_no_trace_of_the_processes(launched):
    names = set()

    class RecordingUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            names.add(f"{module}.{name}")
            return super().find_class(module, name)

    recording = types.ModuleType("recording_pickle")
    recording.__dict__.update(pickle.__dict__)
    recording.Unpickler = RecordingUnpickler
    torch.load(launched.models / "export.pkl", pickle_module=recording, weights_only=False)
    assert not [n for n in names if n.startswith(("accelerate", "training", "__main__"))]
    assert not [n for n in names if "Distributed" in n or "SyncBatchNorm" in n]


@pytest.mark.multiprocess
def test_the_app_serves_and_explains_it_like_any_other(launched, tmp_path):
    app = create_app(
        {
            "MODEL_PATH": str(launched.models / "export.pkl"),
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
        }
    )
    try:
        client = app.test_client()
        image = sorted((launched.data / "7").iterdir())[0]
        photo = {"file": (io.BytesIO(image.read_bytes()), image.name)}
        answer = client.post("/api/predict", data=photo)
        assert answer.status_code == 200
        assert set(answer.get_json()["probabilities"]) == set(DIGITS)
        # resnet18 at 32 px ends in a 1x1 map: like any such model, no heat map but a sentence
        photo = {"file": (io.BytesIO(image.read_bytes()), image.name)}
        answer = client.post("/api/predict?explain=1", data=photo)
        assert answer.status_code == 501 and "1x1 grid" in answer.get_json()["error"]
    finally:
        app.extensions["seafront.model"].stop()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU can train in mixed precision")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_the_cpu_is_refused_in_one_sentence(precision, tmp_path, capsys):
    write_digits(tmp_path / "data", ("0", "1"), size=16, per_class=6)
    argv = ["fit", "--data", str(tmp_path / "data"), "--precision", precision]
    status = train.main([*argv, "--models", str(tmp_path / "models")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert f"--precision {precision} needs a CUDA GPU" in err
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("command", ["lr-find", "demo", "predict"])
def test_only_fit_runs_under_accelerate_launch(command, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", str(PROCESSES))
    argv = {"lr-find": ["lr-find", "--data", str(tmp_path)], "demo": ["demo"]}
    status = train.main(argv.get(command, [command, str(tmp_path)]))
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert f"only fit trains across processes, and {command} was started in 2" in err


@pytest.fixture
def fastai_device_defaults():
    """Put fastai's device default back after a test that chose a training device."""
    from fastai.torch_core import defaults

    saved = getattr(defaults, "use_cuda", None)
    yield
    defaults.use_cuda = saved


@pytest.mark.parametrize(("gpus", "said"), [(NO_GPU, ""), (TESLA_M60, "Tesla M60")])
def test_training_uses_the_cpu_where_torch_cannot_use_a_gpu(
    gpus, said, fastai_device_defaults, caplog
):
    from fastai.torch_core import defaults

    with caplog.at_level("WARNING"):
        assert training_device(FakeCudaQuery(gpus)) == torch.device("cpu")
    assert defaults.use_cuda is False  # fastai's DataLoaders and model stay on the CPU
    assert (said in caplog.text) if said else not caplog.text


def test_more_processes_than_gpus_end_in_one_sentence(monkeypatch, fastai_device_defaults):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(InputError, match="sees 2 GPU.*--num_processes 2 or fewer"):
        training_device(FakeCudaQuery(TWO_A10G))
