"""Submissions in from Canvas or Moodle, grades out to Canvas.

Collecting (``nbgrader zip_collect``)
-------------------------------------
An instructor downloads every submission of an assignment from the LMS as one
zip, puts it in ``downloaded/<assignment>/archive/`` and runs
``nbgrader zip_collect <assignment>``.  nbgrader unpacks it and asks a
*collector plugin* which student and notebook each file belongs to.  The
course's ``nbgrader_config.py`` installs :class:`LMSCollector`, which reads the
names both LMSs write:

Canvas ("Download Submissions"), one flat folder::

    <name>_[LATE_]<user id>_<file id>_<file name>[-<n>].ipynb
    smithann_LATE_123456_987654_sourcing_and_close_reading-1.ipynb

``<name>`` is the student's name as Canvas writes it in file names (lower case,
no spaces), ``LATE_`` marks a submission made after the due date, ``<user
id>`` is the student's Canvas ID (the ``ID`` column of a Canvas gradebook
export), and Canvas appends ``-1``, ``-2`` ... when the same file name was
uploaded again.  Pattern (on the file name): :data:`CANVAS_PATTERN`.

Moodle ("Download all submissions"), one folder per student and plugin (the
default since Moodle 3.1), or flat names when "download submissions in
folders" is off::

    Ann Smith_123456_assignsubmission_file_/sourcing_and_close_reading.ipynb
    Ann Smith_123456_assignsubmission_file_sourcing_and_close_reading.ipynb

The prefix is the student's full name (underscores turned into spaces, or
"Participant" when identities are hidden), Moodle's participant identifier
for that assignment, and the submission plugin (``assignsubmission_file``).
Moodle writes nothing about lateness in the names.  Pattern (on the path
inside the download): :data:`MOODLE_PATTERN`.

Stock ``zip_collect`` stops the **whole batch** with "Duplicate submission
file. No timestamps for comparison" as soon as two files map to the same
student and notebook (a Canvas re-upload ``-1``, two downloads in
``archive/``), because neither LMS puts a time in its names.  The collector
looks at all the files first, keeps the latest upload of each notebook (the
highest re-upload number, then the highest Canvas file id, then the most
recently modified archive), tells nbgrader to skip the others, and writes
``downloaded/<assignment>/collect_report.csv``: one row per file with the
student, the notebook, whether the LMS marked it late, and whether it was
collected or skipped and why.  It never invents a submission time, so no
``timestamp.txt`` is written and nbgrader's late penalties do not apply;
the report's ``late`` column is where Canvas's flag is kept.

Grades out (``export_canvas``)
------------------------------
:func:`export_canvas` builds, with pandas and nbgrader's gradebook API, a CSV in
the layout Canvas's own gradebook export uses and its importer reads:
``Student, ID, SIS User ID, SIS Login ID, Section``, then one column per
assignment, and a second row ``    Points Possible`` giving each assignment's
points.  Give it the CSV exported from the Canvas gradebook as ``roster`` and
it fills the Canvas IDs and sections, and names each column as the existing
Canvas column (``Title (id)``) so that scores land in the right assignment.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import COURSE_DIR, ROOT

#: Canvas "Download Submissions" file names (matched against the file name).
CANVAS_PATTERN = re.compile(
    r"^(?P<name>[^_/]+)_(?P<late>LATE_)?(?P<user_id>\d+)_(?P<file_id>\d+)_"
    r"(?P<filename>.+?)(?:-(?P<version>\d+))?(?P<ext>\.ipynb)$"
)
#: Moodle "Download all submissions" (folder or flat names; matched against the path in the download).
MOODLE_PATTERN = re.compile(
    r"(?:^|/)(?P<fullname>[^/]+?)_(?P<participant_id>\d+)_assignsubmission_file_"
    r"(?:/(?:[^/]+/)*)?(?P<filename>[^/]+?)(?P<ext>\.ipynb)$"
)
#: The same names as ``FileNameCollectorPlugin.named_regexp`` values for stock nbgrader
#: (matched against the absolute path, hence the leading ``.*/``).  Stock zip_collect still
#: stops at the first duplicate; the course uses :class:`LMSCollector` instead.
NBGRADER_CANVAS_REGEXP = r".*/(?P<student_id>[^/_]+)_(?:LATE_)?\d+_\d+_(?P<file_id>[^/]+?)(?:-\d+)?\.ipynb$"
NBGRADER_MOODLE_REGEXP = (r".*/[^/]+?_(?P<student_id>\d+)_assignsubmission_file_(?:/(?:[^/]+/)*)?"
                          r"(?P<file_id>[^/]+?)\.ipynb$")

REPORT_NAME = "collect_report.csv"
REPORT_FIELDS = ["file", "lms", "student_id", "notebook", "late", "status", "kept", "note"]
CANVAS_POINTS_ROW = "    Points Possible"   # four spaces, as Canvas writes it
CANVAS_ID_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]


# --------------------------------------------------------------------------- parsing
@dataclass
class LMSFile:
    path: str                 # path relative to the extracted folder
    lms: str                  # canvas | moodle | ""
    lms_id: str = ""          # Canvas name key or Moodle participant id (the default student id)
    user_id: str = ""         # Canvas user id
    name: str = ""            # Canvas name key or Moodle full name
    notebook: str = ""        # notebook file name, e.g. "x.ipynb"
    late: str = "unknown"     # yes | no | unknown (Moodle does not say)
    order: tuple = ()         # larger = later upload


def parse_name(relpath: str, lms: str = "auto", released: set[str] | None = None) -> LMSFile:
    """Read the LMS, student and notebook from a file's path inside an LMS download."""
    relpath = relpath.replace(os.sep, "/")
    base = relpath.rsplit("/", 1)[-1]
    if lms in ("auto", "canvas"):
        m = CANVAS_PATTERN.match(base)
        if m:
            version = int(m["version"] or 0)
            notebook = m["filename"] + m["ext"]
            if version and released and notebook not in released:
                whole = f"{m['filename']}-{m['version']}{m['ext']}"
                if whole in released:      # the notebook's own name ends in -<digits>
                    notebook, version = whole, 0
            return LMSFile(relpath, "canvas", m["name"], m["user_id"], m["name"], notebook,
                           "yes" if m["late"] else "no", (version, int(m["file_id"])))
    if lms in ("auto", "moodle"):
        m = MOODLE_PATTERN.search(relpath)
        if m:
            return LMSFile(relpath, "moodle", m["participant_id"], "", m["fullname"],
                           m["filename"] + m["ext"], "unknown", (0, 0))
    return LMSFile(relpath, "")


