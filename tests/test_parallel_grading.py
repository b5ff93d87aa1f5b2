"""The course's parallel grading command gives exactly stock nbgrader's scores, and SQLite takes concurrent writers.

A synthetic class (correct, partial and blank submissions of every assignment) is graded twice:
by stock ``nbgrader autograde`` one student after another, and by ``coursekit.grading`` with
several worker processes writing one SQLite gradebook.  Every graded cell must score the same.
"""
from __future__ import annotations

import multiprocessing as mp
import shutil
from pathlib import Path

import pytest

from coursekit import assignment_ids, course, grading
from wrong_submissions import fork_released

N_STUDENTS = 3   # one each of correct, partial, blank
WORKERS = 3


def _all_cell_scores(root: Path, aid: str, students) -> dict:
    return {s: course.grade_cells(root, aid, s) for s in students}


@pytest.fixture(scope="module")
def two_graded_classes(released_course: Path, tmp_path_factory):
    seq = fork_released(released_course, tmp_path_factory.mktemp("sequential"))
    par = fork_released(released_course, tmp_path_factory.mktemp("parallel"))
    kinds = grading.synthetic_class(seq, N_STUDENTS, seed=7)
    assert grading.synthetic_class(par, N_STUDENTS, seed=7) == kinds
    runs = {}
    for aid in assignment_ids():
        course.nbgrader(seq, "autograde", aid)
        runs[aid] = grading.grade_class(par, aid, workers=WORKERS, say=lambda *_: None)
    return seq, par, kinds, runs


@pytest.mark.parametrize("aid", assignment_ids())
def test_parallel_scores_equal_stock_autograde(two_graded_classes, aid):
    seq, par, kinds, runs = two_graded_classes
    run = runs[aid]
    assert run.workers == WORKERS
    assert not run.failed, [(r.student, r.errors) for r in run.failed]
    assert sorted(r.student for r in run.graded) == sorted(kinds)
    stock = _all_cell_scores(seq, aid, kinds)
    ours = _all_cell_scores(par, aid, kinds)
    assert ours == stock, "every graded cell must score exactly what stock nbgrader autograde gives"
    assert course.scores(par, aid) == course.scores(seq, aid)
    # the synthetic class really is mixed: full auto marks, partial, zero
    totals = {s: v["score"] for s, v in course.scores(par, aid).items()}
    correct = [totals[s] for s, k in kinds.items() if k == "correct"]
    partial = [totals[s] for s, k in kinds.items() if k == "partial"]
    blank = [totals[s] for s, k in kinds.items() if k == "blank"]
    assert min(correct) > 0 and max(blank) == 0
    assert all(0 <= p <= max(correct) for p in partial) and max(partial) > 0
    for s in kinds:
        assert (par / "autograded" / s / aid).is_dir()
    assert run.backup is None or Path(run.backup).exists()


def test_rerun_skips_graded_and_force_regrades_from_the_command_line(two_graded_classes):
    from coursekit.__main__ import main

    _, par, kinds, _ = two_graded_classes
    aid = assignment_ids()[0]
    before = _all_cell_scores(par, aid, kinds)
    again = grading.grade_class(par, aid, workers=2, say=lambda *_: None)
    assert not again.failed
    assert all("Skipping existing assignment" in r.log for r in again.results), "like stock: no --force, no regrade"
    student = sorted(kinds)[0]
    assert main(["grade", aid, "--course", str(par), "--student", student, "--force", "--workers", "2"]) == 0
    logs = sorted((par / "logs").glob(f"grade-{aid}-*[0-9].log"))
    assert f"## {student} (ok" in logs[-1].read_text() and "Skipping existing" not in logs[-1].read_text()
    assert _all_cell_scores(par, aid, kinds) == before


def test_missing_student_and_empty_folder_are_reported(two_graded_classes):
    _, par, _, _ = two_graded_classes
    aid = assignment_ids()[0]
    (par / "submitted" / "nobody_home" / aid).mkdir(parents=True)
    try:
        run = grading.grade_class(par, aid, workers=2, students=["nobody_home", "ghost"], say=lambda *_: None)
    finally:
        shutil.rmtree(par / "submitted" / "nobody_home")
    assert run.results == []
    assert run.skipped == {"nobody_home": "no notebooks in the submission folder", "ghost": "no submission folder"}


# ---------------------------------------------------------------- SQLite with concurrent writers
def _writer(db_url: str, aid: str, notebook: str, cells: list[str], students: list[str], rounds: int, q) -> None:
    """Do what nbgrader's autograde does to the gradebook, for ``students``, ``rounds`` times."""
    import warnings

    warnings.filterwarnings("ignore")
    from nbgrader.api import Gradebook

    try:
        for r in range(rounds):
            for s in students:
                with Gradebook(db_url, "soleimani-oped-2020") as gb:
                    gb.update_or_create_student(s)
                    gb.update_or_create_submission(aid, s)
                for i, cell in enumerate(cells):
                    with Gradebook(db_url, "soleimani-oped-2020") as gb:
                        grade = gb.find_grade(cell, notebook, aid, s)
                        grade.auto_score = float((r + i) % 3)
                        grade.needs_manual_grade = False
                        gb.db.commit()
        q.put(("ok", students))
    except Exception as exc:  # noqa: BLE001
        q.put(("error", f"{type(exc).__name__}: {exc}"))


