"""The README cannot drift from the code: its configuration table is the settings table, and its
"What is where" table names what the tree holds."""

from __future__ import annotations

import re

import pytest

from webapp.settings import SETTINGS

from .support import ROOT

README = (ROOT / "README.md").read_text()


def section(heading: str) -> str:
    """The README's text under `heading`, up to the next heading of the same level."""
    start = README.index(f"\n{heading}\n")
    level = heading.split(" ")[0]
    end = README.find(f"\n{level} ", start + len(heading) + 2)
    return README[start : end if end > 0 else None]


def table_rows(text: str) -> list[list[str]]:
    """The cells of each body row of the Markdown tables in `text`."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"\|\s*-", line):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return [row for row in rows if row[0] not in ("flag", "path")]


CONFIGURATION = {row[1].strip("`"): row for row in table_rows(section("## Configuration"))}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.env)
def test_every_setting_is_in_the_readmes_table_with_its_flag_and_default(setting):
    assert setting.env in CONFIGURATION, f"{setting.env} is missing from the README"
    flag, _, shown, meaning = CONFIGURATION[setting.env]
    assert flag.strip("`") == setting.flag
    assert shown == f"`{setting.shown_default}`"
    assert meaning


def test_the_readmes_table_names_no_setting_the_app_lacks():
    assert set(CONFIGURATION) == {setting.env for setting in SETTINGS}


def test_the_environment_variables_named_anywhere_in_the_readme_exist():
    named = set(re.findall(r"SEAFRONT_[A-Z_]+[A-Z]", README))
    refused = {"SEAFRONT_DEBUG"}  # named because start-up refuses it (Security and limits)
    assert named - refused <= {setting.env for setting in SETTINGS}


WHERE = [row[0] for row in table_rows(section("## What is where"))]


def test_what_is_where_names_every_top_level_file_and_folder_of_the_tree():
    named = {path.strip("`").rstrip("/") for cell in WHERE for path in cell.split(", ")}
    top_level = {name.split("/")[0] for name in named}
    tracked = {
        path.name for path in ROOT.iterdir() if not path.name.startswith(".") or path.name == ".ci"
    }
    ignored = {
        "README.md",
        "requirements.txt",
        "pyproject.toml",
        "docs",
        "instance",
        "data",
        "reports",
        "brighton_seafront.egg-info",
    }
    assert tracked - ignored - {"__pycache__"} <= top_level
    assert all((ROOT / path).exists() for path in named)