def read_roster(path: str | Path | None) -> dict[str, str]:
    """LMS id -> nbgrader student id.

    Either a two-column CSV ``lms_id,student_id`` (``lms_id`` is a Canvas name key or user ID, or
    a Moodle participant id), or a CSV exported from the Canvas gradebook, whose ``ID`` (and the
    name key is not in it) maps to ``SIS Login ID``.
    """
    if not path:
        return {}
    import pandas as pd

    df = pd.read_csv(path, dtype=str).fillna("")
    if {"lms_id", "student_id"} <= set(df.columns):
        return dict(zip(df["lms_id"].str.strip(), df["student_id"].str.strip()))
    if {"ID", "SIS Login ID"} <= set(df.columns):
        df = df[df["ID"].str.strip() != ""]
        return dict(zip(df["ID"].str.strip(), df["SIS Login ID"].str.strip()))
    raise ValueError(f"{path}: expected columns lms_id,student_id or a Canvas gradebook export (ID, SIS Login ID)")


def _archive_times(extracted: Path, archive: Path | None) -> dict[str, float]:
    """Modification time of the archive each top-level extracted folder came from."""
    times: dict[str, float] = {}
    if archive and archive.is_dir():
        for f in archive.iterdir():
            stem = f.name
            for suffix in (".tar.gz", ".zip", ".gz", ".tgz", ".tar"):
                if stem.endswith(suffix):
                    stem = stem[: -len(suffix)]
                    break
            times[stem] = f.stat().st_mtime
    return times