def test_sqlite_gradebook_takes_concurrent_writers(released_course: Path, tmp_path):
    """Four processes write grades at once through nbgrader's API with stock settings (5 s lock wait)."""
    from nbgrader.api import Gradebook

    root = fork_released(released_course, tmp_path)
    db_url = course.db_url(root)
    aid = assignment_ids()[0]
    with Gradebook(db_url, "soleimani-oped-2020") as gb:
        nb = gb.find_assignment(aid).notebooks[0]
        notebook, cells = nb.name, [c.name for c in nb.grade_cells if c.cell_type == "code"]
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    groups = [[f"w{w}_s{i}" for i in range(3)] for w in range(4)]
    rounds = 2
    procs = [ctx.Process(target=_writer, args=(db_url, aid, notebook, cells, g, rounds, q)) for g in groups]
    for p in procs:
        p.start()
    results = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(kind == "ok" for kind, _ in results), results
    with Gradebook(db_url, "soleimani-oped-2020") as gb:
        for g in groups:
            for s in g:
                sub = gb.find_submission_notebook(notebook, aid, s)
                got = {gr.name: gr.auto_score for gr in sub.grades if gr.name in cells}
                assert got == {c: float((rounds - 1 + i) % 3) for i, c in enumerate(cells)}, s


def test_parallel_safety_rules(monkeypatch, tmp_path):
    assert grading.parallel_safe("postgresql+psycopg2://u@127.0.0.1:5432/gb")[0]
    assert not grading.parallel_safe("sqlite://")[0]
    url = "sqlite:///" + str(tmp_path / "gradebook.db")
    assert grading.parallel_safe(url)[0]
    monkeypatch.setattr(grading, "filesystem_type", lambda path: "nfs4")
    ok, why = grading.parallel_safe(url)
    assert not ok and "PostgreSQL" in why
    assert grading.with_busy_timeout(url).endswith("?timeout=60")
    assert grading.with_busy_timeout("postgresql://x/y") == "postgresql://x/y"


# ---------------------------------------------------------------- instructor analytics on the graded class
def test_instructor_report(two_graded_classes, tmp_path):
    """The analytics command reads the graded class: distributions, item statistics, rubric levels, hidden tests."""
    import re

    from nbgrader.api import Gradebook

    from coursekit import analytics

    _, par, kinds, _ = two_graded_classes
    root = tmp_path / "course"
    shutil.copytree(par, root, ignore=shutil.ignore_patterns("logs", "backups"))
    aid = "a1_sourcing_close_reading"
    if aid not in assignment_ids():
        pytest.skip("the hidden-test check uses assignment 1's question 2.3")
    nb = sorted((root / "source" / aid).glob("*.ipynb"))[0]
    # a hard-coded answer passes the visible check of question 2.3 but not its hidden tests
    variant = course.variant(nb, tmp_path / "hard_coded" / nb.name, {"a1-q23-answer": "recommendation_share = 0.35\n"})
    course.submit(root, aid, "hard_coder", {nb.name: variant}, timestamp="2020-02-10 09:00:00.000000 UTC")
    assert not grading.grade_class(root, aid, students=["hard_coder"], workers=1, say=lambda *_: None).failed
    correct = next(s for s, k in kinds.items() if k == "correct")
    blank = next(s for s, k in kinds.items() if k == "blank")
    # a grader marks the correct student's written answers (3 and 4 points)
    with Gradebook(course.db_url(root), "soleimani-oped-2020") as gb:
        sub = gb.find_submission(aid, correct)
        written = sorted((g for n in sub.notebooks for g in n.grades if g.cell.cell_type == "markdown"),
                         key=lambda g: g.name)
        for g, mark in zip(written, (3.0, 4.0)):
            g.manual_score = mark
            g.needs_manual_grade = False
        gb.db.commit()
        marked = {g.name: g.manual_score for g in written}

    tables = analytics.load(root, [aid])
    items = tables["items"]
    stats = analytics.item_statistics(items).set_index("cell")
    cells = {s: course.grade_cells(root, aid, s) for s in [*kinds, "hard_coder"]}
    q = "a1-q23-tests"
    expected = sum(c[q] for c in cells.values()) / len(cells) / stats.loc[q, "max_score"]
    assert stats.loc[q, "difficulty"] == pytest.approx(expected)
    assert stats.loc[q, "graded"] == len(cells)
    assert -1 <= stats["discrimination"].dropna().min() and stats["discrimination"].dropna().max() <= 1

    levels = analytics.rubric_levels(items)
    for cell, mark in marked.items():
        row = levels[(levels["cell"] == cell) & (levels["level"] == mark)]
        assert int(row["students"].iloc[0]) >= 1

    outcomes = analytics.hidden_test_outcomes(root, tables["coursedir"], [aid])
    out = outcomes[outcomes["cell"] == q].set_index("student")["outcome"]
    assert out["hard_coder"] == "failed hidden"
    assert out[correct] == "passed"
    assert out[blank] == "failed visible"
    summary = analytics.hidden_test_summary(outcomes)
    assert summary.iloc[0]["cell"] == q and summary.iloc[0]["failed_hidden"] == 1

    report = analytics.build_report(root, tmp_path / "report.html", [aid])
    page = report.read_text(encoding="utf-8")
    assert page.count("<h1>") == 1 and '<html lang="en">' in page
    levels_seen = [int(h) for h in re.findall(r"<h([1-6])>", page)]
    assert all(b - a <= 1 for a, b in zip(levels_seen, levels_seen[1:])), "headings must not skip levels"
    alts = re.findall(r'<img [^>]*alt="([^"]+)"', page)
    captions = re.findall(r"<figcaption><strong>Figure (\d+)\.</strong>", page)
    assert len(alts) == len(captions) == 4 and all(len(a) >= 40 for a in alts)
    assert captions == ["1", "2", "3", "4"]
    text = re.sub(r'src="data:[^"]+"', "", page)
    assert q in text and "Rubric for" in text and not re.search(r"\bnan\b", text, re.I)
