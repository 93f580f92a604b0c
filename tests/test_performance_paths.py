"""The fast paths keep the answers: draft JPEG decoding on real photos, memory format, precision,
warm-up and thread counts."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fastai.callback.schedule  # noqa: F401 - adds Learner.fit_one_cycle
import numpy as np
import pytest
import torch
from fastai.callback.progress import ProgressCallback
from fastai.torch_core import set_seed
from fastai.vision.augment import RandomResizedCrop, Resize
from fastai.vision.core import PILImage, ToTensor
from fastai.vision.data import ImageDataLoaders
from fastai.vision.learner import vision_learner
from fasttransform.transform import Pipeline
from PIL import Image
from torchvision.models import resnet18

from bench.photos import PHOTO_NAMES, TWELVE_MP, VGA, photo_jpeg, sample_photo
from classifier.decode import decode_image
from classifier.explain import Explainer
from classifier.loading import load_export
from classifier.precision import PrecisionError, choose_precision
from classifier.predictor import Classifier, draft_size_for
from classifier.service import ModelService, warm_up
from classifier.threads import available_cores, torch_threads_for

from .support import H100, MAX_PIXELS, TESLA_T4, FakeCudaQuery, service_settings

# ---------------------------------------------------------------- fixtures of this module only


@pytest.fixture(scope="module")
def photo_learner(tmp_path_factory):
    """A resnet18 at 224 px, trained for one short epoch on crops of the two sample photos.

    Not a good classifier, on purpose: its probabilities on the photos stay well away from 0
    and 1, so a change in what it sees shows in them (a saturated model would hide it).
    """
    folder = tmp_path_factory.mktemp("photo_model")
    rng = np.random.default_rng(0)
    for name in PHOTO_NAMES:
        label = folder / "data" / Path(name).stem
        label.mkdir(parents=True)
        photo = sample_photo(name)
        for index in range(8):
            side = int(rng.integers(150, 420))
            left, top = int(rng.integers(0, 569 - side)), int(rng.integers(0, 427 - side))
            photo.crop((left, top, left + side, top + side)).save(label / f"{index}.jpg")
    set_seed(0, reproducible=True)
    dls = ImageDataLoaders.from_folder(
        folder / "data", valid_pct=0.25, seed=0, bs=6, item_tfms=Resize(224), num_workers=0
    )
    learn = vision_learner(dls, resnet18, pretrained=False)
    learn.remove_cb(ProgressCallback)
    learn.fit(1, 1e-3)
    learn.export(folder / "export.pkl")
    return learn


@pytest.fixture(scope="module")
def photo_service(photo_learner):
    """The serving path (draft decoding on) with the photo model, on the CPU."""
    service = ModelService(service_settings(Path(photo_learner.dls.path).parent / "export.pkl"))
    service.start()
    yield service
    service.stop()


def photo_at(name: str, size: tuple[int, int], orientation: int | None = None) -> bytes:
    """A real photo as a quality-90 JPEG of `size`, optionally stored sideways with EXIF."""
    if orientation is None:
        return photo_jpeg(name, size)
    # stored rotated, as a phone does, with the EXIF tag that turns it upright again
    stored = (
        sample_photo(name)
        .resize(size, Image.Resampling.LANCZOS)
        .transpose(Image.Transpose.ROTATE_90)
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


# ---------------------------------------------------------------- draft decoding of real photos


@pytest.mark.parametrize(
    ("size", "decoded"),
    [
        (TWELVE_MP, (500, 375)),  # 1/8 scale: 64x fewer pixels to decode
        ((3000, 4000), (375, 500)),
        ((3000, 2250), (750, 563)),  # 1/8 would give 282 rows, under 1.5x the 224 px input
        ((1600, 1200), (800, 600)),
        (VGA, VGA),  # too small to reduce
    ],
)
def test_a_large_jpeg_is_decoded_at_reduced_scale_but_never_below_what_the_model_needs(
    photo_service, size, decoded
):
    draft_size = photo_service.classifier.draft_size
    assert draft_size == 336
    image = decode_image(photo_at("china.jpg", size), draft_size=draft_size, max_pixels=MAX_PIXELS)
    assert image.size == decoded
    assert min(image.size) >= draft_size or image.size == size


@pytest.mark.parametrize("name", PHOTO_NAMES)
@pytest.mark.parametrize(
    ("size", "orientation"),
    [
        (TWELVE_MP, None),
        ((3000, 2250), None),
        ((1600, 1200), None),
        (VGA, None),
        (TWELVE_MP, 6),
    ],
)
def test_served_answer_for_a_real_photo_matches_learn_predict_on_the_full_size_decode(
    photo_service, photo_learner, name, size, orientation
):
    data = photo_at(name, size, orientation)
    with photo_learner.no_bar():
        label, _, expected = photo_learner.predict(
            PILImage.create(decode_image(data, max_pixels=MAX_PIXELS))
        )
    served = photo_service.predict_bytes(data)
    assert served.label == label
    assert [served.probabilities[c] for c in photo_service.classes] == pytest.approx(
        expected.tolist(), abs=0.02
    )


def test_the_photo_model_is_not_saturated_so_the_comparison_can_see_a_difference(photo_service):
    confidences = [
        photo_service.predict_bytes(photo_jpeg(name, VGA)).confidence for name in PHOTO_NAMES
    ]
    assert min(confidences) < 0.98


@pytest.mark.parametrize(
    ("transforms", "expected"),
    [
        ([Resize(224), ToTensor()], 336),
        ([Resize((160, 224)), ToTensor()], 336),
        # RandomResizedCrop resizes to 224 + 32 before its validation centre crop
        ([RandomResizedCrop(224), ToTensor()], 384),
        ([ToTensor()], None),
    ],
)
def test_the_draft_size_comes_from_the_learners_own_item_transforms(transforms, expected):
    assert draft_size_for(Pipeline(transforms)) == expected


# ---------------------------------------------------------------- memory format and precision


@pytest.fixture
def fresh_tiny_learner(model_path):
    """The tiny model loaded again (a Classifier changes its learner's device and layout)."""
    return load_export(model_path)


def served_probabilities(classifier: Classifier, pictures: dict[str, Image.Image]) -> list:
    """The classifier's probabilities for every picture, one batch."""
    items = [classifier.preprocess(image.copy()) for image in pictures.values()]
    return [list(p.probabilities.values()) for p in classifier.predict_batch(items)]


def test_channels_last_gives_the_same_probabilities_as_the_default_layout(photo_learner):
    path = Path(photo_learner.dls.path).parent / "export.pkl"
    photos = {
        name: decode_image(photo_jpeg(name, VGA), max_pixels=MAX_PIXELS) for name in PHOTO_NAMES
    }
    default = Classifier(load_export(path), torch.device("cpu"), path, channels_last=False)
    nhwc = Classifier(load_export(path), torch.device("cpu"), path, channels_last=True)
    expected = served_probabilities(default, photos)
    for row, want in zip(served_probabilities(nhwc, photos), expected, strict=True):
        assert row == pytest.approx(want, abs=1e-4)


def test_a_model_that_cannot_run_channels_last_keeps_the_default_layout(
    fresh_tiny_learner, model_path, pictures
):
    # the tiny model flattens a 2x2 map with .view(), which an NHWC tensor cannot do
    classifier = Classifier(fresh_tiny_learner, torch.device("cpu"), model_path)
    assert not classifier.channels_last
    default = Classifier(
        load_export(model_path), torch.device("cpu"), model_path, channels_last=False
    )
    for row, want in zip(
        served_probabilities(classifier, pictures),
        served_probabilities(default, pictures),
        strict=True,
    ):
        assert row == pytest.approx(want, abs=1e-4)


def test_a_resnet_runs_channels_last_by_default(photo_service):
    assert photo_service.classifier.channels_last


def test_bf16_autocast_on_the_cpu_keeps_every_label(fresh_tiny_learner, model_path, pictures):
    fp32 = Classifier(load_export(model_path), torch.device("cpu"), model_path)
    bf16 = Classifier(fresh_tiny_learner, torch.device("cpu"), model_path, torch.bfloat16)
    for row, want in zip(
        served_probabilities(bf16, pictures), served_probabilities(fp32, pictures), strict=True
    ):
        assert row == pytest.approx(want, abs=0.05)
        assert row.index(max(row)) == want.index(max(want))


CPU, GPU = torch.device("cpu"), torch.device("cuda:0")


@pytest.mark.parametrize(
    ("requested", "device", "gpus", "expected"),
    [
        ("fp32", CPU, [], None),
        ("bf16", CPU, [], torch.bfloat16),
        ("auto", GPU, H100, torch.bfloat16),
        ("auto", GPU, TESLA_T4, torch.float16),
        ("fp16", GPU, H100, torch.float16),
        ("FP32", GPU, H100, None),
    ],
)
def test_precision_auto_is_the_best_half_type_on_a_gpu(requested, device, gpus, expected):
    assert choose_precision(requested, device, FakeCudaQuery(gpus)) is expected


@pytest.mark.parametrize(
    ("requested", "device", "gpus", "words"),
    [
        ("fp8", CPU, [], "Unknown precision 'fp8'"),
        ("bf16", GPU, TESLA_T4, "compute capability 7.5 has no bf16"),
    ],
)
def test_an_impossible_precision_stops_start_up_with_a_sentence(requested, device, gpus, words):
    with pytest.raises(PrecisionError, match=words.replace(".", r"\.").replace("(", r"\(")):
        choose_precision(requested, device, FakeCudaQuery(gpus))


def test_the_precision_setting_reaches_the_service(make_app):
    app = make_app(PRECISION="bf16", DEVICE="cpu")
    assert app.extensions["seafront.model"].precision is torch.bfloat16
    answer = app.test_client().post(
        "/api/predict", data={"file": (io.BytesIO(photo_jpeg("china.jpg", VGA)), "photo.jpg")}
    )
    assert answer.status_code == 200


def test_an_unknown_precision_setting_stops_the_app(make_app):
    with pytest.raises(PrecisionError, match="use auto, fp32, bf16 or fp16"):
        make_app(PRECISION="half")


# ---------------------------------------------------------------- warm-up and threads


def test_every_torch_computation_of_the_service_runs_on_its_batcher_thread(
    model_path, png_pictures, monkeypatch
):
    # one thread, one OpenMP team: a second team made the forward pass 35-60% slower
    threads = set()
    prepare = Classifier.prepare_batch

    def recording(self, items):
        threads.add(threading.get_ident())
        return prepare(self, items)

    explain = Explainer.explain

    def recording_explain(self, image, label):
        threads.add(threading.get_ident())
        return explain(self, image, label)

    monkeypatch.setattr(Classifier, "prepare_batch", recording)
    monkeypatch.setattr(Explainer, "explain", recording_explain)
    service = ModelService(service_settings(model_path))
    service.start()  # loads and warms up
    try:
        with ThreadPoolExecutor(4) as pool:
            predictions = list(pool.map(service.predict_bytes, png_pictures.values()))
        image = decode_image(png_pictures["mod0"], max_pixels=MAX_PIXELS)
        service.explain_image(image, predictions[0].label)
    finally:
        service.stop()
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_warm_up_runs_the_model_at_batch_size_one_and_at_the_largest(model_path):
    classifier = Classifier(load_export(model_path), torch.device("cpu"), model_path)
    sizes = []
    classifier.model.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    warm_up(classifier, 8)
    assert sizes == [1, 8]


@pytest.mark.parametrize(
    ("workers", "requested", "cores", "expected"),
    [
        (1, 0, 2, 2),
        (2, 0, 8, 4),
        (3, 0, 2, 1),  # never zero
        (4, 3, 16, 3),  # SEAFRONT_TORCH_THREADS wins
    ],
)
def test_each_worker_gets_its_share_of_the_cores(workers, requested, cores, expected):
    assert torch_threads_for(workers, requested, cores) == expected


@pytest.mark.parametrize(
    ("cpu_max", "cap"),
    [
        ("100000 100000\n", 1),  # docker run --cpus 1
        ("150000 100000\n", 2),  # --cpus 1.5 rounds up
        ("max 100000\n", None),  # no quota
    ],
)
def test_a_container_cpu_quota_caps_the_cores(tmp_path, cpu_max, cap):
    quota_file = tmp_path / "cpu.max"
    quota_file.write_text(cpu_max)
    unlimited = available_cores(tmp_path / "missing")
    assert available_cores(quota_file) == (min(cap, unlimited) if cap else unlimited)
