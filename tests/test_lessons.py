"""Lessons are real lessons: framed, ordered, accessible, and built on sourced data."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from coursekit import DATA_DIR, ROOT, lesson_paths, notebooks
from test_execute_notebooks import executed

LESSONS = lesson_paths()
ids = [p.name for p in LESSONS]
ACRONYMS = ["IRGC", "PMF", "KH", "SFA", "MEI", "ISIS", "AAH", "KDP", "PUK", "KRG", "JCPOA", "UNAMI", "FTO"]


@pytest.mark.parametrize("path", LESSONS, ids=ids)
def test_headings_frame_and_links(path: Path):
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    problems = notebooks.heading_problems(nb) + notebooks.lesson_frame_problems(nb) + notebooks.link_problems(nb)
    assert not problems, problems


@pytest.mark.parametrize("path", LESSONS, ids=ids)
def test_figures_have_alt_text_and_captions(path: Path):
    nb, _ = executed(path)
    problems = notebooks.figure_problems(nb, require_alt=True)
    assert not problems, problems
    if not path.name.startswith("00_"):
        assert notebooks.count_figures(nb) >= 2, "each lesson (after Start here) makes at least two figures"


@pytest.mark.parametrize("path", LESSONS, ids=ids)
def test_acronyms_defined_at_first_use(path: Path):
    """The first Markdown mention of an acronym sits next to its expansion, e.g. 'Popular Mobilization Forces (PMF)'."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for acronym in ACRONYMS:
        m = re.search(rf"\b{re.escape(acronym)}\b", text)
        if m:
            window = text[max(0, m.start() - 120): m.end() + 120]
            assert f"({acronym})" in window or f"{acronym} (" in window or f"{acronym}:" in window, (
                f"{path.name}: '{acronym}' is used before it is defined"
            )


@pytest.mark.parametrize("path", LESSONS, ids=ids)
def test_lessons_read_only_described_data(path: Path):
    """Every data file a lesson opens is in data/ and described in datapackage.json."""
    import json

    described = {r["path"] for r in json.loads((DATA_DIR / "datapackage.json").read_text())["resources"]}
    text = path.read_text(encoding="utf-8")
    used = set(re.findall(r"([A-Za-z0-9_\-]+\.(?:csv|txt))", text))
    assert used, f"{path.name} reads no data"
    assert used <= described, f"{path.name} reads files not in the data package: {used - described}"


def test_course_map_names_every_lesson_and_assignment():
    """The README's course map and lesson 00 list every notebook in teaching order, and nothing else."""
    import nbformat

    from coursekit import assignment_ids

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lesson_names = [p.name for p in LESSONS]
    numbers = [int(name[:2]) for name in lesson_names]
    assert numbers[0] == 0 and numbers == sorted(set(numbers)), f"lessons are not numbered in order: {lesson_names}"
    positions = [readme.index(f"lessons/{name}") for name in lesson_names]
    assert positions == sorted(positions), "the course map lists lessons out of order"
    for aid in assignment_ids():
        assert f"assignments/source/{aid}/" in readme
    start_here = nbformat.read(str(LESSONS[0]), as_version=4)
    text = "\n".join(c.source for c in start_here.cells)
    for n in numbers:
        assert f"Lesson {n:02d}" in text, f"lesson 00's course map does not list lesson {n:02d}"
