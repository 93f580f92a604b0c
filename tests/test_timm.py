"""timm architectures, as the course's lesson 3 uses them: `--arch convnext_tiny` trains through
fastai's vision_learner, and the export serves and explains in the app."""

from __future__ import annotations

import io
import json
import sys
from types import SimpleNamespace

import pytest
import torch
import torchvision
from fastai.vision.learner import create_timm_model, create_vision_model
from PIL import Image
from torch import nn

import train
from classifier.errors import ModelLoadError
from classifier.explain import Explainer, explained_layer, last_conv_layer
from classifier.loading import load_export
from classifier.predictor import Classifier
from training.demo import write_digits
from training.errors import InputError
from training.learner import architecture, architecture_name
from webapp import create_app

DIGITS = ("0", "1", "7")
SIZE = 128  # convnext shrinks 32 times: a 4x4 map to explain
TIMM_ARCH = "convnext_atto"  # timm's smallest convnext: the same blocks as convnext_tiny


@pytest.mark.parametrize(
    ("name", "chosen", "on_the_card"),
    [
        ("resnet34", torchvision.models.resnet34, "resnet34"),
        ("convnext_tiny", "convnext_tiny", "timm/convnext_tiny"),
        ("timm/resnet18", "resnet18", "timm/resnet18"),
        ("convnext_tiny.fb_in22k", "convnext_tiny.fb_in22k", "timm/convnext_tiny.fb_in22k"),
    ],
)
def test_arch_names_torchvision_first_then_timm(name, chosen, on_the_card):
    assert architecture(name) == chosen
    assert architecture_name(name) == on_the_card


def test_an_unknown_arch_suggests_the_names_it_resembles():
    with pytest.raises(InputError, match=r"unknown architecture 'convnext_tiyn'.*convnext_tiny"):
        architecture("convnext_tiyn")


def fastai_model(arch) -> nn.Module:
    """The (body, head) model vision_learner builds for `arch`, random weights."""
    if isinstance(arch, str):
        return create_timm_model(arch, 3, pretrained=False)[0]
    return create_vision_model(arch, 3, pretrained=False)


@pytest.mark.parametrize(
    ("make_model", "expected", "why"),
    [
        (lambda: fastai_model(torchvision.models.resnet18), lambda m: m[0], "the body's map"),
        (lambda: fastai_model("convnext_atto"), lambda m: m[0], "not its last block's 1x1 conv"),
        (lambda: fastai_model("vit_tiny_patch16_224"), lambda m: None, "a ViT pools by itself"),
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), lambda m: m[0], "last conv"),
    ],
    ids=["torchvision resnet18", "timm convnext", "timm vit", "plain model"],
)
def test_grad_cam_explains_the_map_the_head_pools(make_model, expected, why):
    model = make_model()  # built here, not when the tests are collected
    assert explained_layer(model) is expected(model), why


def test_convnext_tinys_last_conv_is_a_depthwise_one_inside_its_last_block():
    """Why Grad-CAM does not take the last nn.Conv2d of a convnext."""
    model = fastai_model("convnext_tiny")
    conv = last_conv_layer(model)
    assert conv is not None and conv.groups == conv.in_channels == 768  # depthwise
    assert explained_layer(model) is model[0]


@pytest.fixture(scope="module")
def timm_fit(tmp_path_factory) -> SimpleNamespace:
    """`train.py fit --arch convnext_atto` from scratch on 72 digits at 128 px, 1 epoch."""
    folder = tmp_path_factory.mktemp("timm")
    write_digits(folder / "data", DIGITS, size=32, per_class=24)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy shared CPU trains a tiny model faster on one thread
    try:
        status = train.main(
            [
                *("fit", "--data", str(folder / "data"), "--arch", TIMM_ARCH, "--no-pretrained"),
                *("--size", str(SIZE), "--epochs", "1", "--lr", "3e-3", "--batch-size", "16"),
                *("--workers", "0", "--no-augment"),
                *("--models", str(folder / "models"), "--reports", str(folder / "reports")),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    model = folder / "models" / "export.pkl"
    return SimpleNamespace(status=status, model=model, folder=folder, data=folder / "data")


def test_a_timm_architecture_trains_and_is_named_on_the_card(timm_fit):
    assert timm_fit.status == 0
    card = json.loads(timm_fit.model.with_suffix(".json").read_text())
    assert card["architecture"] == f"timm/{TIMM_ARCH}" and card["classes"] == list(DIGITS)


def test_the_app_serves_a_timm_export_and_shows_where_it_looked(timm_fit, tmp_path):
    app = create_app(
        {
            "MODEL_PATH": str(timm_fit.model),
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
        }
    )
    try:
        image = sorted((timm_fit.data / "1").iterdir())[0]
        answer = app.test_client().post(
            "/api/predict?explain=1",
            data={"file": (io.BytesIO(image.read_bytes()), image.name)},
        )
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert set(body["probabilities"]) == set(DIGITS)
        assert body["heatmap"].startswith("data:image/jpeg;base64,")
    finally:
        app.extensions["seafront.model"].stop()


def test_grad_cam_of_a_timm_export_is_a_map_of_the_bodys_output(timm_fit):
    classifier = Classifier(load_export(timm_fit.model), torch.device("cpu"), timm_fit.model)
    explainer = Explainer(classifier)
    maps = []
    for digit in DIGITS:
        with Image.open(sorted((timm_fit.data / digit).iterdir())[0]) as opened:
            photo = opened.convert("RGB")
        label = classifier.predict_batch([classifier.preprocess(photo)])[0].label
        maps.append(explainer.explain(photo, label).cam)
    assert all(cam.shape == (SIZE // 32, SIZE // 32) for cam in maps)
    assert all(cam.min() >= 0 and cam.max() <= 1 for cam in maps)
    assert any(cam.max() > cam.min() for cam in maps)  # maps, not one flat value


def test_serving_a_timm_export_without_timm_says_to_install_it(timm_fit, monkeypatch):
    # an environment without timm: importing any of it fails, as it would there
    for name in [name for name in sys.modules if name == "timm" or name.startswith("timm.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModelLoadError) as error:
        load_export(timm_fit.model)
    message = str(error.value)
    assert "trained with a timm architecture" in message and "pip install -r" in message


def test_pretrained_timm_weights_offline_end_in_one_sentence(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    write_digits(tmp_path / "data", ("0", "1"), size=16, per_class=6)
    argv = ["fit", "--data", str(tmp_path / "data"), "--arch", TIMM_ARCH]
    status = train.main([*argv, "--models", str(tmp_path / "models")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert f"pretrained timm {TIMM_ARCH} weights" in err
    assert "--no-pretrained" in err and str(tmp_path / "hub") in err
    assert not (tmp_path / "models").exists()


def test_fits_help_says_arch_takes_timm_names(capsys):
    with pytest.raises(SystemExit):
        train.main(["fit", "--help"])
    assert "timm/NAME" in capsys.readouterr().out
