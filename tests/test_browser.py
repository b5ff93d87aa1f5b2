"""The course in real JupyterLab in a real (headless) browser: the student's and the instructor's paths.

One JupyterLab server is started the way the README says (``jupyter lab`` at the project root) on a
temporary copy of the course, with a random port and a token; Playwright drives Debian's
/usr/bin/chromium.  Each step is screenshotted into the test's temporary folder and copied to
artifacts/browser/ (git-ignored; kept by CI) so a person can look at what a student sees.
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from browser_support import (CHROMIUM, CHROMIUM_ARGS, ERROR_OUTPUTS, Lab, Shots, copy_course_tree,
                             menu, open_notebook, wait_cells_executed)
from coursekit import ROOT, course, lesson_paths

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser tests need Debian's chromium at /usr/bin/chromium (sudo apt-get install chromium)")

ARTIFACTS = ROOT / "artifacts" / "browser"
FIRST_LESSON = ROOT / "lessons" / "00_start_here.ipynb"
AID = "a1_sourcing_close_reading"
NOTEBOOK = "sourcing_and_close_reading.ipynb"
STUDENTS = ("sol_student", "blank_student")
WRITTEN = "a1-q33-answer"  # a written answer the instructor marks by hand


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a fresh copy of the course, with a released notebook and two autograded submissions."""
    tmp = tmp_path_factory.mktemp("browser")
    root = copy_course_tree(tmp / "course")
    server = Lab(root, tmp / "lab").start()
    try:
        # While the server starts: what the instructor does on the command line first.
        with pytest.MonkeyPatch.context() as mp:
            for var in ("NBGRADER_DB_URL", "NBGRADER_EXCHANGE"):
                mp.delenv(var, raising=False)
            cdir = root / "assignments"
            course.nbgrader(cdir, "generate_assignment", AID, "--force")
            # the student's copy, where fetching it from the Assignment List would put it
            shutil.copytree(cdir / "release" / AID, root / AID)
            course.add_students(cdir, list(STUDENTS))
            notebooks = sorted((cdir / "source" / AID).glob("*.ipynb"))
            course.submit(cdir, AID, "sol_student", {p.name: p for p in notebooks})
            course.submit(cdir, AID, "blank_student", {p.name: cdir / "release" / AID / p.name for p in notebooks})
            course.nbgrader(cdir, "autograde", AID)
        server.wait_ready()
        server.course_dir = cdir
        server.shots_dir = tmp / "screenshots"
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, lab, request):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(30_000)
    # Same behaviour with or without internet: nothing but the local server is reachable.
    # (Formgrader asks a CDN for MathJax; offline, its keyboard shortcuts do not work, see docs/administration.md.)
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    pg = context.new_page()
    pg.shots = Shots(lab.shots_dir, re.sub(r"\W+", "_", request.node.name.removeprefix("test_")).strip("_"),
                     ARTIFACTS)
    failed_before = request.session.testsfailed
    yield pg
    if request.session.testsfailed > failed_before:
        pg.shots(pg, "at_failure")  # what the page showed when the test failed
    context.close()


def figure_captions(path: Path) -> int:
    """How many figures a notebook captions (the course puts "**Figure N.**" right after each figure)."""
    nb = nbformat.read(str(path), as_version=4)
    return sum(c.cell_type == "markdown" and c.source.lstrip().startswith("**Figure") for c in nb.cells)


def browser_lessons() -> list[Path]:
    """Lesson 0, plus the first lesson with figures when lesson 0 has none (to see figures render)."""
    chosen = [FIRST_LESSON]
    if not FIRST_LESSON.exists() or not figure_captions(FIRST_LESSON):
        chosen += [p for p in lesson_paths() if p != FIRST_LESSON and figure_captions(p)][:1]
    return chosen


def cell_index(path: Path, grade_id: str) -> int:
    nb = nbformat.read(str(path), as_version=4)
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


# --- Student ---------------------------------------------------------------------------------

