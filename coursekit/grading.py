"""Fast, exact autograding of a whole class: ``python -m coursekit grade ASSIGNMENT``.

Why it is faster than ``nbgrader autograde`` while giving the same scores
------------------------------------------------------------------------
Stock ``nbgrader autograde`` grades one submission after another in one
process.  Most of each submission's time is spent starting and stopping a
Jupyter kernel and waiting on it; the grading process itself sits idle about
half the time.  This command keeps a few long-lived worker processes (forked
after nbgrader is imported, so the ~2 s of imports are paid once), hands them
students one at a time from a shared queue, and lets each worker run
**nbgrader's own** ``Autograde`` converter for that student exactly as
``nbgrader autograde ASSIGNMENT --student ID`` would, with the course's
``nbgrader_config.py``.  Nothing about how a notebook is sanitised, executed
or scored is reimplemented here, so the scores are nbgrader's; while one
worker waits for its kernel to start or stop, the others use the CPU.

Parallel workers alone reach about 2x on 2 cores, because grading with the
course's safety layer is CPU-bound: two kernels per notebook, each paying for
its Python start-up and for importing pandas and matplotlib.  So the command
also starts one *kernel template* (:mod:`coursekit.prefork`) that imports those
once; every worker's kernels are forked from it into a fresh bubblewrap sandbox
(same sandbox, uid and limits as an ordinary kernel), which cuts the CPU per
kernel about five-fold.  ``--no-prefork`` turns that off.

The gradebook
-------------
All workers write to one gradebook.  SQLite serialises writers with a file
lock and nbgrader's transactions are short, so concurrent workers are safe on
a local disk (``tests/test_parallel_grading.py`` checks this with concurrent
writers and compares scores with a sequential run).  SQLite's locking is not
reliable on network file systems (NFS, SMB/CIFS, sshfs), so on those the
command falls back to one worker and says so: use PostgreSQL there
(``NBGRADER_DB_URL``, see the README).  Workers open SQLite with a 60 s busy
timeout instead of Python's default 5 s, and a student whose grading failed
for a transient reason (a locked database, a kernel that did not start) is
retried once at the end.

Before grading, the command backs up the gradebook and runs the pre-flight
checks of :mod:`coursekit.safety` (``backup_gradebook`` and ``preflight``).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import glob
import logging
import os
import random
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import COURSE_DIR

#: Files systems on which SQLite's locking cannot be trusted by concurrent writers.
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "afs", "9p", "glusterfs",
                       "fuse.glusterfs", "ceph", "fuse.ceph", "lustre", "gpfs"}

#: Log text that marks a failure worth one retry (not the student's fault).
TRANSIENT_MARKERS = ("database is locked", "Kernel died before replying", "Kernel didn't respond",
                     "Address already in use", "worker process died", "BrokenProcessPool")


# --------------------------------------------------------------------------- results
@dataclass
class StudentResult:
    student: str
    ok: bool
    seconds: float
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    log: str = ""
    attempts: int = 1


@dataclass
class GradeRun:
    assignment: str
    course: Path
    workers: int
    db_url: str
    results: list[StudentResult]
    skipped: dict[str, str]
    seconds: float
    backup: object = None
    problems: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[StudentResult]:
        return [r for r in self.results if not r.ok]

    @property
    def graded(self) -> list[StudentResult]:
        return [r for r in self.results if r.ok]


# --------------------------------------------------------------------------- helpers
def _quiet_sqlalchemy_warning() -> None:
    # nbgrader 0.9 + SQLAlchemy 2 warn at every autograde; grades are stored correctly
    warnings.filterwarnings("ignore", message=r"Object of type <Submitted.*> not in session")


def _load_app(course: Path):
    """An initialised AutogradeApp for ``course`` (reads its nbgrader_config.py, as the CLI does)."""
    _quiet_sqlalchemy_warning()
    from nbgrader.apps.autogradeapp import AutogradeApp

    here = os.getcwd()
    os.chdir(course)
    try:
        app = AutogradeApp()
        app.initialize([])
    finally:
        os.chdir(here)
    return app


def is_sqlite(db_url: str) -> bool:
    return db_url.startswith("sqlite")


def sqlite_path(db_url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def filesystem_type(path: Path) -> str:
    """The mount type (ext4, nfs4, ...) of the file system holding ``path`` (Linux; '' elsewhere)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    target = os.path.realpath(path if path.exists() else path.parent)
    best, kind = "", ""
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
            best, kind = mount, parts[2]
    return kind