def plan_collection(extracted: str | Path, *, lms: str = "auto", released: set[str] | None = None,
                    roster: dict[str, str] | None = None, archive: str | Path | None = None) -> list[dict]:
    """Decide, for every file under ``extracted``, whether it is collected and for whom.

    Returns one dict per file (the report rows, keys :data:`REPORT_FIELDS`).
    """
    extracted = Path(extracted)
    roster = roster or {}
    times = _archive_times(extracted, Path(archive) if archive else None)
    rows, candidates = [], {}
    for path in sorted(p for p in extracted.rglob("*") if p.is_file()):
        rel = path.relative_to(extracted).as_posix()
        info = parse_name(rel, lms, released)
        row = {"file": rel, "lms": info.lms, "student_id": "", "notebook": info.notebook,
               "late": info.late if info.lms else "", "status": "", "kept": "", "note": ""}
        rows.append(row)
        if not rel.endswith(".ipynb"):
            row["status"], row["note"] = "skipped", "not a notebook"
            continue
        if not info.lms:
            row["status"], row["note"] = "skipped", "file name does not follow the Canvas or Moodle scheme"
            continue
        student = roster.get(info.lms_id) or roster.get(info.user_id) or info.lms_id
        if roster and info.lms_id not in roster and info.user_id not in roster:
            row["note"] = "not in the roster; LMS id used as student id"
        row["student_id"] = student
        top = rel.split("/", 1)[0]
        archive_time = times.get(top, path.stat().st_mtime)
        order = (*info.order, archive_time, -rel.count("/"), rel)
        candidates.setdefault((student, info.notebook), []).append((order, row))
    for (student, notebook), items in candidates.items():
        items.sort(key=lambda item: item[0])
        winner = items[-1][1]
        winner["status"] = "collected"
        if released and notebook not in released:
            winner["note"] = (winner["note"] + "; " if winner["note"] else "") + "not a notebook of this assignment"
        for _, row in items[:-1]:
            row["status"], row["kept"] = "skipped", winner["file"]
            row["note"] = "an older upload of the same notebook"
    return rows