@pytest.mark.parametrize("lesson", browser_lessons(), ids=lambda p: p.stem)
def test_student_runs_lesson(lab, page, lesson):
    rel = lesson.relative_to(ROOT).as_posix()
    assert (lab.root / rel).exists(), f"{rel} is missing: the first lesson students open"
    start = time.perf_counter()
    open_notebook(page, lab.page_url(lesson.stem, rel))
    page.shots(page, "opened")

    menu(page, "Run", "Run All Cells")
    wait_cells_executed(page)
    page.shots(page, "ran_all_cells")

    errors = page.locator(ERROR_OUTPUTS)
    assert errors.count() == 0, "error output in the lesson:\n" + "\n---\n".join(errors.all_inner_texts())

    figures = page.locator(".jp-OutputArea-output img")
    expected = figure_captions(lab.root / rel)
    assert figures.count() >= expected, f"{expected} figure captions but {figures.count()} rendered images"
    for i in range(figures.count()):
        img = figures.nth(i)
        img.scroll_into_view_if_needed()
        assert img.evaluate("el => el.complete && el.naturalWidth > 0"), f"figure {i + 1} did not render"
        # accessibility: JupyterLab gives plain matplotlib PNGs no alt; the lesson pattern does
        alt = (img.get_attribute("alt") or "").strip()
        assert alt, f"figure {i + 1} has no alt text"
        if i == 0:
            page.shots(page, "first_figure")

    # accessibility: headings of the rendered notebook, in order, exactly one h1
    levels = page.locator(".jp-MarkdownCell .jp-RenderedMarkdown").locator("h1, h2, h3, h4, h5, h6") \
        .evaluate_all("els => els.map(e => Number(e.tagName[1]))")
    assert levels.count(1) == 1, f"expected exactly one h1, found heading levels {levels}"
    assert levels[0] == 1, f"the first heading must be the h1, found levels {levels}"
    skips = [(a, b) for a, b in zip(levels, levels[1:]) if b > a + 1]
    assert not skips, f"heading levels skip (from, to): {skips}"
    print(f"{rel}: opened, ran and checked in {time.perf_counter() - start:.1f} s, {figures.count()} figures")


def test_student_answers_and_validates_assignment(lab, page):
    released = lab.root / AID / NOTEBOOK
    setup, answer, tests = (cell_index(released, g) for g in ("a1-setup", "a1-q11-answer", "a1-q11-tests"))
    cells = open_notebook(page, lab.page_url("assignment", f"{AID}/{NOTEBOOK}"))
    page.shots(page, "opened_released_notebook")

    # A locked cell (the setup code) cannot be edited: typing into it changes nothing.
    locked = cells.nth(setup).locator(".cm-content")
    before, n_cells = locked.inner_text(), cells.count()
    locked.click()
    # keys must reach the editor, not JupyterLab's command-mode shortcuts
    page.locator(".jp-Notebook.jp-mod-editMode").wait_for()
    page.keyboard.type("BROKEN = 1\n")
    assert locked.inner_text() == before, "a locked cell could be edited"
    assert cells.count() == n_cells
    page.keyboard.press("Escape")

    # Run the setup cell, then answer Question 1.1 and run the answer and its test cell.
    cells.nth(setup).locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")
    editor = cells.nth(answer).locator(".cm-content")
    assert "YOUR CODE HERE" in editor.inner_text()
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.type('genre_choice = "b"')
    page.keyboard.press("Shift+Enter")  # runs the answer, moves to the test cell
    page.keyboard.press("Shift+Enter")  # runs the test cell
    wait_cells_executed(page, [setup, answer, tests])
    cells.nth(answer - 1).evaluate("el => el.scrollIntoView({block: 'start'})")  # prompt, answer, test
    page.shots(page, "answered_question_1_1")
    for i in (setup, answer, tests):
        out = cells.nth(i).locator(ERROR_OUTPUTS)
        assert out.count() == 0, f"cell {i} failed:\n" + "\n".join(out.all_inner_texts())

    # nbgrader's Validate button: it saves, runs the whole notebook and reports the failing tests.
    page.locator(".jp-NotebookPanel-toolbar").get_by_text("Validate", exact=True).click()
    message = page.locator("#validation-message")
    message.wait_for(timeout=90_000)
    page.shots(page, "validate_result")
    text = message.inner_text()
    assert "validation-failed" in message.get_attribute("class"), text
    assert "The following cell failed" in text
    assert "author_choices" in text, "Question 1.2 is unanswered and must be reported"
    assert "genre_choice" not in text, "Question 1.1 was answered correctly and must not be reported"
    page.locator(".jp-Dialog").get_by_role("button", name="Ok", exact=True).click()

    # the answer was saved to disk by Validate
    saved = nbformat.read(str(released), as_version=4)
    assert saved.cells[answer].source.strip() == 'genre_choice = "b"'