def parallel_safe(db_url: str) -> tuple[bool, str]:
    """Whether several processes may write this gradebook at once, and why (not)."""
    if not is_sqlite(db_url):
        return True, "server database"
    path = sqlite_path(db_url)
    if path is None:
        return False, "in-memory SQLite cannot be shared between processes"
    kind = filesystem_type(path)
    if kind in NETWORK_FILESYSTEMS:
        return False, (f"the SQLite gradebook {path} is on a network file system ({kind}), where SQLite's "
                       "locking is unreliable; set NBGRADER_DB_URL to a PostgreSQL database to grade in parallel")
    return True, f"SQLite on a local file system ({kind or 'unknown type'})"


def with_busy_timeout(db_url: str, seconds: int = 60) -> str:
    """Give an SQLite URL a longer busy timeout (seconds a writer waits for the lock)."""
    if is_sqlite(db_url) and "timeout=" not in db_url:
        return db_url + ("&" if "?" in db_url else "?") + f"timeout={seconds}"
    return db_url


def default_workers() -> int:
    """Two workers per core: while one waits on its kernel, the other uses the core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(2 * cores, 16))


def submitted_students(coursedir, assignment: str) -> tuple[list[str], dict[str, str]]:
    """Students with a submission folder for ``assignment``, and those skipped (with the reason)."""
    pattern = coursedir.format_path(coursedir.submitted_directory, "*", assignment)
    root_rx = re.escape(coursedir.format_path(coursedir.submitted_directory, "STUDENT", assignment))
    root_rx = root_rx.replace("STUDENT", "(?P<student>[^/]+)")
    students, skipped = [], {}
    exclude = {s for s in coursedir.student_id_exclude.split(",") if s}
    for folder in sorted(glob.glob(pattern)):
        m = re.fullmatch(root_rx, folder)
        if not m or not os.path.isdir(folder):
            continue
        student = m.group("student")
        if student in exclude:
            skipped[student] = "excluded by CourseDirectory.student_id_exclude"
        elif not glob.glob(os.path.join(glob.escape(folder), "*.ipynb")):
            skipped[student] = "no notebooks in the submission folder"
        else:
            students.append(student)
    return students, skipped


# --------------------------------------------------------------------------- worker side
_WORKER: dict = {}


class _Capture(logging.Handler):
    """Keeps formatted log lines (formatted at once: the arguments may be live database rows)."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
        self.records: list[tuple[int, str, str]] = []  # (level, message, formatted line)

    def emit(self, record):
        try:
            message = record.getMessage()
            line = self.format(record)
        except Exception as exc:  # noqa: BLE001 - a log line must never break grading
            message = line = f"[{record.levelname}] (unprintable log message: {exc})"
        self.records.append((record.levelno, message, line))


class _CheckedSchemaJsonschema:
    """Stands in for the ``jsonschema`` module inside ``nbgrader.nbgraderformat.common``.

    nbgrader validates every cell's metadata with ``jsonschema.validate``, which re-checks
    nbgrader's own (constant) schema against the JSON Schema meta-schema on every call: about
    two thirds of the grader's own CPU time per notebook.  This ``validate`` does exactly what
    ``jsonschema.validate`` does (same validator class, same ``best_match`` error) but checks
    each distinct schema once per worker.  Anything else is the real module.
    """

    def __init__(self, module):
        self._module = module
        self._checked: set[str] = set()

    def __getattr__(self, name):
        return getattr(self._module, name)

    def validate(self, instance, schema, cls=None, *args, **kwargs):
        import json

        js = self._module
        if cls is None:
            cls = js.validators.validator_for(schema)
        key = f"{cls.__module__}.{cls.__qualname__}:" + json.dumps(schema, sort_keys=True, default=str)
        if key not in self._checked:
            cls.check_schema(schema)
            self._checked.add(key)
        error = js.exceptions.best_match(cls(schema, *args, **kwargs).iter_errors(instance))
        if error is not None:
            raise error


def _speed_up_metadata_checks() -> None:
    try:
        import jsonschema
        from nbgrader.nbgraderformat import common
    except ImportError:
        return
    if getattr(common, "jsonschema", None) is jsonschema:
        common.jsonschema = _CheckedSchemaJsonschema(jsonschema)


