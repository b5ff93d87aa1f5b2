"""Grading that survives hostile and broken submissions (issue 6), with the real ``nbgrader autograde``.

One temporary course gets one batch of submissions of assignment 1: honest students, an
honest student with wrong answers, and students with each hostile or broken kind (built in
``hostile_notebooks.py`` from the solution).  The batch is graded with the course's
configuration by two ``nbgrader autograde`` processes at once (one per shard of students);
each test then checks one kind: the exact score of every test cell, and that the honest
students' scores are untouched.  Where an attack should gain nothing, the expected score is
what the same wrong answers get without the attack (``honest_wrong``).

While that batch is graded, three other courses are graded at the same time (the machine
is mostly waiting on time-outs): the attacks with stock nbgrader (they all gain points
there, so they are real attacks), a course without bubblewrap (a warning, then the same
scores), and a student who resubmits through nbgrader's exchange.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

import hostile_notebooks as H
from coursekit import course
from coursekit.sandbox import probe_bwrap

AID = H.AID
TIMEOUT = 10  # seconds per cell for these runs (the course default is 30)
HONEST = {"honest_a": H.FULL, "honest_wrong": 0.0}
#: the batch is graded by two ``nbgrader autograde`` processes at once, one per shard of
#: students (``--student`` is a glob), as a course on a 2-core machine would
SHARDS = ("[a-m]*", "[n-z]*")

BWRAP, BWRAP_PROBLEM = probe_bwrap()
needs_sandbox = pytest.mark.skipif(BWRAP is None, reason=f"bubblewrap sandbox unavailable: {BWRAP_PROBLEM}")

RUNTIME = H.runtime_submissions()
INTEGRITY = H.integrity_submissions()
TAMPERING = H.tampering_submissions()
FILES = H.file_submissions()


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Batch:
    def __init__(self, root: Path, submissions: dict, proc, seconds: float, listener):
        self.root, self.submissions, self.proc, self.seconds = root, submissions, proc, seconds
        self.listener = listener
        self.log = proc.stdout + proc.stderr
        self.submitted_before = _digest(root / "submitted")

    def scores(self):
        return course.scores(self.root, AID)

    def cells(self, student):
        return course.grade_cells(self.root, AID, student)

    def notebook(self, student):
        return nbformat.read(self.root / "autograded" / student / AID / H.NB_NAME, as_version=4)

    def outputs(self, student, grade_id):
        cell = H.cell(self.notebook(student), grade_id)
        return cell.outputs


def _start_nbgrader(root: Path, *args: str) -> subprocess.Popen:
    """``nbgrader <args>`` in the course folder, started in the background."""
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    return subprocess.Popen([course.NBGRADER, *args], cwd=root, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _run_all(procs: list[subprocess.Popen]) -> subprocess.CompletedProcess:
    outputs = [p.communicate(timeout=1500) for p in procs]
    return subprocess.CompletedProcess(["nbgrader"], max(p.returncode for p in procs),
                                       "".join(o[0] for o in outputs), "".join(o[1] for o in outputs))


def _course_copy(base: Path, dest: Path, stock: bool = False) -> Path:
    """A copy of a course whose assignment is already generated (config, source, release, gradebook)."""
    dest.mkdir(parents=True)
    for name in ("nbgrader_config.py", "source", "release", "gradebook.db"):
        (shutil.copytree if (base / name).is_dir() else shutil.copy2)(base / name, dest / name)
    if stock:  # the course configuration without its "Grading safely" protections
        config = (dest / "nbgrader_config.py").read_text()
        (dest / "nbgrader_config.py").write_text(config[: config.index("import sys as _sys")])
    return dest


def _submit_all(root: Path, submissions: dict) -> None:
    for i, (student, sub) in enumerate(submissions.items()):
        course.submit(root, AID, student, sub.files, timestamp=f"2020-02-01 10:{i:02d}:00.000000 UTC")


def _resubmit(root: Path, work: Path) -> dict:
    """A student submits twice through the exchange; the instructor collects and grades after each."""
    exchange = ["--course", "soleimani-oped-2020", f"--Exchange.root={root / 'exchange'}", "--student=resubmitter"]
    course.nbgrader(root, "release_assignment", AID, "--force")
    scores = []
    for n, nb in enumerate([H.with_wrong(H.solution(), *H.WRONG), H.solution()]):
        if n:
            time.sleep(1.1)  # nbgrader timestamps: the second submission is strictly later
        (work / AID).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, work / AID / H.NB_NAME)
        course.nbgrader(work, "submit", AID, *exchange)
        course.nbgrader(root, "collect", AID, "--update", "--student=resubmitter")
        course.nbgrader(root, "autograde", AID, "--student=resubmitter", f"--Execute.timeout={TIMEOUT}")
        scores.append(course.scores(root, AID)["resubmitter"]["score"])
    return {"root": root, "scores": scores}


class Runs:
    """Everything graded at the start of the module, at the same time."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    tmp = tmp_path_factory.mktemp("hostile")
    base = course.copy_course(tmp / "base", [AID])
    course.nbgrader(base, "generate_assignment", AID, "--force")
    out = Runs()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.setblocking(False)
    stock_listener = socket.socket()
    stock_listener.bind(("127.0.0.1", 0))
    stock_listener.listen(5)
    stock_listener.setblocking(False)

    root = _course_copy(base, tmp / "batch")
    submissions = {**H.honest_submissions(), **RUNTIME, **INTEGRITY, **TAMPERING, **FILES,
                   "attack_spy": H.spy_submission(root, "honest_a", listener.getsockname()[1])}
    _submit_all(root, submissions)
    before = _digest(root / "submitted")

    stock = _course_copy(base, tmp / "stock", stock=True)
    _submit_all(stock, {"honest_a": submissions["honest_a"], **INTEGRITY,
                        "attack_spy": H.spy_submission(stock, "honest_a", stock_listener.getsockname()[1])})
    fallback = _course_copy(base, tmp / "no_bwrap")
    fallback_subs = {"honest_a": submissions["honest_a"], "rt_kill_parent": RUNTIME["rt_kill_parent"],
                     "attack_kernel_hook": INTEGRITY["attack_kernel_hook"]}
    _submit_all(fallback, fallback_subs)
    resubmission = _course_copy(base, tmp / "exchange")
    command_listener = socket.socket()
    command_listener.bind(("127.0.0.1", 0))
    command_listener.listen(5)
    command_listener.setblocking(False)
    command = _course_copy(base, tmp / "command")
    with open(command / "nbgrader_config.py", "a", encoding="utf-8") as fh:
        fh.write(f"\nc.Execute.timeout = {TIMEOUT}  # as --Execute.timeout for the other runs\n")
    command_subs = {**submissions,
                    "attack_spy": H.spy_submission(command, "honest_a", command_listener.getsockname()[1])}
    _submit_all(command, command_subs)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=5) as pool:
        batch_future = pool.submit(_run_all, [
            _start_nbgrader(root, "autograde", AID, f"--student={shard}", f"--Execute.timeout={TIMEOUT}")
            for shard in SHARDS])
        stock_future = pool.submit(_run_all, [_start_nbgrader(stock, "autograde", AID)])
        fallback_future = pool.submit(_run_all, [_start_nbgrader(
            fallback, "autograde", AID, "--SandboxedKernelManager.bwrap_path=/nonexistent/bwrap",
            f"--Execute.timeout={TIMEOUT}")])
        resubmit_future = pool.submit(_resubmit, resubmission, tmp / "student")
        command_future = pool.submit(_run_all, [subprocess.Popen(
            [sys.executable, "-m", "coursekit", "grade", AID, "--course", str(command), "--workers", "2"],
            cwd=Path(__file__).resolve().parent.parent, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)])
        batch = Batch(root, submissions, batch_future.result(), time.monotonic() - start, listener)
        batch.submitted_before = before
        out.batch = batch
        out.stock = (stock, stock_future.result(), stock_listener)
        out.fallback = (fallback, fallback_future.result(), fallback_subs)
        out.resubmission = resubmit_future.result()
        out.command = (command, command_future.result(), command_listener, command_subs)
    out.seconds = time.monotonic() - start
    print(f"\nbatch of {len(submissions)} submissions graded in {batch.seconds:.1f} s; "
          f"all four runs in {out.seconds:.1f} s")
    yield out
    listener.close()
    stock_listener.close()
    command_listener.close()


