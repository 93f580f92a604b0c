"""The house: each layer imports only downward, and a leaf module costs only itself to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from .support import ROOT

# what each package may not import: the model layer knows no web, the web layer no training
FORBIDDEN = {
    "formats": {"flask", "werkzeug", "gunicorn", "torch", "classifier", "webapp", "training"},
    "classifier": {
        "flask",
        "werkzeug",
        "gunicorn",
        "flask_wtf",
        "flask_limiter",
        "prometheus_client",
        "redis",
        "webapp",
        "training",
    },
    "webapp": {"training"},
}


def imported_roots(path: Path) -> set[str]:
    """The top-level names a module imports, at any depth of its code."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize(
    "module",
    sorted(
        str(p.relative_to(ROOT)) for package in FORBIDDEN for p in (ROOT / package).rglob("*.py")
    ),
)
def test_no_module_imports_a_layer_above_its_own(module):
    package = module.split("/")[0]
    assert not imported_roots(ROOT / module) & FORBIDDEN[package]


def modules_after(code: str) -> set[str]:
    """Which of torch, fastai, gunicorn and flask a fresh interpreter holds after `code`."""
    probe = (
        f"{code}\nimport sys\n"
        "print(' '.join(m for m in ('torch', 'fastai', 'gunicorn', 'flask') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(result.stdout.split())


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        ("import classifier.batcher", set()),
        ("import classifier.observer", set()),
        ("import classifier.errors", set()),
        ("import formats.modelcard, formats.labels, formats.atomic, formats.regular", set()),
        ("import webapp.settings", {"flask"}),
        ("import application", {"flask"}),
        ("import training.cli", set()),
    ],
)
def test_importing_a_leaf_loads_no_heavy_library(code, allowed):
    assert modules_after(code) <= allowed


@pytest.mark.parametrize("entry", ["application.py", "train.py"])
def test_help_answers_without_loading_torch(entry):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", entry, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "usage:" in result.stdout
    assert " torch" not in result.stderr and " fastai" not in result.stderr
