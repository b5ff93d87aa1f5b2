"""Every lesson and every assignment source notebook runs top to bottom, headless, without error."""
from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from coursekit import ROOT, lesson_paths, source_notebooks

NOTEBOOKS = lesson_paths() + source_notebooks()


def run_notebook(path: Path, timeout: int = 120):
    """Execute a notebook in its own folder; returns (executed notebook, seconds)."""
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


@lru_cache(maxsize=None)
def executed(path: Path):
    """Run each repository notebook once per test session."""
    return run_notebook(path)


def error_outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_executes(path: Path):
    nb, seconds = executed(path)
    assert not error_outputs(nb)
    assert seconds < 60, f"{path.name} took {seconds:.1f}s; a student should wait seconds, not minutes"
