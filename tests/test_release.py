"""generate_assignment works, and the release hides solutions, hidden tests and mark schemes."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest

from coursekit import assignment_ids, source_notebooks
from test_execute_notebooks import run_notebook

REGION = {
    "solution": ("### BEGIN SOLUTION", "### END SOLUTION"),
    "hidden tests": ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
    "mark scheme": ("=== BEGIN MARK SCHEME ===", "=== END MARK SCHEME ==="),
}


def secret_lines(path: Path) -> set[str]:
    """Every distinctive line inside a solution, hidden-test or mark-scheme region of a source notebook."""
    nb = nbformat.read(str(path), as_version=4)
    found = set()
    for cell in nb.cells:
        inside = False
        for line in cell.source.splitlines():
            if any(line.strip().startswith(b) for b, _ in REGION.values()):
                inside = True
                continue
            if any(line.strip().startswith(e) for _, e in REGION.values()):
                inside = False
                continue
            text = line.strip()
            # short or generic lines (a bracket, "plt.show()") may legitimately appear elsewhere
            if inside and len(text) >= 25:
                found.add(text)
    return found


def test_every_assignment_has_secrets_to_hide():
    for path in source_notebooks():
        assert secret_lines(path), f"{path} has no solution, hidden tests or mark scheme"


@pytest.mark.parametrize("aid", assignment_ids())
def test_release_leaks_nothing(released_course: Path, aid: str):
    release = released_course / "release" / aid
    assert release.is_dir()
    released_text = "\n".join(p.read_text(encoding="utf-8", errors="replace")
                              for p in release.rglob("*") if p.is_file())
    for marker_pair in REGION.values():
        for marker in marker_pair:
            assert marker not in released_text
    for src in (released_course / "source" / aid).glob("*.ipynb"):
        released_nb = nbformat.read(str(release / src.name), as_version=4)
        released_src = "\n".join(c.source for c in released_nb.cells)
        leaked = [line for line in secret_lines(src) if line in released_src]
        assert not leaked, f"lines from protected regions are in the release: {leaked[:3]}"
        assert "raise NotImplementedError()" in released_src


@pytest.mark.parametrize("aid", assignment_ids())
def test_released_folder_works_on_its_own(released_course: Path, tmp_path: Path, aid: str):
    """Copy only the released folder elsewhere, put the solved notebook in it: it must run."""
    alone = tmp_path / aid
    shutil.copytree(released_course / "release" / aid, alone)
    for src in (released_course / "source" / aid).glob("*.ipynb"):
        shutil.copy2(src, alone / src.name)
        nb, _ = run_notebook(alone / src.name)
        assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    # nothing in the notebooks reaches outside the folder
    for nb_path in alone.glob("*.ipynb"):
        text = nb_path.read_text(encoding="utf-8")
        assert not re.search(r"\.\./|/work/|coursekit", text), f"{nb_path.name} refers outside its folder"
