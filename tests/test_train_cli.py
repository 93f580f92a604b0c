"""train.py's command line: bad input ends in one sentence and exit status 2, never a traceback."""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import pytest
import torch.hub

import train
from formats.modelcard import ModelCard
from training.cli import (
    _print_result,
    build_parser,
    data_options,
    repeated_flags,
    serve_command,
)
from training.demo import write_digits
from training.fit import FitResult
from training.learner import FALLBACK_LR, choose_learning_rate
from training.promotion import Comparison

from .hostile import full_png_bomb

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


def png_bomb(tmp: Path) -> list[str]:
    data = two_classes(tmp / "data")
    (data / "1" / "bomb.png").write_bytes(full_png_bomb(13000))  # 169 MP in 46 KB
    return ["fit", "--data", str(data)]


def unknown_architecture(tmp: Path) -> list[str]:
    return ["fit", "--data", str(two_classes(tmp / "data")), "--arch", "resnet35"]


def lr_max_without_unfreezing(tmp: Path) -> list[str]:
    return ["fit", "--data", str(two_classes(tmp / "data")), "--lr-max", "1e-4:1e-3"]


def fit_two_classes(tmp: Path) -> list[str]:
    return ["fit", "--data", str(two_classes(tmp / "data"))]


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
    pytest.param(png_bomb, "over the app's limit of 50,000,000", id="169 MP PNG bomb"),
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
    pytest.param(
        lambda tmp: [*fit_two_classes(tmp), "--lr", "1e-3", "--lr-find-iterations", "30"],
        "give one of the two, not both",
        id="lr-find iterations with --lr",
    ),
    pytest.param(
        lambda tmp: [*fit_two_classes(tmp), "--lr-find-iterations", "5"],
        "--lr-find-iterations 5 is too few: try at least 20",
        id="too few lr-find iterations in fit",
    ),
    pytest.param(
        lambda tmp: ["promote", "--models", str(tmp / "models")],
        "nothing to promote",
        id="promote with no model set aside",
    ),
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
        ["fit", "--data", "d", "--augment", "heavy"],
        ["fit", "--data", "d", "--augment", "light", "--no-augment"],
        ["fit", "--data", "d", "--lr-find-iterations", "0"],
        ["fit", "--data", "d", "--force", "yes"],
        ["promote", "--force"],
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


@pytest.mark.parametrize(
    ("flags", "repeated"),
    [
        ([], []),
        (["--arch", "resnet18", "--size", "64"], ["--arch", "resnet18", "--size", "64"]),
        (["--size", "224", "--seed", "42"], []),  # the defaults need not be said
        (["--no-pretrained", "--no-augment"], ["--no-pretrained", "--augment", "none"]),
        (["--augment", "light", "--batch-size", "8"], ["--augment", "light", "--batch-size", "8"]),
        (
            ["--extra", "a b", "--extra", "c", "--labels", "d/cleaned.csv"],
            ["--labels", "d/cleaned.csv", "--extra", "a b", "--extra", "c"],
        ),
        (["--valid-pct", "0.3", "--workers", "0"], ["--valid-pct", "0.3", "--workers", "0"]),
        (["--reports", "out"], ["--reports", "out"]),
    ],
)
def test_lr_find_repeats_the_flags_that_differ_from_the_defaults(flags, repeated):
    args = build_parser().parse_args(["lr-find", "--data", "d", *flags])
    assert repeated_flags(args, *args.flag_parsers) == ["--data", "d", *repeated]


def test_the_printed_next_step_parses_to_the_same_data_options():
    args = build_parser().parse_args(
        ["lr-find", "--data", "my data", "--no-pretrained", "--arch", "resnet18", "--size", "64"]
    )
    command = shlex.join(["python", "train.py", "fit", *repeated_flags(args, *args.flag_parsers)])
    again = build_parser().parse_args(shlex.split(command)[2:])
    assert data_options(again) == data_options(args)


@pytest.mark.parametrize(
    ("models", "command"),
    [
        (ROOT / "models", "python application.py"),
        (Path("/srv/my models"), "python application.py --model '/srv/my models/export.pkl'"),
    ],
)
def test_the_next_step_serves_the_folder_the_model_went_to(models, command):
    assert serve_command(models) == command


@pytest.mark.parametrize(
    ("valley", "minimum", "lr", "words"),
    [
        (4e-4, 4e-3, 4e-3, "the larger of lr-find's valley 0.0004, minimum 0.004"),
        (1.6e-3, 2.4e-4, 1.6e-3, "the larger of lr-find's valley 0.0016, minimum 0.00024"),
        (5.4321e-4, 6.3e-8, 5.4e-4, "the larger of lr-find's valley 0.00054, minimum 6.3e-08"),
        (2e-6, 6.3e-8, FALLBACK_LR, "both too low to trust, so 0.001"),
        (math.nan, 2e-3, 2e-3, "the larger of lr-find's valley nan, minimum 0.002"),
        (math.nan, math.nan, FALLBACK_LR, "both too low to trust, so 0.001"),
    ],
)
def test_fit_takes_the_larger_of_valley_and_minimum(valley, minimum, lr, words):
    suggestions = {"minimum": minimum, "steep": 1e-6, "valley": valley, "slide": 1e-7}
    chosen, reason = choose_learning_rate(suggestions)
    assert chosen == lr and words in reason


def fit_result(tmp_path: Path, error_rate: float, guess: float) -> FitResult:
    """A run's result as fit_and_export returns it, nothing served before, for `_print_result`."""
    return FitResult(
        learner=None,
        card=ModelCard(
            error_rate=error_rate,
            accuracy=1 - error_rate,
            valid_count=3,
            reports={"confusion_matrix": "reports/confusion_matrix.png"},
        ),
        export_path=tmp_path / "models" / "export.pkl",
        card_path=tmp_path / "models" / "export.json",
        comparison=Comparison(new_error=error_rate, images=3, nothing_served=True),
        promoted=True,
        guess=("3", guess),
    )


@pytest.mark.parametrize(
    ("error_rate", "guess", "says"),
    [(0.667, 0.667, True), (0.70, 0.667, True), (0.65, 0.667, False), (0.1, 0.5, False)],
)
def test_only_a_model_no_better_than_guessing_says_it_learned_nothing(
    error_rate, guess, says, tmp_path, capsys
):
    _print_result(fit_result(tmp_path, error_rate, guess))
    assert ("this model learned nothing" in capsys.readouterr().out) == says


def test_learned_nothing_names_the_class_it_might_as_well_always_answer(tmp_path, capsys):
    _print_result(fit_result(tmp_path, 0.7, 0.667))
    out = capsys.readouterr().out
    assert "its validation error, 70.0%, is no better than always answering '3' (66.7%)" in out
    assert "--epochs" in out and "--lr" in out


def test_fit_help_gives_the_lr_find_iterations_fit_really_uses():
    from training import cli, learner

    assert cli.LR_FIND_ITERATIONS == learner.LR_FIND_ITERATIONS


def test_a_suggestion_fastai_cannot_compute_from_a_short_curve_is_nan():
    from fastai.callback.schedule import slide

    from training.learner import _or_nan

    lrs, losses = torch.logspace(-6, 0, 8), torch.linspace(2.0, 1.0, 8)
    with pytest.raises(IndexError):  # slide looks 15 batches back
        slide(lrs, losses, 30)
    rate, _ = _or_nan(slide)(lrs, losses, 30)
    assert math.isnan(rate) and _or_nan(slide).__name__ == "slide"
