"""Train an image classifier from URL lists or class folders: fast.ai lesson 2 as a command line.

    python train.py download mods.csv rockers.csv --dest data/brighton_seafront
    python train.py lr-find --data data/brighton_seafront
    python train.py fit --data data/brighton_seafront
    python train.py review --data data/brighton_seafront
    python train.py fit --data data/brighton_seafront --labels data/brighton_seafront/cleaned.csv
    python train.py demo

Bad input ends in one sentence on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from training.errors import InputError

NOT_SURE = "not sure"  # training/predict.py's folder for unsure files (a test keeps them equal)

if TYPE_CHECKING:
    from training.fit import DataOptions, FitResult
    from training.predict import Summary
    from training.shards import Shard

ROOT = Path(__file__).resolve().parent.parent  # the app's own folder: it serves models/ there
# fastai's suggestions leave out the first tenth and the last five batches
FEWEST_LR_FIND_ITERATIONS = 20
LR_FIND_ITERATIONS = 30  # fit's own lr-find: training/learner.py's, said here for --help
# the app's upload limit (SEAFRONT_MAX_CONTENT_LENGTH's default; a test keeps them equal): a
# photo the app would refuse is no use for training, and a real photo is well under it
DOWNLOAD_MAX_BYTES = 20 * 1024 * 1024
# the demo: 128 pixels leave resnet18 (which downsamples by 32) a 4x4 feature map for Grad-CAM
DEMO_SIZE = 128
DEMO_PER_CLASS = 100
DEMO_LR = 3e-3

# the fast, pure-Python parts load here; fastai and torch load inside the handlers so that
# `--help` and argument errors answer at once

# torch's OpenMP threads spin while they wait; on a CPU shared with other jobs that spinning
# made training 5x slower here (lr-find: 128 s instead of 24 s). Sleeping waiters cost little
# when the CPU is free. Read once, when torch loads; set the variable yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of at least 1")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of at least 0")
    return value


def byte_size(text: str) -> int:
    """An argparse type: a number of bytes, plain or with KB or MB (1024-based), e.g. 20MB."""
    match = re.fullmatch(r"(\d+)\s*([KM]?)B?", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"{text} is not a size in bytes, e.g. 20MB")
    value = int(match[1]) * {"": 1, "K": 1024, "M": 1024 * 1024}[match[2]]
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a size of at least 1 byte, e.g. 20MB")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds, e.g. 4")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1, e.g. 0.2")
    return value


def learning_rate(text: str) -> float:
    """An argparse type: a positive learning rate such as 2e-3."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive learning rate, e.g. 2e-3")
    return value


