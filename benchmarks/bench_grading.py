"""Grading speed: stock ``nbgrader autograde`` against ``python -m coursekit grade`` at 1, 2 and 4 workers.

Builds a synthetic class of N students (correct, partial and blank submissions, in turn) for
every assignment in ``assignments/source``, grades each assignment from the same starting
state with

* stock ``nbgrader autograde <assignment>`` (one process, one student after another), and
* ``python -m coursekit grade <assignment> --workers W`` for each W (kernels forked from the
  kernel template, ``coursekit/prefork.py``), and once more with ``--no-prefork`` (kernels
  started from scratch: what parallel workers alone give),

checks that every graded cell got the same score from all of them, and prints seconds and
CPU-seconds (the whole machine's busy time) per submission and the speed-up over stock.  As a
floor it also runs the same submitted notebooks with nbclient alone (one process, one after
another, no grading, no sandbox): the cost of executing the notebooks at all.

A measurement, not a test: it prints figures and exits 0 (1 if the scores differ).

    .venv/bin/python benchmarks/bench_grading.py --students 24 [--workers 1 2 4] [--assignment ID]

Both grading commands use the course's nbgrader_config.py as it is (sandboxed student kernel,
judge kernel, gradebook backup), so the comparison is between two ways of running the same
grading.  ``--pipeline nbgrader`` instead grades with nbgrader's own preprocessors (one unsandboxed
kernel per notebook, as stock nbgrader ships), to show the same comparison without the course's
safety layer.  Other programs using the CPU slow the parallel runs most; the script prints the
load average before and after so a noisy run can be recognised.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coursekit import assignment_ids, course, grading  # noqa: E402


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), e.get("PATH", "")])
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    e.pop("NBGRADER_DB_URL", None)
    return e


PLAIN_NBGRADER = """
# --- appended by benchmarks/bench_grading.py --pipeline nbgrader: nbgrader's own grading steps ---
from nbconvert.exporters import NotebookExporter as _NotebookExporter
from nbgrader.converters import Autograde as _Autograde

c.Autograde.exporter_class = _NotebookExporter
c.Autograde.sanitize_preprocessors = _Autograde.class_traits()["sanitize_preprocessors"].default()
c.Autograde.autograde_preprocessors = _Autograde.class_traits()["autograde_preprocessors"].default()
c.Autograde.pre_convert_hook = lambda **kwargs: None
"""


def fresh(base: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(base, dest, ignore=shutil.ignore_patterns("autograded", "backups", "logs", "feedback"))
    return dest


def busy_cpu_seconds() -> float:
    """CPU-seconds the whole machine has spent busy since boot (from /proc/stat)."""
    try:
        fields = open("/proc/stat").readline().split()
    except OSError:
        return float("nan")
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7)) / os.sysconf("SC_CLK_TCK")


CPU = {"seconds": 0.0}  # busy CPU-seconds of the last timed() calls, summed by the caller


def timed(cmd: list[str], cwd: Path) -> float:
    t0, c0 = time.perf_counter(), busy_cpu_seconds()
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    CPU["seconds"] += busy_cpu_seconds() - c0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode})")
    return seconds


def cell_scores(root: Path, aids: list[str], students: list[str]) -> dict:
    return {(a, s): course.grade_cells(root, a, s) for a in aids for s in students}


def bare_execution(base: Path, aids: list[str], students: list[str]) -> float:
    """Execute every submitted notebook with nbclient (data files beside it), one after another."""
    import nbformat
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for aid in aids:
            for s in students:
                folder = Path(tmp) / s / aid
                shutil.copytree(base / "source" / aid, folder,
                                ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
                for nb in sorted((base / "submitted" / s / aid).glob("*.ipynb")):
                    shutil.copy2(nb, folder / nb.name)
                    jobs.append(folder / nb.name)
        t0 = time.perf_counter()
        for path in jobs:
            nb = nbformat.read(str(path), as_version=4)
            NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                           shutdown_kernel="immediate", resources={"metadata": {"path": str(path.parent)}}).execute()
        return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=24)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--assignment", action="append", help="only this assignment (repeatable)")
    ap.add_argument("--keep", type=Path, help="keep the course folders here")
    ap.add_argument("--pipeline", choices=["course", "nbgrader"], default="course",
                    help="grade with the course's configuration or with nbgrader's own grading steps")
    ap.add_argument("--no-prefork-workers", type=int, nargs="*", default=[4],
                    help="also time coursekit grade --no-prefork with these worker counts (kernels "
                         "started from scratch: what the parallel workers alone give)")
    args = ap.parse_args()

    aids = args.assignment or assignment_ids()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-grading-"))
    work.mkdir(parents=True, exist_ok=True)
    base = course.copy_course(work / "base", aids)
    if args.pipeline == "nbgrader":
        with open(base / "nbgrader_config.py", "a", encoding="utf-8") as fh:
            fh.write(PLAIN_NBGRADER)
    for aid in aids:
        course.nbgrader(base, "generate_assignment", aid, "--force")
    kinds = grading.synthetic_class(base, args.students, aids, seed=1)
    students = sorted(kinds)
    n_sub = len(students) * len(aids)
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.students} students x {len(aids)} assignments = {n_sub} submissions "
          f"({', '.join(f'{k}: {list(kinds.values()).count(k)}' for k in grading.SYNTHETIC_KINDS)}); "
          f"{nproc} CPU(s); pipeline: {args.pipeline}; load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    c0 = busy_cpu_seconds()
    floor = bare_execution(base, aids, students)
    rows = [("nbclient, execution only (floor)", floor, busy_cpu_seconds() - c0)]

    stock_dir = fresh(base, work / "stock")
    CPU["seconds"] = 0.0
    stock = sum(timed([str(Path(sys.executable).with_name("nbgrader")), "autograde", aid], stock_dir) for aid in aids)
    rows.append(("stock nbgrader autograde", stock, CPU["seconds"]))
    reference = cell_scores(stock_dir, aids, students)

    same = True
    runs = [(w, True) for w in args.workers] + [(w, False) for w in args.no_prefork_workers]
    for w, prefork in runs:
        d = fresh(base, work / f"grade_w{w}{'' if prefork else '_noprefork'}")
        CPU["seconds"] = 0.0
        cmd = [sys.executable, "-m", "coursekit", "grade", "--course", str(d), "--workers", str(w)]
        if not prefork:
            cmd.append("--no-prefork")
        t = sum(timed(cmd[:4] + [aid] + cmd[4:], ROOT) for aid in aids)
        label = f"coursekit grade, {w} worker{'s' if w > 1 else ''}" + ("" if prefork else ", --no-prefork")
        rows.append((label, t, CPU["seconds"]))
        if cell_scores(d, aids, students) != reference:
            same = False
            print(f"!! scores of '{label}' differ from stock nbgrader autograde")

    print(f"\n{'':46} {'seconds':>8} {'s/submission':>13} {'CPU-s/submission':>17} {'speed-up vs stock':>18}")
    for name, t, cpu in rows:
        print(f"{name:46} {t:8.1f} {t / n_sub:13.2f} {cpu / n_sub:17.2f} {stock / t:17.2f}x")
    print("(CPU-s: the whole machine's busy CPU time during the run, so other programs count too)")
    print(f"\nscores identical to stock nbgrader autograde: {'yes' if same else 'NO'}; "
          f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