@pytest.fixture(scope="module")
def batch(runs) -> Batch:
    return runs.batch


def assert_exact(batch: Batch, student: str):
    sub = batch.submissions[student]
    assert batch.cells(student) == sub.expected_cells, sub.note
    assert batch.scores()[student]["score"] == sub.expected_score
    assert batch.scores()[student]["max_score"] == H.FULL + 8  # the points of the assignment never change


def assert_honest_unchanged(batch: Batch):
    scores = batch.scores()
    assert {s: scores[s]["score"] for s in HONEST} == HONEST
    for student in HONEST:
        assert batch.cells(student) == batch.submissions[student].expected_cells


def error_names(outputs) -> list[str]:
    return [o.get("ename") for o in outputs if o.get("output_type") == "error"]


def text_of(outputs) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


# --------------------------------------------------------------------------
def test_the_whole_batch_is_graded(batch):
    """Every submission with a notebook gets a grade; the run ends; the log names the problem students."""
    graded = set(batch.scores())
    expected = set(batch.submissions) - {"file_missing"}  # nothing nbgrader could grade was handed in
    assert graded == expected, batch.log[-3000:]
    assert batch.submissions["file_missing"].expected_score == 0
    # nbgrader exits 1 only because of the renamed notebook (its "No notebooks found" error)
    assert "for student 'file_renamed'" in batch.log
    assert "There was an error processing assignment 'a1_sourcing_close_reading' for student 'file_" \
           "renamed'" in batch.log
    assert batch.log.count("There was an error processing assignment '") == 1
    assert_honest_unchanged(batch)