def learning_rate_range(text: str) -> tuple[float, float]:
    """An argparse type: `LO:HI`, the learning rates of the first and last layer groups."""
    low, colon, high = text.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError(f"{text} is not LO:HI, e.g. 1e-4:1e-3")
    low_value, high_value = learning_rate(low), learning_rate(high)
    if low_value > high_value:
        raise argparse.ArgumentTypeError(f"{text}: LO must not exceed HI, e.g. 1e-4:1e-3")
    return low_value, high_value


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per step of the notebook."""
    parser = argparse.ArgumentParser(
        prog="train.py",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = argparse.ArgumentParser(add_help=False)
    models.add_argument(
        "--models",
        type=Path,
        default=Path("models"),
        metavar="DIR",
        help="where export.pkl and export.json go (default: models)",
    )
    reports = argparse.ArgumentParser(add_help=False)
    reports.add_argument(
        "--reports",
        type=Path,
        default=Path("reports"),
        metavar="DIR",
        help="where the plots and top_losses.csv go (default: reports)",
    )
    data = _data_options()

    download = commands.add_parser(
        "download",
        help="download the images in one URL file per class",
        description="Download each URL file's images into DEST/<file stem>/, resuming "
        "where an earlier run stopped, then remove the images that do not open or have more "
        "pixels than the app accepts (SEAFRONT_MAX_PIXELS). Only http(s) redirects are "
        "followed, at most 5.",
    )
    download.add_argument(
        "url_files",
        nargs="+",
        type=Path,
        metavar="URLFILE",
        help="text file with one image URL per line; its stem names the class",
    )
    download.add_argument(
        "--dest",
        type=Path,
        default=Path("data/brighton_seafront"),
        metavar="DIR",
        help="data folder (default: data/brighton_seafront)",
    )
    download.add_argument(
        "--max-pics",
        type=positive_int,
        default=200,
        metavar="N",
        help="at most N URLs from each file (default: 200)",
    )
    download.add_argument(
        "--timeout",
        type=positive_seconds,
        default=4,
        metavar="SECONDS",
        help="give up on one URL when it is not done after this long, from connecting to the "
        "last byte, redirects included (default: 4)",
    )
    download.add_argument(
        "--max-bytes",
        type=byte_size,
        default=DOWNLOAD_MAX_BYTES,
        metavar="SIZE",
        help="give up on one URL whose image is larger than this, e.g. 20MB or 500KB "
        "(default: 20MB, the app's upload limit)",
    )
    download.set_defaults(handler=run_download)

    lr_find = commands.add_parser(
        "lr-find",
        parents=[data, reports],
        help="plot loss against learning rate",
        description="Run fastai's learning-rate finder and write REPORTS/lr_find.png.",
    )
    lr_find.add_argument(
        "--iterations",
        type=positive_int,
        default=100,
        metavar="N",
        help="batches to try, each at a higher rate (default: 100, fastai's)",
    )
    lr_find.set_defaults(handler=run_lr_find, flag_parsers=[data, reports])

    fit = commands.add_parser(
        "fit",
        parents=[data, models, reports],
        help="train and export models/export.pkl",
        description="Train with fit_one_cycle, then export the model, its card and reports.",
    )
    fit.add_argument(
        "--epochs",
        type=positive_int,
        metavar="N",
        help="epochs of the first stage: the pretrained body frozen, or every layer from "
        "scratch (default: 4 pretrained, 8 from scratch)",
    )
    fit.add_argument(
        "--lr",
        type=learning_rate,
        help="peak learning rate of that stage (default: run lr-find first and take its "
        "valley or minimum suggestion, whichever is larger)",
    )
    fit.add_argument(
        "--lr-find-iterations",
        type=positive_int,
        metavar="N",
        help=f"batches the lr-find of a run without --lr tries (default: {LR_FIND_ITERATIONS})",
    )
    fit.add_argument(
        "--unfreeze-epochs",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="then N epochs with every layer trainable (default: 0, none)",
    )
    fit.add_argument(
        "--lr-max",
        type=learning_rate_range,
        metavar="LO:HI",
        help="learning rates of the first and last layers when unfrozen "
        "(default: LR/200:LR/2, as fine_tune)",
    )
    fit.add_argument("--name", help="the model's name on its card (default: the data folder's)")
    fit.add_argument(
        "--force",
        action="store_true",
        help="serve the new model even when it does worse than the served one on the same "
        "validation images (default: keep serving the better one)",
    )
    fit.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="bf16 or fp16: mixed precision on a GPU, faster and lighter (default: fp32)",
    )
    fit.set_defaults(handler=run_fit)

    promote = commands.add_parser(
        "promote",
        parents=[models],
        help="serve the model that fit set aside as worse",
        description="Serve MODELS/candidate/export.pkl, the model fit did not promote because "
        "the served one did better; the served one moves to MODELS/previous/.",
    )
    promote.set_defaults(handler=run_promote)

    demo = commands.add_parser(
        "demo",
        parents=[models, reports],
        help="train a digits classifier, no download needed",
        description="Write scikit-learn's handwritten 0, 1 and 7 as class folders and train a "
        "small classifier on them, so the app has a real model to serve at once.",
    )
    demo.add_argument(
        "--data",
        type=Path,
        default=Path("data/digits_demo"),
        metavar="DIR",
        help="where the digit images go (default: data/digits_demo)",
    )
    demo.add_argument(
        "--epochs", type=positive_int, default=5, metavar="N", help="training epochs (default: 5)"
    )
    demo.set_defaults(handler=run_demo)

    _add_predict(commands)

    review = commands.add_parser(
        "review",
        parents=[reports],
        help="review and relabel images in the browser",
        description="Serve a local page that shows the top losses and writes DIR/cleaned.csv.",
    )
    review.add_argument("--data", type=Path, required=True, metavar="DIR", help="data folder")
    review.add_argument("--port", type=int, default=5001, help="port on 127.0.0.1 (default 5001)")
    review.set_defaults(handler=run_review)
    return parser


def _add_predict(commands) -> None:
    """`predict`: classify files with an export, the app's way, into a CSV."""
    predict = commands.add_parser(
        "predict",
        help="classify a folder or files with an exported model into a CSV",
        description="Classify every image under each FOLDER (and each FILE) with an exported "
        "model, the way the app does (its decoding, the learner's transforms, batches), into a "
        "CSV: file, label, confidence, each class's probability, and the reason a file could "
        "not be classified. Run the same command again to go on after an interruption. "
        "SEAFRONT_* settings apply as they do to the app.",
    )
    predict.add_argument(
        "paths", nargs="*", type=Path, metavar="FOLDER|FILE", help="what to classify"
    )
    predict.add_argument(
        "--files-from",
        type=Path,
        metavar="LIST",
        help="a text file naming more files, one a line (- reads standard input)",
    )
    predict.add_argument(
        "--model",
        type=Path,
        default=Path(os.environ.get("SEAFRONT_MODEL_PATH", "models/export.pkl")),
        metavar="PKL",
        help="the export to classify with (default: models/export.pkl, or SEAFRONT_MODEL_PATH)",
    )
    predict.add_argument(
        "--out",
        type=Path,
        metavar="CSV",
        help="the predictions file, written as it goes and continued when it exists "
        "(default: predictions.csv; with --shard I/N, predictions.shard-I-of-N.csv)",
    )
    predict.add_argument(
        "--sort-into",
        type=Path,
        metavar="DIR",
        help="also put each file into DIR/<label>/ (a hard link, or a copy across file systems)",
    )
    predict.add_argument(
        "--copy", action="store_true", help="with --sort-into: copy the files instead of linking"
    )
    predict.add_argument(
        "--min-confidence",
        metavar="P",
        help=f'with --sort-into: files predicted less surely than P (0-1) go into "DIR/'
        f'{NOT_SURE}/" (default: 0, none)',
    )
    predict.add_argument(
        "--shard",
        metavar="I/N",
        help="classify only share I (0 to N-1) of N, chosen by a hash of each file's name, so "
        "that N jobs split the files without talking to each other",
    )
    predict.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help="images per forward pass (default: SEAFRONT_MAX_BATCH_SIZE, 8)",
    )
    predict.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="files read and decoded at once (default: twice the batch size)",
    )
    predict.add_argument(
        "--device",
        help="auto, cpu, cuda or cuda:N (default: SEAFRONT_DEVICE, auto)",
    )
    predict.set_defaults(handler=run_predict)


