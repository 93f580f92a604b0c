#!/usr/bin/env python
"""Classify a folder of 12 MP photos two ways, in turns, in one run: a `learn.predict` loop (what
a user writes around fastai) and `train.py predict` (the app's decoding and batching).

    python -m bench.predict_folder                 # 32 photos, a resnet34 at 224 px
    python -m bench.predict_folder --photos 64 --model models/export.pkl --record

Both start with the model loaded (the load is not timed), on the same threads, over the same
files; each round times one loop over the folder, and the rounds take turns so that a machine
whose speed drifts slows both alike. It prints images per second for each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from fastai.callback.progress import ProgressCallback

from bench.bench import OUT, RESULTS, ROOT, build_model, machine
from bench.photos import PHOTO_NAMES, TWELVE_MP, photo_jpeg
from classifier.loading import load_export
from classifier.threads import torch_threads_for
from training.predict import app_config, list_files, predict, start_service
from training.shards import Shard


def write_photos(folder: Path, count: int) -> Path:
    """`count` 12 MP JPEGs (the sample photos in turn) in `folder`, written once."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        path = folder / f"{index:04d}.jpg"
        if not path.exists():
            path.write_bytes(photo_jpeg(PHOTO_NAMES[index % len(PHOTO_NAMES)], TWELVE_MP))
    return folder


def learn_predict_loop(model_path: Path, files: list[Path]):
    """A round of `learn.predict(path)` over every file (fastai decodes each in full)."""
    learner = load_export(model_path)
    learner.remove_cb(ProgressCallback)
    learner.predict(files[0])  # warm-up, as the service warms up

    def round_() -> float:
        started = time.perf_counter()
        for path in files:
            learner.predict(path)
        return time.perf_counter() - started

    return round_


def train_py_predict(model_path: Path, folder: Path, batch_size: int):
    """A round of `train.py predict FOLDER` into a fresh CSV (the service stays loaded)."""
    service = start_service(
        app_config(
            MODEL_PATH=model_path, DEVICE="auto", MAX_BATCH_SIZE=batch_size, MODEL_RELOAD_INTERVAL=0
        )
    )
    items = list_files([folder])

    def round_() -> float:
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            predict(items, Path(scratch) / "p.csv", service, Shard(), None, 2 * batch_size)
            return time.perf_counter() - started

    return round_, service


def main(argv: list[str] | None = None) -> int:
    """Time both ways in turns and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=32, help="12 MP photos (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (default 3)")
    parser.add_argument("--batch-size", type=int, default=8, help="train.py predict's batch")
    parser.add_argument("--model", type=Path, help="an export (default: a resnet34 at 224 px)")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    model_path = (args.model or build_model(OUT / "resnet34-224")).resolve()
    folder = write_photos(OUT / "photos-12mp", args.photos)
    files = sorted(folder.glob("*.jpg"))[: args.photos]
    threads = torch_threads_for(workers=1)
    torch.set_num_threads(threads)
    load = os.getloadavg()[0]

    naive = learn_predict_loop(model_path, files)
    ours, service = train_py_predict(model_path, folder, args.batch_size)
    times: dict[str, list[float]] = {"learn.predict loop": [], "train.py predict": []}
    try:
        for number in range(args.rounds):
            times["learn.predict loop"].append(naive())
            times["train.py predict"].append(ours())
            print(
                f"round {number + 1}: "
                + ", ".join(f"{name} {len(files) / t[-1]:.1f}/s" for name, t in times.items()),
                file=sys.stderr,
            )
    finally:
        service.stop()
    rates = {name: len(files) / statistics.median(t) for name, t in times.items()}
    ratio = rates["train.py predict"] / rates["learn.predict loop"]
    who = machine()
    text = (
        f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: train.py predict on a folder, "
        f"{who['cpu']}, {who['cores']} cores, torch {who['torch']}\n\n"
        f"{len(files)} photos of 12 MP (`bench/photos.py`), "
        f"{model_path.relative_to(ROOT) if model_path.is_relative_to(ROOT) else model_path}, "
        f"{service.device}, {threads} torch threads, the median of {args.rounds} rounds in "
        f"turns; load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.\n\n"
        "| way | images/s |\n| --- | --- |\n"
        + "".join(f"| {name} | {rate:.1f} |\n" for name, rate in rates.items())
        + f"\n`train.py predict` (batches of {args.batch_size}, {2 * args.batch_size} decoding "
        f"threads) classified the folder {ratio:.1f} times as fast as a `learn.predict` loop.\n"
    )
    print(text)
    if args.record:
        with RESULTS.open("a") as record:
            record.write(text)
        print(f"appended to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
