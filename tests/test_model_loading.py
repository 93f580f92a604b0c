"""Loading export.pkl: anything but a fastai 2.8 export gets a sentence naming the file."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from classifier.errors import ModelLoadError
from classifier.loading import load_export


def pickle_naming(tmp_path, module: str, name: str):
    """An export.pkl whose pickle names `module.name`, which this environment lacks."""
    fake_module = types.ModuleType(module)
    fake_class = type(name, (), {"__module__": module, "__qualname__": name})
    setattr(fake_module, name, fake_class)
    path = tmp_path / "export.pkl"
    sys.modules[module] = fake_module
    try:
        torch.save({"learner": fake_class()}, path)
    finally:
        del sys.modules[module]
    return path


@pytest.mark.parametrize(
    ("module", "name", "words"),
    [
        ("fastai.basic_train", "Learner", "was exported by fastai v1"),
        ("fastai.vision.image", "Image", "was exported by fastai v1"),
        ("fastcore.transform", "Pipeline", "was exported by fastai 2.x before 2.8"),
        ("fastai.vision.augment", "OldTransform", "another fastai or torch version"),
        ("notebook_helpers", "label_func", "defined where the model was trained"),
    ],
)
def test_exports_naming_missing_modules_say_why_and_how_to_reexport(tmp_path, module, name, words):
    path = pickle_naming(tmp_path, module, name)
    with pytest.raises(ModelLoadError) as raised:
        load_export(path)
    message = str(raised.value)
    assert words in message and str(path) in message
    assert f"{module}.{name}" in message


@pytest.mark.parametrize(
    ("contents", "words"),
    [
        (b"", "is not a loadable fastai export"),
        (b"\x89PNG\r\n\x1a\n not a model", "is not a loadable fastai export"),
    ],
)
def test_files_that_are_not_pickles_are_named(tmp_path, contents, words):
    path = tmp_path / "export.pkl"
    path.write_bytes(contents)
    with pytest.raises(ModelLoadError, match=words):
        load_export(path)


def test_plain_weights_are_not_a_learner(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(ModelLoadError, match="holds a collections.OrderedDict, not a fastai"):
        load_export(path)


def test_a_fastai_export_loads(model_path):
    assert list(load_export(model_path).dls.vocab) == ["mod", "rocker"]
