"""Load a fastai `export.pkl`; every way it can fail becomes one sentence naming the file."""

from __future__ import annotations

import io
import pickle
import re
import types
import warnings
from pathlib import Path
from typing import Any

from fastai.learner import Learner, load_learner

from .errors import ModelLoadError

# modules that only fastai v1 (2018-2020) had; a v1 export names them in its pickle
FASTAI_V1_MODULES = (
    "fastai.basic_train",
    "fastai.basic_data",
    "fastai.data_block",
    "fastai.vision.image",
    "fastai.vision.transform",
    "fastai.core",
    "fastai.train",
    "fastai.layers.",
)
# fastai 2.8 moved Transform and Pipeline out of fastcore into fasttransform
FASTAI_PRE_28_MODULES = ("fastcore.transform", "fastcore.dispatch")
REEXPORT = (
    "re-export it with fastai 2.8: load your data and train in fastai 2.8 "
    "(`python train.py fit --data DIR`), then `learn.export()`"
)


class _MissingName(Exception):
    """The pickle names a module or attribute that this environment does not have."""

    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


class _NamingUnpickler(pickle.Unpickler):
    """An Unpickler that reports which name was missing, instead of a bare ImportError.

    fastai's `load_learner` swallows most ImportErrors (and then fails with an unrelated
    UnboundLocalError), so the name has to leave as an exception type it does not catch.
    """

    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError) as error:
            raise _MissingName(module, name) from error


# torch.load takes a `pickle_module`; this one is pickle with the Unpickler above
_naming_pickle: Any = types.ModuleType("naming_pickle")
_naming_pickle.__dict__.update(pickle.__dict__)
_naming_pickle.Unpickler = _NamingUnpickler
_naming_pickle.load = lambda file, **kwargs: _NamingUnpickler(file, **kwargs).load()


# fastai warns about pickle on every load, reload included; the README's security section says
# it once (only load export.pkl files you trust)
warnings.filterwarnings("ignore", message="load_learner` uses Python's insecure pickle")


def _explain_missing(path: Path, missing: _MissingName) -> str:
    """A sentence for a pickle that names something this environment lacks."""
    if missing.module.startswith(FASTAI_V1_MODULES):
        return (
            f"{path} was exported by fastai v1 (it names `{missing}`), which fastai 2.8 "
            f"cannot read: {REEXPORT}."
        )
    if missing.module.startswith(FASTAI_PRE_28_MODULES):
        return (
            f"{path} was exported by fastai 2.x before 2.8 (it names `{missing}`, which has "
            f"moved): {REEXPORT}."
        )
    if missing.module.split(".")[0] == "timm":
        return (
            f"{path} was trained with a timm architecture and names `{missing}`, which this "
            "environment lacks: install timm as requirements.txt pins it (`pip install -r "
            "requirements.txt`), or the timm version the model was trained with."
        )
    if missing.module.startswith(("fastai", "fastcore", "torch", "torchvision")):
        return (
            f"{path} was exported by another fastai or torch version (it names `{missing}`, "
            f"which this environment lacks): {REEXPORT}."
        )
    return (
        f"{path} refers to `{missing}`, a function or class defined where the model was "
        f"trained (a notebook, for instance): define it in an importable module, or "
        f"{REEXPORT} without custom functions."
    )


def load_export(path: Path, data: bytes | None = None) -> Learner:
    """Load the fastai Learner exported to `path` on the CPU, or raise ModelLoadError.

    With `data`, the export is unpickled from those bytes (already read and checked) and `path`
    only names the file in messages.
    """
    try:
        source = io.BytesIO(data) if data is not None else path
        learner = load_learner(source, cpu=True, pickle_module=_naming_pickle)
    except _MissingName as missing:
        raise ModelLoadError(_explain_missing(path, missing)) from None
    except RuntimeError as error:
        if any(name in str(error) for name in FASTAI_PRE_28_MODULES):
            raise ModelLoadError(
                f"{path} was exported by fastai 2.x before 2.8: {REEXPORT}."
            ) from None
        raise ModelLoadError(_not_an_export(path, error)) from None
    except AttributeError as error:
        # load_learner unpickled something without `.dls`: weights, a v1 dict, another object
        held = re.match(r"'([\w.]+)' object has no attribute 'dls'", str(error))
        if held:
            raise ModelLoadError(_not_a_learner(path, held.group(1))) from None
        raise ModelLoadError(_not_an_export(path, error)) from None
    except Exception as error:  # noqa: BLE001 - torch.load fails in many ways on a foreign file
        raise ModelLoadError(_not_an_export(path, error)) from None
    if not isinstance(learner, Learner):
        raise ModelLoadError(_not_a_learner(path, type(learner).__name__))
    return learner


def _not_a_learner(path: Path, held: str) -> str:
    """A sentence for a pickle that holds something other than a Learner."""
    return (
        f"{path} holds a {held}, not a fastai Learner (plain weights, or a fastai v1 "
        f"export): {REEXPORT}."
    )


def _not_an_export(path: Path, error: Exception) -> str:
    """A sentence for a file torch cannot unpickle at all."""
    return (
        f"{path} is not a loadable fastai export ({type(error).__name__}: {error}). Copy the "
        f"export.pkl that `learn.export()` wrote, or train one with `python train.py fit`."
    )