@pytest.mark.parametrize("kind", sorted(H.RUNTIME_KINDS))
def test_cells_that_break_or_stop_their_kernel(batch, kind):
    """Endless loops, sleeps, syntax errors, exceptions, exits, huge output and memory, fork loops, kills."""
    student, answer = H.RUNTIME_KINDS[kind]
    if kind in ("fork_loop", "kills_parent", "1gb_memory") and BWRAP is None:
        pytest.skip("needs the sandbox's limits")
    assert_exact(batch, student)
    assert_honest_unchanged(batch)
    test = H.TEST_OF[answer]
    expected = 0.0 if test in batch.submissions[student].zero else H.POINTS[test]
    assert batch.cells(student)[test] == expected
    outputs = batch.outputs(student, answer)
    names = error_names(outputs)
    checks = {
        "never_ends": lambda: names[-1] in ("CellTimeoutError", "KeyboardInterrupt"),
        "sleeps_forever": lambda: names[-1] in ("CellTimeoutError", "KeyboardInterrupt"),
        "ignores_interrupt": lambda: "CellTimeoutError" in names,   # killed and restarted
        "syntax_error": lambda: names == ["SyntaxError"],
        "exception": lambda: names == ["ValueError"],
        "sys_exit": lambda: names == ["SystemExit"],
        "os_exit": lambda: "KernelStopped" in names,                 # restarted, earlier cells re-run
        "keyboard_interrupt": lambda: names == ["KeyboardInterrupt"],
        "50mb_output": lambda: (len(text_of(outputs).encode()) <= 110_000 and "output truncated" in text_of(outputs)
                                and (batch.root / "autograded" / student / AID / H.NB_NAME).stat().st_size < 2e6),
        "1gb_memory": lambda: names == ["MemoryError"],              # the 1 GiB address-space limit
        "fork_loop": lambda: names == ["BlockingIOError"],           # the process limit
        "kills_parent": lambda: ("parent: [Errno 1] Operation not permitted" in text_of(outputs)
                                 and "KernelStopped" in names),
    }
    assert checks[kind](), (names, text_of(outputs)[:500])