def _data_options() -> argparse.ArgumentParser:
    """Options shared by lr-find and fit: which images, and how the network sees them."""
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="DIR",
        help="data folder with one subfolder of images per class",
    )
    data.add_argument(
        "--labels",
        type=Path,
        metavar="CSV",
        help="labels file (fname,label; fname relative to DIR), e.g. DIR/cleaned.csv",
    )
    data.add_argument(
        "--extra",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="more class folders for training only, e.g. uploads/feedback (repeatable)",
    )
    data.add_argument(
        "--arch",
        default="resnet34",
        help="torchvision or timm architecture (default: resnet34; also resnet18, resnet50, "
        "convnext_tiny, efficientnet_b0, ...; timm/NAME for timm's where both have NAME)",
    )
    data.add_argument(
        "--size",
        type=positive_int,
        default=224,
        metavar="PX",
        help="image size in pixels (default: 224)",
    )
    data.add_argument(
        "--valid-pct",
        type=fraction,
        default=0.2,
        metavar="SHARE",
        help="share of images held out for validation (default: 0.2)",
    )
    data.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    data.add_argument(
        "--no-pretrained",
        dest="pretrained",
        action="store_false",
        help="start from random weights instead of downloading ImageNet ones",
    )
    augment = data.add_mutually_exclusive_group()
    augment.add_argument(
        "--augment",
        choices=("standard", "light", "none"),
        help="standard: the lesson's random crops, flips, rotation, zoom, lighting and warp; "
        "light: rotation, zoom and lighting only; none (default: standard pretrained, light "
        "from scratch)",
    )
    augment.add_argument(
        "--no-augment",
        dest="augment",
        action="store_const",
        const="none",
        help="the same as --augment none",
    )
    data.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help="images per batch (default: 64 pretrained, 32 from scratch)",
    )
    data.add_argument(
        "--workers",
        type=non_negative_int,
        metavar="N",
        help="data-loading processes (default: fastai's, one per CPU)",
    )
    return data