# --- Instructor ------------------------------------------------------------------------------

def test_instructor_grades_in_formgrader(lab, page):
    from nbgrader.api import Gradebook

    db = course.db_url(lab.course_dir)
    with Gradebook(db) as gb:
        max_score = gb.find_assignment(AID).max_score
        submission_id = gb.find_submission_notebook(Path(NOTEBOOK).stem, AID, "sol_student").id

    page.goto(lab.page_url("instructor"))
    page.wait_for_selector(".jp-LauncherCard")
    menu(page, "Nbgrader", "Formgrader")
    frame = page.frame_locator(".jp-MainAreaWidget iframe").first
    listed = frame.locator("#main-table tr", has=frame.get_by_role("link", name=AID, exact=True))
    listed.wait_for()
    page.shots(page, "formgrader_assignments")
    assert listed.locator("td.num-submissions").inner_text().strip() == str(len(STUDENTS))

    frame.get_by_role("link", name="Manual Grading").click()
    row = frame.locator("#main-table tr", has=frame.locator("td.score")).filter(
        has=frame.get_by_role("link", name=AID, exact=True))
    row.locator("td.score", has_text="/").wait_for()
    page.shots(page, "manual_grading_assignments")
    assert row.locator("td.num-submissions").inner_text().strip() == str(len(STUDENTS))
    # the assignment's points: "average / maximum"
    points = row.locator("td.score").inner_text().strip()
    assert re.fullmatch(r"[\d.]+ / [\d.]+", points) and float(points.split("/")[1]) == max_score, \
        f"score column {points!r}, gradebook maximum {max_score}"

    # assignment -> notebook -> the solved submission
    row.get_by_role("link", name=AID).click()
    frame.get_by_role("link", name=Path(NOTEBOOK).stem, exact=True).click()
    frame.locator(f"a[href*='/formgrader/submissions/{submission_id}']:visible").click()  # names are hidden by default
    score = frame.locator(f"#{WRITTEN}")
    score.wait_for()
    # the score and comment boxes save only once formgrader has loaded the submission's grades and comments
    page.locator(".jp-MainAreaWidget iframe").first.element_handle().content_frame().wait_for_function(
        "() => window.formgrader && formgrader.grades.loaded && formgrader.comments.loaded")
    comment = frame.locator(f"#{WRITTEN}-comment")
    score.scroll_into_view_if_needed()
    page.shots(page, "manual_grading_view")

    note = "Names author, outlet and date; say more about the intended audience."
    score.fill("3")
    score.press("Tab")  # formgrader saves a box when it loses focus
    comment.fill(note)
    comment.press("Tab")
    page.shots(page, "score_and_comment_entered")

    deadline = time.monotonic() + 15
    while True:
        with Gradebook(db) as gb:
            grade = gb.find_grade(WRITTEN, Path(NOTEBOOK).stem, AID, "sol_student")
            stored = (grade.manual_score, gb.find_comment(WRITTEN, Path(NOTEBOOK).stem, AID,
                                                          "sol_student").manual_comment)
        if stored == (3, note) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert stored == (3, note), f"gradebook holds {stored}"
    assert course.grade_cells(lab.course_dir, AID, "sol_student")[WRITTEN] == 3
