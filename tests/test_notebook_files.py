"""Every notebook in the repository is valid, clean and opens without a kernel prompt."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from coursekit import ROOT

NOTEBOOKS = sorted(p for p in ROOT.glob("**/*.ipynb")
                   if ".venv" not in p.parts and ".ipynb_checkpoints" not in p.parts
                   and not {"release", "submitted", "autograded", "feedback"} & set(p.parts))


def test_there_are_notebooks():
    assert any("lessons" in p.parts for p in NOTEBOOKS) or any("source" in p.parts for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_valid_nbformat_and_clean(path: Path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", (
        "kernelspec must be python3, or JupyterLab asks every user to pick a kernel"
    )
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}: saved outputs in a cell; clear them before committing"
            assert cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_nbgrader_ids_unique(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    ids = [c["metadata"]["nbgrader"]["grade_id"] for c in nb["cells"] if "nbgrader" in c.get("metadata", {})]
    assert len(ids) == len(set(ids))