def data_options(args: argparse.Namespace) -> DataOptions:
    """The `DataOptions` that `args` ask for."""
    from training.fit import DataOptions
    from training.learner import architecture

    architecture(args.arch)  # an unknown name stops here, before any image is read
    return DataOptions(
        data=args.data,
        labels=args.labels,
        extra=args.extra,
        arch=args.arch,
        size=args.size,
        valid_pct=args.valid_pct,
        seed=args.seed,
        pretrained=args.pretrained,
        batch_size=args.batch_size,
        workers=args.workers,
        augment=args.augment,
    )


def run_download(args: argparse.Namespace) -> int:
    """`download`: fetch every URL file's images into its class folder and tabulate."""
    from training.download import (
        download_classes,
        format_counts,
        format_problems,
        read_url_files,
    )
    from training.verify import app_max_pixels

    urls_by_class = read_url_files(args.url_files, args.max_pics)
    counts = download_classes(
        urls_by_class,
        args.dest,
        timeout=args.timeout,
        max_bytes=args.max_bytes,
        max_pixels=app_max_pixels(),
    )
    print(format_counts(counts))
    problems = format_problems(counts)
    if problems:
        print(problems)
    if not any(c.downloaded + c.already_there - c.removed_as_broken for c in counts.values()):
        print(
            f"no images ended up in {args.dest}: check the URLs and your internet "
            "connection, then run the same command again",
            file=sys.stderr,
        )
        return 1
    print(f"next: python train.py lr-find --data {args.dest}")
    return 0


def run_lr_find(args: argparse.Namespace) -> int:
    """`lr-find`: plot loss against learning rate and print fastai's suggestions."""
    from training.fit import lr_find
    from training.learner import choose_learning_rate

    if args.iterations < FEWEST_LR_FIND_ITERATIONS:
        raise InputError(
            f"--iterations {args.iterations} is too few: try at least {FEWEST_LR_FIND_ITERATIONS}"
        )
    suggestions, plot = lr_find(data_options(args), args.reports, args.iterations, say)
    print(
        "suggested learning rates: "
        + ", ".join(f"{name} {value:.1e}" for name, value in suggestions.items())
    )
    lr, choice = choose_learning_rate(suggestions)
    same = shlex.join(["python", "train.py", "fit", *repeated_flags(args, *args.flag_parsers)])
    print(f"plot: {plot}; fit without --lr picks {lr:.2g} ({choice}). To train with it:")
    print(f"next: {same} --lr {lr:.2g}")
    return 0


def repeated_flags(args: argparse.Namespace, *parsers: argparse.ArgumentParser) -> list[str]:
    """The options of `parsers` that `args` sets to something other than their defaults,
    written as they would be typed, so that a printed next step trains the same thing."""
    words: list[str] = []
    done = set()
    for parser in parsers:
        for action in parser._actions:
            value = getattr(args, action.dest, action.default)
            if not action.option_strings or action.dest in done or value == action.default:
                continue
            done.add(action.dest)
            flag = action.option_strings[-1]
            if action.nargs == 0:  # --no-pretrained, --force: the flag is the value
                words.append(flag)
            elif isinstance(value, list):  # --extra, given once per folder
                words += [part for item in value for part in (flag, str(item))]
            else:
                words += [flag, str(value)]
    return words


def run_fit(args: argparse.Namespace) -> int:
    """`fit`: train, export the model with its card, and write the reports."""
    from training.fit import FitOptions, fit_and_export

    if args.lr_max and not args.unfreeze_epochs:
        raise InputError("--lr-max sets the unfreeze stage's rates: add --unfreeze-epochs N")
    if args.lr_find_iterations is not None:
        if args.lr is not None:
            raise InputError(
                "--lr-find-iterations sets the lr-find that picks the rate when --lr is left "
                "out: give one of the two, not both"
            )
        if args.lr_find_iterations < FEWEST_LR_FIND_ITERATIONS:
            raise InputError(
                f"--lr-find-iterations {args.lr_find_iterations} is too few: try at least "
                f"{FEWEST_LR_FIND_ITERATIONS}"
            )
    options = data_options(args)
    fit = FitOptions(
        models=args.models,
        reports=args.reports,
        epochs=args.epochs,
        lr=args.lr,
        unfreeze_epochs=args.unfreeze_epochs,
        lr_max=args.lr_max,
        name=args.name,
        force=args.force,
        command=args.command_line,
        report=say,
        precision=args.precision,
    )
    if args.lr_find_iterations is not None:
        fit.lr_find_iterations = args.lr_find_iterations
    result = fit_and_export(options, fit)
    if result is not None:  # None: another process than the main one of accelerate launch
        _print_result(result)
    return 0