@pytest.mark.parametrize("student", sorted(INTEGRITY))
def test_answer_code_cannot_defeat_the_tests(batch, student):
    """Redefined helpers, patched builtins/pandas/numpy, swallowed exceptions, IPython hooks, kernel hooks."""
    assert_exact(batch, student)
    assert_honest_unchanged(batch)
    # exactly what the same wrong answers score without the attack
    wrong = batch.cells("honest_wrong")
    for grade_id in batch.submissions[student].zero:
        assert batch.cells(student)[grade_id] == wrong[grade_id] == 0
        assert error_names(batch.outputs(student, grade_id)), "the failing test must show an error"


@needs_sandbox
def test_sandbox_blocks_files_network_and_hidden_tests(batch):
    """The spy reads nothing it must not, writes nothing, reaches no network, never sees a test cell."""
    assert_exact(batch, "attack_spy")
    report = text_of(batch.outputs("attack_spy", "a1-q32-answer"))
    lines = [ln for ln in report.splitlines() if ": " in ln and not ln.startswith("SEEN-CELLS")]
    attempts = [ln for ln in lines if ln.split(":")[0] in {
        "read source", "read release", "read gradebook", "read other", "read autograded", "read config",
        "write gradebook", "write other student", "write own folder", "notebooks here", "notebooks above",
        "network", "internet"}]
    assert len(attempts) == 13, report[:2000]
    assert all("blocked" in ln and "SUCCEEDED" not in ln for ln in attempts), report[:2000]
    seen = report.split("SEEN-CELLS:", 1)[1]
    assert "HIDDEN TESTS" not in seen and "Check:" not in seen and "assert" not in seen
    with pytest.raises(BlockingIOError):
        batch.listener.accept()  # nobody connected to the grader's loopback port
    # the other student's work is untouched and graded in full
    assert _digest(batch.root / "submitted")["honest_a/a1_sourcing_close_reading/" + H.NB_NAME] == \
        batch.submitted_before["honest_a/a1_sourcing_close_reading/" + H.NB_NAME]
    assert batch.scores()["honest_a"]["score"] == H.FULL


@pytest.mark.parametrize("kind", sorted(H.TAMPERING_KINDS))
def test_tests_ids_points_and_locked_cells_are_restored(batch, kind):
    """Edited, deleted or renamed tests, raised points, edited locked cells, metadata that aborts nbgrader."""
    student, answer = H.TAMPERING_KINDS[kind]
    assert_exact(batch, student)
    assert_honest_unchanged(batch)
    if answer:
        assert batch.cells(student)[H.TEST_OF[answer]] == 0.0 == batch.cells("honest_wrong")[H.TEST_OF[answer]]
    nb = batch.notebook(student)
    for grade_id, points in H.POINTS.items():
        c = H.cell(nb, grade_id)
        assert c.metadata.nbgrader["points"] == points
        assert c.source == H.cell(H.solution(), grade_id).source, f"{grade_id} must be the original test"
    assert H.cell(nb, "a1-setup").source == H.cell(H.solution(), "a1-setup").source


@pytest.mark.parametrize("student", sorted(FILES))
def test_broken_files_get_a_clear_message_and_the_rest_is_graded(batch, student):
    """Not JSON, old nbformat, missing, extra file, renamed, wrong kernelspec."""
    from coursekit.safety import preflight

    sub = batch.submissions[student]
    if student != "file_missing":
        assert_exact(batch, student)
    assert_honest_unchanged(batch)
    problems = [p for p in preflight(batch.root, AID) if p.student == student]
    words = {"file_not_json": "not valid JSON", "file_nbformat3": "old notebook format",
             "file_missing": "missing", "file_extra": "extra file", "file_renamed": "renamed?",
             "file_wrong_kernelspec": "kernelspec"}[student]
    assert any(words in p.message for p in problems), problems
    assert all(student in str(p) for p in problems)
    if student != "file_missing":  # the grading log names the student and the problem too
        assert any(student in line and words in line for line in batch.log.splitlines()), sub.note


def test_preflight_reports_only_real_problems(batch):
    from coursekit.safety import preflight

    problems = preflight(batch.root, AID)
    assert not [p for p in problems if p.student.startswith(("honest", "rt_"))]
    errors = {p.student for p in problems if p.severity == "error"}
    assert errors == {"file_not_json", "file_missing", "file_renamed"}