def write_report(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=REPORT_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------- nbgrader plugin
def _collector_class():
    from nbgrader.plugins import FileNameCollectorPlugin
    from traitlets import Enum, Unicode

    class LMSCollector(FileNameCollectorPlugin):
        """zip_collect plugin for Canvas and Moodle downloads that keeps the latest of duplicates.

        On its first file it reads the whole extracted folder, decides which file of each
        (student, notebook) is the latest, writes the collection report, and from then on
        answers nbgrader file by file: older uploads are skipped (nbgrader counts them as
        skipped) instead of stopping the run.
        """

        lms = Enum(["auto", "canvas", "moodle"], default_value="auto",
                   help="Which LMS named the files ('auto' reads both schemes).").tag(config=True)
        roster = Unicode("", help="CSV mapping LMS ids to student ids (lms_id,student_id), or a "
                                  "Canvas gradebook export (ID -> SIS Login ID).").tag(config=True)
        report_name = Unicode(REPORT_NAME, help="Report written beside the archive folder.").tag(config=True)

        _plan: dict | None = None

        def _make_plan(self, any_file: str) -> None:
            app = self.parent
            if app is not None and hasattr(app, "_format_collect_path"):
                extracted = Path(app._format_collect_path(app.extracted_directory))
                archive = Path(app._format_collect_path(app.archive_directory))
                released_dir = Path(app.coursedir.format_path(app.coursedir.release_directory, ".",
                                                              app.coursedir.assignment_id))
                released = {p.name for p in released_dir.glob("*.ipynb")} or None
            else:
                extracted, archive, released = Path(any_file).parent, None, None
            roster_path = self.roster
            if roster_path and not os.path.isabs(roster_path) and app is not None:
                roster_path = os.path.join(app.coursedir.root, roster_path)
            rows = plan_collection(extracted, lms=self.lms, released=released,
                                   roster=read_roster(roster_path), archive=archive)
            report = extracted.parent / self.report_name
            write_report(rows, report)
            self._plan = {str(extracted / r["file"]): r for r in rows}
            skipped = [r for r in rows if r["status"] == "skipped" and r["file"].endswith(".ipynb")]
            late = [r for r in rows if r["status"] == "collected" and r["late"] == "yes"]
            self.log.info("Collection report: %s (%d notebooks collected, %d skipped, %d marked late)",
                          report, sum(r["status"] == "collected" for r in rows), len(skipped), len(late))
            for r in skipped:
                self.log.warning("Skipping %s: %s%s", r["file"], r["note"],
                                 f" (kept {r['kept']})" if r["kept"] else "")

        def collect(self, submitted_file: str):
            if self._plan is None:
                self._make_plan(submitted_file)
            row = self._plan.get(str(Path(submitted_file)))
            if row is None or row["status"] != "collected":
                return None
            return {"student_id": row["student_id"], "file_id": row["notebook"]}

    return LMSCollector


def __getattr__(name):  # the plugin class is built on first use so importing coursekit.lms stays cheap
    if name == "LMSCollector":
        cls = _collector_class()
        globals()["LMSCollector"] = cls
        return cls
    raise AttributeError(name)


# --------------------------------------------------------------------------- collect command
def _nbgrader_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def collect_lms(course: str | Path, assignment: str, archives: list[str | Path], *, force: bool = False,
                say=print) -> list[dict]:
    """Put LMS downloads in place and run ``nbgrader zip_collect``; return the report rows.

    Checks first that no student's ``submitted/`` folder would be overwritten (stock zip_collect
    discovers that halfway and stops with some students copied); ``force`` replaces them.
    """
    from nbgrader.utils import unzip

    course = Path(course).resolve()
    base = course / "downloaded" / assignment
    archive_dir, extracted_dir = base / "archive", base / "extracted"
    archive_dir.mkdir(parents=True, exist_ok=True)
    for a in archives:
        shutil.copy2(a, archive_dir / Path(a).name)
    released = {p.name for p in (course / "release" / assignment).glob("*.ipynb")} or None
    roster = _configured_roster(course)

    # dry run: which students would receive files?
    with tempfile.TemporaryDirectory() as tmp:
        for a in sorted(archive_dir.iterdir()):
            if a.suffix in (".zip", ".gz"):
                unzip(str(a), tmp, zip_ext=[".zip", ".gz"], create_own_folder=True, tree=True)
            else:
                shutil.copy2(a, Path(tmp) / a.name)
        rows = plan_collection(tmp, released=released, roster=roster, archive=archive_dir)
    students = sorted({r["student_id"] for r in rows if r["status"] == "collected"})
    busy = [s for s in students if any((course / "submitted" / s / assignment).glob("*"))]
    if busy and not force:
        raise SystemExit(f"{len(busy)} student(s) already have files in submitted/<student>/{assignment}/ "
                         f"({', '.join(busy[:5])}{'...' if len(busy) > 5 else ''}); nothing was changed. "
                         "Run again with --force to replace them with this download.")
    if extracted_dir.exists():
        shutil.rmtree(extracted_dir)  # derived from archive/ alone; stock zip_collect refuses a full one
    cmd = [str(Path(sys.executable).with_name("nbgrader")), "zip_collect", assignment]
    if force:
        cmd.append("--force")
    say("$ nbgrader " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, cwd=course, capture_output=True, text=True, env=_nbgrader_env())
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader zip_collect failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    report = base / REPORT_NAME
    with open(report, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    say(collect_summary(rows) + f"\nreport: {report}")
    return rows


def _configured_roster(course: Path) -> dict[str, str]:
    """The roster named in the course's config (LMSCollector.roster), if any."""
    from traitlets.config.loader import PyFileConfigLoader

    try:
        cfg = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    except Exception:  # noqa: BLE001 - no config, no roster
        return {}
    path = cfg.LMSCollector.get("roster", "") if "LMSCollector" in cfg else ""
    if path and not os.path.isabs(path):
        path = os.path.join(course, path)
    return read_roster(path) if path else {}


def collect_summary(rows: list[dict]) -> str:
    nb = [r for r in rows if r["file"].endswith(".ipynb")]
    collected = [r for r in nb if r["status"] == "collected"]
    skipped = [r for r in rows if r["status"] == "skipped"]
    late = sorted({r["student_id"] for r in collected if r["late"] == "yes"})
    lines = [f"{len(collected)} notebook(s) collected for {len({r['student_id'] for r in collected})} "
             f"student(s); {len(skipped)} file(s) skipped; {len(late)} student(s) marked late by the LMS"]
    for r in skipped:
        lines.append(f"  skipped {r['file']}: {r['note']}" + (f" (kept {r['kept']})" if r["kept"] else ""))
    if late:
        lines.append("  late: " + ", ".join(late))
    return "\n".join(lines)


# --------------------------------------------------------------------------- Canvas export
def gradebook_scores(course: str | Path, assignments: list[str] | None = None):
    """One row per (student, assignment) from the gradebook: score after late penalty, max score."""
    import pandas as pd
    from nbgrader.api import Gradebook, MissingEntry

    from .grading import _load_app

    app = _load_app(Path(course).resolve())
    rows = []
    with Gradebook(app.coursedir.db_url, app.coursedir.course_id) as gb:
        students = {s.id: s for s in gb.students}
        for a in gb.assignments:
            if assignments and a.name not in assignments:
                continue
            for sid, s in students.items():
                try:
                    sub = gb.find_submission(a.name, sid)
                except MissingEntry:
                    score, penalty, submitted, pending = None, 0.0, False, False
                else:
                    score, penalty, submitted = sub.score, sub.late_submission_penalty or 0.0, True
                    pending = bool(sub.needs_manual_grade)
                rows.append({"student_id": sid, "first_name": s.first_name or "", "last_name": s.last_name or "",
                             "email": s.email or "", "assignment": a.name, "max_score": float(a.max_score),
                             "raw_score": score, "late_penalty": penalty, "submitted": submitted,
                             "needs_manual_grade": pending,
                             "score": None if score is None else max(0.0, score - penalty)})
    return pd.DataFrame(rows)


def export_canvas(course: str | Path, out: str | Path, *, roster: str | Path | None = None,
                  match_on: str = "SIS Login ID", assignments: list[str] | None = None,
                  missing: str = "blank", say=print):
    """Write a Canvas gradebook-import CSV of the gradebook's scores; return it as a DataFrame.

    ``roster``: the CSV exported from the Canvas gradebook.  Its rows are matched to nbgrader
    student ids on the column ``match_on``; an existing Canvas column whose title (before the
    `` (id)``) equals an nbgrader assignment id receives that assignment's scores.
    ``missing``: what a student without a submission gets, ``blank`` (Canvas leaves the cell as it
    is) or ``zero`` (as ``nbgrader export`` does).
    """
    import pandas as pd

    scores = gradebook_scores(course, assignments)
    if scores.empty:
        raise SystemExit("the gradebook has no assignments or no students to export")
    aids = list(dict.fromkeys(scores["assignment"]))
    wide = scores.pivot(index="student_id", columns="assignment", values="score")
    if missing == "zero":
        wide = wide.fillna(0.0)
    wide = wide.round(2)
    points = scores.groupby("assignment")["max_score"].first()

    if roster:
        canvas = pd.read_csv(roster, dtype=str).fillna("")
        canvas = canvas[~canvas["Student"].str.strip().isin(["Points Possible", "Student, Test"])]
        canvas = canvas[canvas["Student"].str.strip() != ""]
        if match_on not in canvas.columns:
            raise SystemExit(f"{roster} has no column {match_on!r}")
        columns = {}
        for col in canvas.columns:
            m = re.match(r"^(?P<title>.*) \((?P<id>\d+)\)$", col)
            if m and m["title"] in aids:
                columns[m["title"]] = col
        base = canvas[CANVAS_ID_COLUMNS].copy()
        key = canvas[match_on].str.strip()
        unmatched = sorted(set(wide.index) - set(key))
        if unmatched:
            say(f"warning: {len(unmatched)} gradebook student(s) not in the Canvas roster: "
                + ", ".join(unmatched[:10]))
    else:
        people = scores.drop_duplicates("student_id").set_index("student_id")
        names = (people["last_name"] + ", " + people["first_name"]).where(
            (people["last_name"] != "") | (people["first_name"] != ""), people.index.to_series())
        base = pd.DataFrame({"Student": names.values, "ID": "", "SIS User ID": people.index,
                             "SIS Login ID": people.index, "Section": ""})
        key = base["SIS Login ID"]
        columns = {}
    out_df = base.reset_index(drop=True)
    header_points = {c: "" for c in CANVAS_ID_COLUMNS}
    header_points["Student"] = CANVAS_POINTS_ROW
    for aid in aids:
        col = columns.get(aid, aid)
        values = wide[aid].reindex(key.values)
        out_df[col] = ["" if pd.isna(v) else f"{v:g}" for v in values]
        header_points[col] = f"{points[aid]:g}"
    table = pd.concat([pd.DataFrame([header_points]), out_df], ignore_index=True)[list(header_points)]
    table.to_csv(out, index=False)
    pending = scores[scores["needs_manual_grade"]]
    if not pending.empty:
        say(f"note: {pending['student_id'].nunique()} student(s) still have answers waiting for manual "
            "grading; their exported scores include only what is graded so far")
    say(f"wrote {out}: {len(out_df)} student(s), {len(aids)} assignment(s)")
    return table


# --------------------------------------------------------------------------- CLI
def _cmd_collect(args) -> int:
    rows = collect_lms(args.course, args.assignment, args.archives, force=args.force)
    return 0 if any(r["status"] == "collected" for r in rows) else 1


def _cmd_export(args) -> int:
    export_canvas(args.course, args.out, roster=args.roster, match_on=args.match_on,
                  assignments=args.assignment, missing=args.missing)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "collect-lms", help="collect a Canvas or Moodle download with nbgrader zip_collect",
        description="Copy LMS download(s) into downloaded/ASSIGNMENT/archive/ and run `nbgrader zip_collect` "
                    "with the course's collector: duplicates keep the latest upload instead of stopping the "
                    "batch, and downloaded/ASSIGNMENT/collect_report.csv records lateness and what was skipped.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("assignment")
    p.add_argument("archives", nargs="+", help="zip file(s) downloaded from the LMS")
    p.add_argument("--course", type=Path, default=COURSE_DIR)
    p.add_argument("--force", action="store_true", help="replace students' existing submitted files")
    p.set_defaults(func=_cmd_collect)

    p = subparsers.add_parser(
        "export-canvas", help="write a Canvas gradebook-import CSV from the nbgrader gradebook",
        description="Scores (after late penalties) per student and assignment in the layout of a Canvas "
                    "gradebook export, with the Points Possible row.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out", type=Path, help="CSV file to write")
    p.add_argument("--course", type=Path, default=COURSE_DIR)
    p.add_argument("--roster", type=Path, help="CSV exported from the Canvas gradebook (IDs, sections, columns)")
    p.add_argument("--match-on", default="SIS Login ID", help="roster column holding nbgrader student ids")
    p.add_argument("--assignment", action="append", help="export only this assignment (repeatable)")
    p.add_argument("--missing", choices=["blank", "zero"], default="blank",
                   help="what a student with no submission gets")
    p.set_defaults(func=_cmd_export)