def _worker_init(course: str, assignment: str, db_url: str, stderr_path: str | None,
                 backup_taken: bool = False, prefork: bool = True) -> None:
    if backup_taken:
        # the command backed the gradebook up once for all workers (coursekit.safety's
        # pre-convert hook would otherwise take one per worker process)
        os.environ["COURSEKIT_SKIP_AUTO_BACKUP"] = "1"
    if stderr_path:
        # kernels inherit this process's stdout/stderr: keep their chatter out of the console
        fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    _speed_up_metadata_checks()
    app = _load_app(Path(course))
    app.coursedir.assignment_id = assignment
    app.coursedir.db_url = db_url
    app.config.SandboxedKernelManager.prefork = prefork
    capture = _Capture()
    for handler in list(app.log.handlers):
        app.log.removeHandler(handler)
    app.log.addHandler(capture)
    app.log.setLevel(logging.INFO)
    app.log.propagate = False
    _WORKER.update(app=app, capture=capture, assignment=assignment)


def _start_kernel_template(app):
    """Start the kernel template the workers fork their kernels from (:mod:`coursekit.prefork`).

    Started once, in the main thread of the command's process, so that it lives as long as the
    run (it exits with the thread that started it); the workers, forked later, share it.
    """
    try:
        from .sandbox import KernelTemplate, SandboxedKernelManager, probe_bwrap
    except ImportError:
        return None, "kernels start from scratch: coursekit.sandbox is not installed"
    app.config.SandboxedKernelManager.prefork = True
    km = SandboxedKernelManager(kernel_name="python3", config=app.config)
    if os.geteuid() != 0:
        return None, "kernels start from scratch: forking them from a template needs a grader running as root"
    if not km.sandbox or probe_bwrap(km.bwrap_path, km.uid)[0] is None:
        return None, "kernels start from scratch: forking them from a template needs the bubblewrap sandbox"
    env = km._kernel_env({**os.environ, "NBGRADER_EXECUTION": "autograde"})
    template = KernelTemplate.get(env, list(km.prefork_modules))  # starts in the background
    if template is None:
        return None, "kernels start from scratch: the kernel template did not start (see the warning above)"
    return template, (f"kernels forked from a template (pid {template.pid}) that imports ipykernel and "
                      f"{', '.join(km.prefork_modules)} once")


def _grade_one(student: str, force: bool) -> StudentResult:
    """Autograde one student's submission with nbgrader's converter (in a worker)."""
    from nbgrader.converters import Autograde, NbGraderException

    app, capture = _WORKER["app"], _WORKER["capture"]
    capture.records.clear()
    app.coursedir.student_id = glob.escape(student)
    start = time.perf_counter()
    ok, crash = True, ""
    try:
        converter = Autograde(coursedir=app.coursedir, parent=app)
        converter.force = force
        converter.start()
    except NbGraderException:
        ok = False
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported per student, never stops the class
        ok, crash = False, f"{type(exc).__name__}: {exc}"
    finally:
        app.coursedir.student_id = "*"
    seconds = time.perf_counter() - start
    lines = [line for _, _, line in capture.records]
    errors = [msg.strip().splitlines()[-1] for level, msg, _ in capture.records
              if level >= logging.ERROR and msg.strip()]
    if crash:
        errors.append(crash)
        lines.append(f"[ERROR] {crash}")
    warns = [msg for level, msg, _ in capture.records if level == logging.WARNING]
    return StudentResult(student, ok, seconds, errors, warns, "\n".join(lines))


# --------------------------------------------------------------------------- safety hooks
def _safety_hooks(course: Path, assignment: str, say) -> tuple[object, list, list[str]]:
    """Back up the gradebook and run the pre-flight checks from coursekit.safety."""
    notes: list[str] = []
    import importlib

    try:
        safety = importlib.import_module(f"{__package__}.safety")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.safety":
            raise
        notes.append("coursekit.safety is not installed: no gradebook backup and no pre-flight checks")
        say("warning: " + notes[-1])
        return None, [], notes
    backup = safety.backup_gradebook(course)
    if backup:
        say(f"gradebook backed up: {backup}")
    problems = list(safety.preflight(course, assignment) or [])
    for p in problems:
        say(f"pre-flight {getattr(p, 'severity', 'problem')}: student {getattr(p, 'student', '?')}, "
            f"{getattr(p, 'notebook', '?')}: {getattr(p, 'message', p)}")
    return backup, problems, notes