def test_feedback_shows_no_hidden_tests(batch):
    """`python -m coursekit feedback` = stock generate_feedback with the course's feedback preprocessors."""
    proc = subprocess.run([sys.executable, "-m", "coursekit", "feedback", AID, "--course", str(batch.root)],
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pages = sorted((batch.root / "feedback").glob(f"*/{AID}/*.html"))
    assert {p.parts[-3] for p in pages} >= set(HONEST) | {"attack_spy", "rt_os_exit", "tamper_tests"}
    hidden = []
    for c in H.solution().cells:
        if "### BEGIN HIDDEN TESTS" in c.source:
            block = c.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
            hidden += [ln.strip() for ln in block.splitlines() if len(ln.strip()) > 12]
    assert len(hidden) > 10
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "BEGIN HIDDEN TESTS" not in text, page
        for line in hidden:
            assert line not in text, (page, line)
    wrong = (batch.root / "feedback" / "honest_wrong" / AID / H.NB_NAME.replace(".ipynb", ".html")).read_text()
    assert "AssertionError" in wrong  # failed tests still say so


def test_rerun_gives_the_same_scores_and_keeps_manual_grades(batch):
    """Re-running autograde (with --force) changes nothing, and manual grades and comments survive."""
    from nbgrader.api import Gradebook

    # one grading run over a glob: honest_a, honest_wrong, rt_os_exit (kernel restart and replay),
    # attack_swallow_exceptions (an attack), file_not_json, file_wrong_kernelspec
    pattern = "*o[ns]*"
    students = sorted(p.parent.name for p in (batch.root / "submitted").glob(f"{pattern}/{AID}"))
    assert {"honest_a", "honest_wrong", "rt_os_exit", "attack_swallow_exceptions"} <= set(students)
    before = {s: batch.cells(s) for s in students}
    with Gradebook(course.db_url(batch.root)) as gb:
        grade = gb.find_grade("a1-q33-answer", "sourcing_and_close_reading", AID, "honest_a")
        grade.manual_score = 3
        comment = gb.find_comment("a1-q33-answer", "sourcing_and_close_reading", AID, "honest_a")
        comment.manual_comment = "Good use of paragraphs 1 and 17."
        gb.db.commit()
    from coursekit.safety import list_backups

    backups = len(list_backups(batch.root))
    proc = course.nbgrader(batch.root, "autograde", AID, "--force", f"--student={pattern}",
                           f"--Execute.timeout={TIMEOUT}")
    assert len(list_backups(batch.root)) == backups + 1  # a gradebook backup before each grading run
    assert proc.stderr.count("Autograding ") == len(students)
    after = {s: batch.cells(s) for s in students}
    before["honest_a"]["a1-q33-answer"] = 3.0
    assert after == before
    with Gradebook(course.db_url(batch.root)) as gb:
        comment = gb.find_comment("a1-q33-answer", "sourcing_and_close_reading", AID, "honest_a")
        assert comment.manual_comment == "Good use of paragraphs 1 and 17."
    assert batch.scores()["honest_a"]["score"] == H.FULL + 3


def test_submitted_files_are_never_modified(batch):
    assert _digest(batch.root / "submitted") == batch.submitted_before


def test_resubmission_keeps_the_earlier_one_and_grades_the_latest(runs):
    """The real exchange: release, submit twice, collect --update, autograde after each."""
    root, scores = runs.resubmission["root"], runs.resubmission["scores"]
    assert scores == [0.0, H.FULL]  # the wrong first submission, then the corrected one
    inbound = sorted((root / "exchange" / "soleimani-oped-2020" / "inbound").glob(f"resubmitter+{AID}+*"))
    assert len(inbound) == 2  # both submissions are kept in the exchange
    from nbgrader.api import Gradebook
    from nbgrader.utils import parse_utc

    stamps = sorted(parse_utc(p.name.split("+")[2]) for p in inbound)
    with Gradebook(course.db_url(root)) as gb:
        graded_at = gb.find_submission(AID, "resubmitter").timestamp
    assert stamps[-1].replace(tzinfo=None) == graded_at.replace(tzinfo=None)
    assert stamps[0] < stamps[-1]


def test_backup_before_each_run_and_the_documented_restore(batch):
    """A backup per grading run; `python -m coursekit restore` puts the gradebook back."""
    from coursekit.safety import list_backups

    assert batch.log.count("gradebook backed up to") == len(SHARDS)  # once per grading process
    now = batch.scores()
    first = list_backups(batch.root)[0]  # taken before the batch was graded
    with sqlite3.connect(first) as db:
        assert db.execute("select count(*) from submitted_assignment").fetchone()[0] == 0
    proc = subprocess.run([sys.executable, "-m", "coursekit", "restore", str(first), "--course", str(batch.root)],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert course.scores(batch.root, AID) == {}  # the state before grading
    undo = [p for p in list_backups(batch.root) if p.stem.endswith("before-restore")]
    assert len(undo) == 1
    proc = subprocess.run([sys.executable, "-m", "coursekit", "restore", str(undo[0]), "--course", str(batch.root)],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert batch.scores() == now


def test_without_bubblewrap_grading_warns_and_still_works(runs):
    root, proc, subs = runs.fallback
    assert "UNSANDBOXED GRADING" in proc.stderr and "apt-get install bubblewrap" in proc.stderr
    scores = course.scores(root, AID)
    for student, sub in subs.items():
        assert scores[student]["score"] == sub.expected_score, student
        assert course.grade_cells(root, AID, student) == sub.expected_cells


def test_the_attacks_defeat_stock_nbgrader(runs):
    """Evidence that the attack notebooks are real: stock nbgrader gives every one of them unearned points."""
    root, proc, listener = runs.stock
    scores = course.scores(root, AID)
    for student, sub in INTEGRITY.items():
        assert sub.expected_score < H.FULL
        assert scores[student]["score"] == H.FULL, f"{student}: stock nbgrader should have been fooled"
    report = text_of(H.cell(nbformat.read(root / "autograded" / "attack_spy" / AID / H.NB_NAME, as_version=4),
                            "a1-q32-answer").outputs)
    assert "read gradebook: SUCCEEDED" in report and "read source: SUCCEEDED" in report
    assert "HIDDEN TESTS" in report  # the spy saw the hidden tests
    listener.accept()  # and reached the grader's network


@needs_sandbox
def test_the_grading_command_scores_the_batch_exactly_like_autograde(runs):
    """``python -m coursekit grade`` (parallel workers, kernels forked from the template) on the same batch."""
    root, proc, listener, subs = runs.command
    log = proc.stdout + proc.stderr
    if os.geteuid() == 0:
        assert "kernels forked from a template" in log, log[-3000:]
    batch = runs.batch
    tests = set(H.POINTS)  # the autograded test cells (a test above adds a manual grade in the batch)
    graded = set(course.scores(root, AID))
    assert graded == set(batch.scores()) == set(subs) - {"file_missing"}
    for student in sorted(graded):
        ours = {k: v for k, v in course.grade_cells(root, AID, student).items() if k in tests}
        assert len(ours) == len(tests)
        assert ours == {k: v for k, v in batch.cells(student).items() if k in tests}, student
    assert "file_renamed" in log and proc.returncode == 1  # the one notebook nbgrader cannot find
    spy = nbformat.read(root / "autograded" / "attack_spy" / AID / H.NB_NAME, as_version=4)
    report = text_of(H.cell(spy, "a1-q32-answer").outputs)
    attempts = [ln for ln in report.splitlines() if ": " in ln and ln.split(":")[0] in {
        "read source", "read release", "read gradebook", "read other", "read autograded", "read config",
        "write gradebook", "write other student", "write own folder", "notebooks here", "notebooks above",
        "network", "internet"}]
    assert len(attempts) == 13 and all("blocked" in ln and "SUCCEEDED" not in ln for ln in attempts), report[:2000]
    with pytest.raises(BlockingIOError):
        listener.accept()
