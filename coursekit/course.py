"""Drive the real nbgrader on a course folder: used by tests, benchmarks and instructor tools."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import COURSE_DIR

NBGRADER = str(Path(sys.executable).with_name("nbgrader"))
GENERATED = ("release", "submitted", "autograded", "feedback", "exchange", "downloaded", "backups")


def copy_course(dest: Path, assignments: list[str] | None = None) -> Path:
    """Copy the course folder (config and sources only, nothing generated) to ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(COURSE_DIR / "nbgrader_config.py", dest / "nbgrader_config.py")
    for src in sorted((COURSE_DIR / "source").iterdir()):
        if src.is_dir() and (assignments is None or src.name in assignments):
            shutil.copytree(src, dest / "source" / src.name,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return dest


def nbgrader(course: Path, *args: str, check: bool = True, timeout: float = 900,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``nbgrader <args>`` in ``course`` (so it reads that folder's nbgrader_config.py)."""
    full_env = {**os.environ, **(env or {})}
    # nbgrader shells out to `alembic`, which lives beside the interpreter in a venv.
    full_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), full_env.get("PATH", "")])
    proc = subprocess.run([NBGRADER, *args], cwd=course, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def db_url(course: Path) -> str:
    return os.environ.get("NBGRADER_DB_URL", "sqlite:///" + str(Path(course) / "gradebook.db"))


def submit(course: Path, assignment: str, student: str, files: dict[str, Path | bytes | str],
           timestamp: str | None = None) -> Path:
    """Place a submission in ``submitted/<student>/<assignment>/`` as ``nbgrader collect`` would."""
    folder = Path(course) / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = folder / name
        if isinstance(content, Path):
            shutil.copy2(content, target)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    if timestamp:
        (folder / "timestamp.txt").write_text(timestamp)
    return folder


def scores(course: Path, assignment: str) -> dict[str, dict]:
    """Per-student totals from the gradebook: score, max_score, auto and manual parts."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(db_url(course)) as gb:
        for sub in gb.assignment_submissions(assignment):
            out[sub.student.id] = {
                "score": sub.score,
                "max_score": sub.max_score,
                "code_score": sub.code_score,
                "written_score": sub.written_score,
                "needs_manual_grade": sub.needs_manual_grade,
            }
    return out


def grade_cells(course: Path, assignment: str, student: str) -> dict[str, float]:
    """Score of every graded cell (grade_id -> score) of one student's submission."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(db_url(course)) as gb:
        sub = gb.find_submission(assignment, student)
        for nb in sub.notebooks:
            for grade in nb.grades:
                out[grade.name] = grade.score
    return out


def add_students(course: Path, students: list[str]) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(db_url(course)) as gb:
        for s in students:
            gb.update_or_create_student(s)


def variant(notebook: Path, dest: Path, answers: dict[str, str]) -> Path:
    """Write a copy of ``notebook`` to ``dest`` with the cells named by grade_id given new sources.

    Used to build plausible student submissions (a misconception, a hard-coded value...) from the
    solution notebook.
    """
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    seen = set()
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
            seen.add(grade_id)
    missing = set(answers) - seen
    if missing:
        raise KeyError(f"no cells with grade_id {sorted(missing)} in {notebook}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dest))
    return dest