# --------------------------------------------------------------------------- driver
def grade_class(course: Path | str, assignment: str, *, workers: int | None = None,
                students: list[str] | None = None, force: bool = False,
                log_dir: Path | str | None = None, say=print, safety_checks: bool = True,
                prefork: bool = True) -> GradeRun:
    """Autograde every submission of ``assignment`` in ``course`` with ``workers`` processes.

    Scores are written to the course's gradebook exactly as ``nbgrader autograde`` writes them.
    ``force`` regrades submissions that were already autograded (like ``--force``).
    ``prefork`` forks each worker's kernels from a template that imported the libraries once
    (:mod:`coursekit.prefork`; only where the grader runs as root with bubblewrap).
    """
    import concurrent.futures as cf
    import multiprocessing as mp

    course = Path(course).resolve()
    t0 = time.perf_counter()
    app = _load_app(course)
    coursedir = app.coursedir
    db_url = coursedir.db_url
    template, template_note = None, ""
    if prefork and sys.platform.startswith("linux"):  # workers are forked: they share the template
        template, template_note = _start_kernel_template(app)  # imports while we do the rest

    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url, coursedir.course_id) as gb:  # creates the tables on a new database
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise SystemExit(f"assignment {assignment!r} is not in the gradebook: "
                             f"run `nbgrader generate_assignment {assignment}` first") from None

    found, skipped = submitted_students(coursedir, assignment)
    if students:
        wanted = set(students)
        missing = wanted - set(found) - set(skipped)
        for s in sorted(missing):
            skipped[s] = "no submission folder"
        found = [s for s in found if s in wanted]

    backup, problems, notes = (None, [], [])
    if safety_checks:
        backup, problems, notes = _safety_hooks(course, assignment, say)
    if template_note:
        notes.append(template_note)
        say(template_note)

    n_workers = workers or default_workers()
    n_workers = max(1, min(n_workers, len(found) or 1))
    safe, why = parallel_safe(db_url)
    if n_workers > 1 and not safe:
        notes.append(f"grading with one worker: {why}")
        say("warning: " + notes[-1])
        n_workers = 1

    log_dir = Path(log_dir) if log_dir else course / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = log_dir / f"grade-{assignment}-{stamp}.log"
    stderr_path = log_dir / f"grade-{assignment}-{stamp}.kernels.log"
    worker_db = with_busy_timeout(db_url)

    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    if ctx.get_start_method() == "fork":
        # what each worker would otherwise import for its first kernel (jupyter_client looks up
        # the native kernel through ipykernel, which loads IPython): paid here once instead
        with contextlib.suppress(ImportError):
            import ipykernel.kernelspec  # noqa: F401
    results: dict[str, StudentResult] = {}

    def run(batch: list[str], nproc: int, attempt: int) -> None:
        if not batch:
            return
        done = 0
        with cf.ProcessPoolExecutor(max_workers=nproc, mp_context=ctx, initializer=_worker_init,
                                    initargs=(str(course), assignment, worker_db, str(stderr_path),
                                              backup is not None, prefork)) as pool:
            futures = {pool.submit(_grade_one, s, force): s for s in batch}
            for fut in cf.as_completed(futures):
                student = futures[fut]
                try:
                    res = fut.result()
                except cf.process.BrokenProcessPool as exc:  # a worker died (killed, out of memory...)
                    res = StudentResult(student, False, 0.0, [f"worker process died: {exc}"])
                except Exception as exc:  # noqa: BLE001 - reported per student
                    res = StudentResult(student, False, 0.0, [f"grading raised {type(exc).__name__}: {exc}"])
                res.attempts = attempt
                results[student] = res
                done += 1
                status = "ok" if res.ok else "FAILED: " + ("; ".join(res.errors[-1:]) or "see log")
                say(f"[{done:>{len(str(len(batch)))}}/{len(batch)}] {student}: {status} ({res.seconds:.1f} s)")

    say(f"grading {len(found)} submission(s) of {assignment} with {n_workers} worker(s); "
        f"gradebook {'SQLite' if is_sqlite(db_url) else db_url.split(':', 1)[0]}")
    run(found, n_workers, 1)
    retry = [s for s, r in results.items()
             if not r.ok and any(m in (r.log + " ".join(r.errors)) for m in TRANSIENT_MARKERS)]
    if retry:
        say(f"retrying {len(retry)} submission(s) that failed for a transient reason, one at a time")
        run(sorted(retry), 1, 2)

    if template is not None and not template.ready(timeout=5):
        notes.append(f"the kernel template failed ({template.problem or 'it exited'}): kernels started "
                     "from scratch")
        say("warning: " + notes[-1])
    ordered = [results[s] for s in found]
    with open(log_path, "w", encoding="utf-8") as fh:
        fh.write(f"# coursekit grade {assignment}: {len(ordered)} submissions, {n_workers} workers\n")
        for res in ordered:
            fh.write(f"\n## {res.student} ({'ok' if res.ok else 'FAILED'}, {res.seconds:.2f} s, "
                     f"attempt {res.attempts})\n{res.log}\n")
        for s, why_skipped in sorted(skipped.items()):
            fh.write(f"\n## {s} skipped: {why_skipped}\n")
    run_ = GradeRun(assignment, course, n_workers, db_url, ordered, skipped, time.perf_counter() - t0,
                    backup, problems, notes)
    say(summary(run_) + f"\nfull log: {log_path}")
    return run_


