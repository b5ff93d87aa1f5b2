"""The real nbgrader cycle on a temporary copy of the course: two students, every assignment."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from coursekit import assignment_ids, course
from wrong_submissions import fork_released


@pytest.fixture(scope="module")
def graded_course(released_course: Path, tmp_path_factory) -> Path:
    root = fork_released(released_course, tmp_path_factory.mktemp("cycle"))
    course.add_students(root, ["sol_student", "blank_student"])
    for aid in assignment_ids():
        notebooks = sorted((root / "source" / aid).glob("*.ipynb"))
        course.submit(root, aid, "sol_student", {p.name: p for p in notebooks},
                      timestamp="2020-02-01 10:00:00.000000 UTC")
        course.submit(root, aid, "blank_student", {p.name: root / "release" / aid / p.name for p in notebooks},
                      timestamp="2020-02-01 11:00:00.000000 UTC")
        course.nbgrader(root, "autograde", aid)
    return root


def manual_points(root: Path, aid: str) -> float:
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url(root)) as gb:
        a = gb.find_assignment(aid)
        return sum(cell.max_score for nb in a.notebooks for cell in nb.grade_cells
                   if cell.cell_type == "markdown")


@pytest.mark.parametrize("aid", assignment_ids())
def test_solution_full_auto_points_blank_zero(graded_course: Path, aid: str):
    scores = course.scores(graded_course, aid)
    sol, blank = scores["sol_student"], scores["blank_student"]
    auto_max = sol["max_score"] - manual_points(graded_course, aid)
    assert auto_max > 0
    assert sol["score"] == pytest.approx(auto_max), "the solution must earn every autograded point"
    assert sol["needs_manual_grade"], "written answers wait for a human"
    assert blank["score"] == 0
    # nothing the students submitted was changed by grading
    for student in ("sol_student", "blank_student"):
        for nb in (graded_course / "submitted" / student / aid).glob("*.ipynb"):
            assert (graded_course / "autograded" / student / aid / nb.name).exists()


def test_feedback_and_export(graded_course: Path):
    aid = assignment_ids()[0]
    course.nbgrader(graded_course, "generate_feedback", aid)
    html = sorted((graded_course / "feedback").glob(f"*/{aid}/*.html"))
    assert {p.parts[-3] for p in html} == {"sol_student", "blank_student"}
    text = html[0].read_text(encoding="utf-8")
    assert "<html" in text.lower() and "Score" in text
    course.nbgrader(graded_course, "export", "--to", str(graded_course / "grades.csv"))
    grades = pd.read_csv(graded_course / "grades.csv")
    assert set(grades["student_id"]) == {"sol_student", "blank_student"}
    assert set(grades["assignment"]) == set(assignment_ids())
    sol = grades[(grades["student_id"] == "sol_student") & (grades["assignment"] == aid)]
    assert float(sol["raw_score"].item()) == pytest.approx(course.scores(graded_course, aid)["sol_student"]["score"])