def run_promote(args: argparse.Namespace) -> int:
    """`promote`: serve the model that `fit` set aside, keeping the served one as previous."""
    from training.promotion import PREVIOUS, candidate_path, promote, served_path

    if not candidate_path(args.models).is_file():
        raise InputError(
            f"no model waits in {candidate_path(args.models).parent}: fit leaves one there "
            "only when the served model did better, so there is nothing to promote"
        )
    replaced = promote(args.models)
    kept = f"; the one it replaced is in {args.models / PREVIOUS}" if replaced else ""
    print(f"serving {served_path(args.models)}{kept}")
    print(f"next: {serve_command(args.models)}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """`demo`: write the bundled digits out as class folders and train a small model on them."""
    from training.demo import DEMO_DIGITS, write_digits
    from training.fit import DataOptions, FitOptions, fit_and_export

    started = time.monotonic()
    count = write_digits(args.data, DEMO_DIGITS, size=DEMO_SIZE, per_class=DEMO_PER_CLASS)
    print(f"wrote {count} digit images to {args.data}")
    # small and from scratch: digits need neither ImageNet weights nor a big net, and no
    # augmentation (a flipped 7 is not a 7); 128 pixels leave resnet18 a 4x4 feature map,
    # enough for "Why?" to show where it looked. A known rate: no lr-find, to stay near a minute
    options = DataOptions(
        data=args.data,
        arch="resnet18",
        size=DEMO_SIZE,
        pretrained=False,
        augment="none",
        batch_size=32,
        workers=0,
    )
    fit = FitOptions(
        models=args.models,
        reports=args.reports,
        epochs=args.epochs,
        lr=DEMO_LR,
        name="digits demo",
        demo=True,
        command=args.command_line,
        report=say,
    )
    result = fit_and_export(options, fit)
    assert result is not None  # one process: main() refuses accelerate launch for demo
    _print_result(result)
    print(f"demo trained in {time.monotonic() - started:.0f} s")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """`predict`: classify the files into a CSV, optionally sorted into folders by label."""
    from training.shards import Shard

    shard = Shard.parse(args.shard) if args.shard else Shard()
    min_confidence = _min_confidence(args)
    out = args.out or Path(f"predictions{shard.suffix()}.csv")
    if out.is_dir():
        raise InputError(
            f"--out {out} is a folder: name the CSV file to write, e.g. {out}/predictions.csv"
        )
    if args.copy and args.sort_into is None:
        raise InputError("--copy says how --sort-into sorts: add --sort-into DIR")
    if args.sort_into is not None and args.sort_into.exists() and not args.sort_into.is_dir():
        raise InputError(f"--sort-into {args.sort_into} is a file: name a folder to sort into")

    from training.predict import app_config, list_files, predict, start_service

    items = list_files(args.paths, args.files_from, skip=args.sort_into)
    device = args.device or os.environ.get("SEAFRONT_DEVICE") or _quiet_auto_device()
    config = app_config(
        MODEL_PATH=args.model,
        DEVICE=device,
        MAX_BATCH_SIZE=args.batch_size,
        MODEL_RELOAD_INTERVAL=0,  # one model for the whole run
    )
    service = start_service(config)
    threads = args.threads or 2 * service.settings.max_batch_size
    sorting = (args.sort_into, min_confidence, args.copy) if args.sort_into else None
    try:
        summary = predict(items, out, service, shard, sorting, threads)
    except KeyboardInterrupt:
        print(
            f"interrupted: {out} keeps every file finished so far; run the same command again "
            "to go on",
            file=sys.stderr,
        )
        return 130
    finally:
        service.stop()
    _print_predictions(summary, out, args.sort_into, shard)
    return 0


def _min_confidence(args: argparse.Namespace) -> float:
    """--min-confidence as a number from 0 to 1 (0 without it); InputError for misuse."""
    if args.min_confidence is None:
        return 0.0
    if args.sort_into is None:
        raise InputError(
            f'--min-confidence sorts unsure files into "DIR/{NOT_SURE}/": add --sort-into DIR'
        )
    try:
        value = float(args.min_confidence)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise InputError(
            f"--min-confidence {args.min_confidence} is not a probability from 0 to 1, e.g. 0.8"
        )
    return value


def _quiet_auto_device() -> str:
    """`auto` where a GPU is visible (the app's rule then says why it cannot be used, if it
    cannot), else `cpu`: a CPU machine needs no word about GPUs."""
    import torch

    return "auto" if torch.cuda.device_count() else "cpu"


def _print_predictions(summary: Summary, out: Path, sort_into: Path | None, shard: Shard) -> None:
    """What a predict run did, in three lines."""
    done = summary.classified + summary.skipped
    share = (
        f" (shard {shard.index}/{shard.count}: {summary.total:,} files)" if shard.count > 1 else ""
    )
    already = f", {summary.already_done:,} done before" if summary.already_done else ""
    print(
        f"classified {done:,} files in {summary.seconds:.1f} s ({summary.rate:.1f} images/s)"
        f"{share}{already}"
    )
    if summary.skipped:
        print(f"{summary.skipped:,} of them have no label: the reason column says why")
    if summary.labels:
        where = f"sorted into {sort_into}" if sort_into else "labels"
        counts = sorted(summary.labels.items())
        print(f"{where}: " + ", ".join(f"{label} {n:,}" for label, n in counts))
    print(f"predictions: {out}")


def run_review(args: argparse.Namespace) -> int:
    """`review`: start the local review page (training/review) on the data and its reports."""
    from classifier.errors import StartupError
    from training import review  # only this command needs the review page and its Flask app

    try:
        review.serve(args.data, args.reports, args.port)
    except StartupError as error:
        raise InputError(str(error)) from None
    return 0


def _print_result(result: FitResult) -> None:
    """The end of a run: the scores, against the served model's, and what to do next."""
    from training.promotion import PREVIOUS

    card = result.card
    models = result.export_path.parent if result.promoted else result.export_path.parent.parent
    print(
        f"validation accuracy {card.accuracy:.1%} on {card.valid_count} images "
        f"({', '.join(f'{k} {v:.0%}' for k, v in card.per_class_accuracy.items())})"
    )
    comparison = result.comparison
    for line in comparison.lines():
        print(line)
    reports = Path(card.reports["confusion_matrix"]).parent
    if result.promoted:
        if comparison.worse:
            print("the new model does worse than the one it replaces, but --force serves it")
        if not comparison.nothing_served:
            print(f"the model it replaces is kept in {models / PREVIOUS}")
        print(f"model: {result.export_path}, card: {result.card_path}, reports: {reports}")
    else:
        print(
            f"the new model does worse than the served one, so the served one stays: the new "
            f"one is in {result.export_path.parent} (reports: {reports}); to serve it anyway, "
            f"run python train.py promote{_models_flag(models)} (or train with --force)"
        )
    if result.learned_nothing:
        label, guess = result.guess
        print(
            f"this model learned nothing: its validation error, {card.error_rate:.1%}, is "
            f"no better than always answering {label!r} ({guess:.1%}). Train longer "
            f"(--epochs), try another learning rate (--lr; see {reports / 'lr_find.png'}), or "
            "check that each class folder holds what its name says"
        )
    if result.promoted:
        print(f"next: {serve_command(models)}")


def serve_command(models: Path) -> str:
    """The command that serves the model in `models`: the app's default needs no --model."""
    model = models / "export.pkl"
    if model.resolve() == ROOT / "models" / "export.pkl":
        return "python application.py"
    return shlex.join(["python", "application.py", "--model", str(model)])


def _models_flag(models: Path) -> str:
    return "" if models == Path("models") else f" --models {shlex.quote(str(models))}"


def say(line: str) -> None:
    """Print a line in the middle of a run, on a line of its own below fastai's progress bar."""
    print(f"\n{line}", flush=True)


def _require_one_process(command: str) -> None:
    """Refuse `command` under accelerate launch, which sets WORLD_SIZE: only fit trains across
    processes, and N copies of another command would do the same work N times."""
    processes = int(os.environ.get("WORLD_SIZE") or 1)
    if processes > 1:
        split = " (--shard I/N splits a folder between jobs)" if command == "predict" else ""
        raise InputError(
            f"only fit trains across processes, and {command} was started in {processes}: run "
            f"`python train.py {command} ...` without accelerate launch{split}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; bad input prints one sentence on stderr and returns 2."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["python", "train.py", *argv])
    try:
        if args.command != "fit":
            _require_one_process(args.command)
        return args.handler(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