def summary(run: GradeRun) -> str:
    n = len(run.results)
    per = run.seconds / n if n else 0.0
    lines = [f"{run.assignment}: {len(run.graded)} graded, {len(run.failed)} failed, {len(run.skipped)} skipped "
             f"in {run.seconds:.1f} s ({per:.2f} s a submission, {run.workers} worker(s))"]
    for r in run.failed:
        lines.append(f"  FAILED {r.student}: {'; '.join(r.errors) or 'see the log'}")
    for s, why in sorted(run.skipped.items()):
        lines.append(f"  skipped {s}: {why}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- synthetic classes
SYNTHETIC_KINDS = ("correct", "partial", "blank")


def _strip_solution_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines()
                     if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))


def synthetic_class(course: Path | str, n_students: int, assignments: list[str] | None = None,
                    seed: int = 0, prefix: str = "student") -> dict[str, str]:
    """Place ``n_students`` submissions of every assignment in ``course/submitted``.

    Needs ``release/`` (run ``nbgrader generate_assignment`` first).  Students cycle through
    *correct* (every answer cell from the solution), *partial* (a seeded random half of the answer
    cells solved, the rest left as released) and *blank* (the released notebook unchanged).
    Returns {student_id: kind}.
    """
    import nbformat

    course = Path(course)
    rng = random.Random(seed)
    aids = assignments or sorted(p.name for p in (course / "release").iterdir() if p.is_dir())
    kinds = {f"{prefix}{i:03d}": SYNTHETIC_KINDS[i % len(SYNTHETIC_KINDS)] for i in range(n_students)}
    for aid in aids:
        for released in sorted((course / "release" / aid).glob("*.ipynb")):
            solution = nbformat.read(course / "source" / aid / released.name, as_version=4)
            answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
                       if c.metadata.get("nbgrader", {}).get("solution")}
            for student, kind in kinds.items():
                nb = nbformat.read(released, as_version=4)
                for cell in nb.cells:
                    meta = cell.metadata.get("nbgrader", {})
                    if not meta.get("solution"):
                        continue
                    if kind == "correct" or (kind == "partial" and rng.random() < 0.5):
                        cell.source = _strip_solution_markers(answers[meta["grade_id"]])
                folder = course / "submitted" / student / aid
                folder.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, str(folder / released.name))
                (folder / "timestamp.txt").write_text("2020-02-10 09:00:00.000000 UTC")
    return kinds


# --------------------------------------------------------------------------- CLI
def _cmd_grade(args) -> int:
    run = grade_class(args.course, args.assignment, workers=args.workers, students=args.student,
                      force=args.force, log_dir=args.log_dir, prefork=args.prefork)
    return 1 if run.failed else 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "grade", help="autograde a class in parallel (same scores as `nbgrader autograde`, faster)",
        description="Autograde every submission of ASSIGNMENT with a few worker processes running "
                    "nbgrader's own Autograde converter. Backs up the gradebook and runs the "
                    "pre-flight checks first. Exit status 1 if any submission failed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("assignment", help="assignment id (a folder under source/)")
    p.add_argument("--course", type=Path, default=COURSE_DIR, help="the nbgrader course folder")
    p.add_argument("--workers", type=int, default=None,
                   help=f"worker processes (default: two per core, here {default_workers()})")
    p.add_argument("--student", action="append", help="grade only this student (repeatable)")
    p.add_argument("--force", action="store_true", help="regrade submissions that were already autograded")
    p.add_argument("--log-dir", type=Path, default=None, help="where to write the log (default: COURSE/logs)")
    p.add_argument("--no-prefork", dest="prefork", action="store_false",
                   help="start every kernel from scratch instead of forking it from a kernel template "
                        "(coursekit.prefork): slower, for comparison or if the template misbehaves")
    p.set_defaults(func=_cmd_grade)
