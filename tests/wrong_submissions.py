"""Grade planted submissions (the solution with some answers replaced) with the real nbgrader.

Each assignment's test module declares ``FULL`` (grade_id -> points of every autograded test
cell) and ``WRONG`` (student -> (answers to replace, {grade_id: expected score})), then uses
``grade_variants`` in a module fixture and ``assert_scores`` in its tests.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from coursekit import course


def fork_released(released_course: Path, dest: Path) -> Path:
    """A private copy of the released course (config, source, release, gradebook) to grade in."""
    for name in ("nbgrader_config.py", "source", "release"):
        src = released_course / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    shutil.copy2(released_course / "gradebook.db", dest / "gradebook.db")
    return dest


def grade_variants(released_course: Path, dest: Path, aid: str, notebook: str, wrong: dict,
                   with_solution: bool = False) -> Path:
    """Submit one variant of the solution per student in ``wrong`` and autograde them all."""
    root = fork_released(released_course, dest)
    solution = root / "source" / aid / notebook
    students = (["solution"] if with_solution else []) + list(wrong)
    course.add_students(root, students)
    if with_solution:
        course.submit(root, aid, "solution", {notebook: solution})
    for student, (answers, _) in wrong.items():
        path = course.variant(solution, root / "variants" / student / notebook, answers)
        course.submit(root, aid, student, {notebook: path})
    course.nbgrader(root, "autograde", aid)
    return root


def assert_scores(graded: Path, aid: str, student: str, full: dict, changed: dict) -> None:
    """Every autograded cell scores as intended, and the total is their sum."""
    expected = {**full, **changed}
    got = {k: v for k, v in course.grade_cells(graded, aid, student).items() if k in full}
    assert got == expected
    assert course.scores(graded, aid)[student]["score"] == sum(expected.values())
