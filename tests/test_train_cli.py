"""train.py's command line: bad input ends in one sentence and exit status 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import pytest
import torch.hub

import train
from training.demo import write_digits

ROOT = Path(__file__).resolve().parent.parent


def two_classes(root: Path, per_class: int = 6) -> Path:
    """A data folder with `per_class` 16-pixel digit PNGs in each of 0/ and 1/."""
    write_digits(root, ("0", "1"), size=16, per_class=per_class)
    return root


def missing_folder(tmp: Path) -> list[str]:
    return ["fit", "--data", str(tmp / "nowhere")]


def one_class(tmp: Path) -> list[str]:
    write_digits(tmp / "data", ("0",), size=16, per_class=6)
    return ["fit", "--data", str(tmp / "data")]


def no_class_folders(tmp: Path) -> list[str]:
    (tmp / "data").mkdir()
    return ["lr-find", "--data", str(tmp / "data")]


def too_few_images(tmp: Path) -> list[str]:
    data = two_classes(tmp / "data")
    for path in sorted((data / "1").iterdir())[2:]:
        path.unlink()
    return ["fit", "--data", str(data)]


def broken_image(tmp: Path) -> list[str]:
    data = two_classes(tmp / "data")
    (data / "1" / "broken.jpg").write_bytes(b"not a picture")
    return ["fit", "--data", str(data)]


def unknown_architecture(tmp: Path) -> list[str]:
    return ["fit", "--data", str(two_classes(tmp / "data")), "--arch", "resnet35"]


def lr_max_without_unfreezing(tmp: Path) -> list[str]:
    return ["fit", "--data", str(two_classes(tmp / "data")), "--lr-max", "1e-4:1e-3"]


def url_file(tmp: Path, text: str | bytes) -> list[str]:
    path = tmp / "mods.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return ["download", str(path), "--dest", str(tmp / "data")]


def labels(tmp: Path, text: str | None) -> list[str]:
    data = two_classes(tmp / "data")
    if text is not None:
        (data / "cleaned.csv").write_text(text)
    return ["fit", "--data", str(data), "--labels", str(data / "cleaned.csv")]


def extra_with_unknown_class(tmp: Path) -> list[str]:
    write_digits(tmp / "feedback", ("7",), size=16, per_class=1)
    return ["fit", "--data", str(two_classes(tmp / "data")), "--extra", str(tmp / "feedback")]


def missing_extra(tmp: Path) -> list[str]:
    return ["fit", "--data", str(two_classes(tmp / "data")), "--extra", str(tmp / "feedback")]


BAD_INPUTS = [
    pytest.param(missing_folder, "data folder", id="missing data folder"),
    pytest.param(one_class, "found 1 class", id="one class"),
    pytest.param(no_class_folders, "found 0 class", id="no class folders"),
    pytest.param(too_few_images, "too few to split", id="class with too few images"),
    pytest.param(broken_image, "cannot be opened", id="image that does not open"),
    pytest.param(unknown_architecture, "unknown architecture", id="unknown architecture"),
    pytest.param(lr_max_without_unfreezing, "--unfreeze-epochs", id="lr-max alone"),
    pytest.param(
        lambda tmp: ["lr-find", "--data", str(tmp), "--iterations", "5"],
        "at least 20",
        id="too few lr-find iterations",
    ),
    pytest.param(
        lambda tmp: ["download", str(tmp / "mods.csv")], "not found", id="missing URL file"
    ),
    pytest.param(lambda tmp: url_file(tmp, ""), "holds no URLs", id="empty URL file"),
    pytest.param(lambda tmp: url_file(tmp, "\n  \n"), "holds no URLs", id="blank URL file"),
    pytest.param(
        lambda tmp: url_file(tmp, "http://a.example/1.jpg\nmods, rockers\n"),
        "line 2 is not an http(s) URL",
        id="malformed URL file",
    ),
    pytest.param(
        lambda tmp: url_file(tmp, b"\xff\xd8\xff\xe0 a JPEG"),
        "not a text file",
        id="binary URL file",
    ),
    pytest.param(lambda tmp: labels(tmp, None), "labels file", id="missing labels file"),
    pytest.param(lambda tmp: labels(tmp, ""), "no fname,label header", id="empty labels file"),
    pytest.param(
        lambda tmp: labels(tmp, "file,class\n0/0000.png,0\n"),
        "no fname,label header",
        id="labels file with other columns",
    ),
    pytest.param(
        lambda tmp: labels(tmp, "fname,label\n"), "lists no images", id="labels file without rows"
    ),
    pytest.param(
        lambda tmp: labels(tmp, "fname,label\n0/0000.png,0\n0/0010.png\n"),
        "line 3 lacks a fname or a label",
        id="labels row without label",
    ),
    pytest.param(
        lambda tmp: labels(tmp, "fname,label\n0/0000.png,0\n1/gone.png,1\n"),
        "1/gone.png",
        id="labels pointing at missing files",
    ),
    pytest.param(
        extra_with_unknown_class,
        "is not one of the classes",
        id="extra folder with an unknown class",
    ),
    pytest.param(missing_extra, "extra folder", id="missing extra folder"),
]


@pytest.mark.parametrize(("make_argv", "message"), BAD_INPUTS)
def test_bad_input_ends_in_one_sentence_and_exit_status_2(
    make_argv, message, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    status = train.main(make_argv(tmp_path))
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "--data", "d", "--valid-pct", "1.5"],
        ["fit", "--data", "d", "--epochs", "0"],
        ["fit", "--data", "d", "--lr-max", "1e-3"],
        ["fit", "--data", "d", "--lr-max", "1e-3:1e-4"],
        ["fit"],
        ["download"],
    ],
    ids=" ".join,
)
def test_malformed_options_exit_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_missing_pretrained_weights_name_no_pretrained_and_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise URLError("no internet")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    data = two_classes(tmp_path / "data")
    status = train.main(
        ["fit", "--data", str(data), "--arch", "resnet18", "--models", str(tmp_path / "models")]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1
    assert "--no-pretrained" in err
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in err
    assert "resnet18-" in err  # the weights file to place there


def test_train_py_offline_run_exits_2_with_one_sentence(tmp_path):
    """A real `python train.py fit` with the weights server unreachable (a closed local port)."""
    data = two_classes(tmp_path / "data")
    proxy_free = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env = {
        **proxy_free,
        "TORCH_HOME": str(tmp_path / "torch"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "fit",
            "--data",
            str(data),
            "--models",
            str(tmp_path / "models"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: could not download the pretrained resnet34 weights")
    assert "--no-pretrained" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()


def test_review_without_a_fit_report_exits_2_with_one_sentence(tmp_path, capsys):
    data = two_classes(tmp_path / "data")
    status = train.main(["review", "--data", str(data), "--reports", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "top_losses.csv not found" in err


def test_review_starts_the_review_page_on_the_data_and_reports(monkeypatch, tmp_path):
    calls = []
    import training.review

    monkeypatch.setattr(training.review, "serve", lambda *args: calls.append(args))
    status = train.main(["review", "--data", str(tmp_path), "--reports", "out", "--port", "5099"])
    assert status == 0
    assert calls == [(tmp_path, Path("out"), 5099)]
