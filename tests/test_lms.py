"""LMS round trip: Canvas and Moodle downloads in through the real `nbgrader zip_collect`, grades out to Canvas.

The zips are built here with the names each LMS writes (see coursekit/lms.py for the schemes and
where they come from), including late work, re-uploads and a second download of the same class.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from coursekit import ROOT, assignment_ids, course, grading, lms
from wrong_submissions import fork_released

AID = assignment_ids()[0]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def zip_collect(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("nbgrader")), "zip_collect", AID, *args],
                          cwd=root, capture_output=True, text=True, env=_env(), timeout=300)


@pytest.fixture()
def lms_course(released_course: Path, tmp_path: Path) -> Path:
    return fork_released(released_course, tmp_path)


@pytest.fixture()
def versions(lms_course: Path) -> dict[str, dict[str, bytes]]:
    """Three distinguishable versions of every notebook: blank (released), solution, and a third."""
    out = {}
    for released in sorted((lms_course / "release" / AID).glob("*.ipynb")):
        blank = released.read_bytes()
        solution = (lms_course / "source" / AID / released.name).read_bytes()
        third = blank.replace(b'"cells": [', b'"cells": [\n  ', 1)  # same notebook, different bytes
        assert third != blank
        out[released.name] = {"blank": blank, "solution": solution, "third": third}
    return out


def _archive(lms_course: Path) -> Path:
    folder = lms_course / "downloaded" / AID / "archive"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_canvas_download_with_late_and_resubmitted_files(lms_course: Path, versions):
    notebooks = sorted(versions)
    archive = _archive(lms_course)
    with zipfile.ZipFile(archive / "submissions.zip", "w") as z:
        for nb in notebooks:
            stem = nb[: -len(".ipynb")]
            v = versions[nb]
            # on time, then uploaded again twice (Canvas appends -1, -2): the -2 upload is the latest
            z.writestr(f"smithann_1001_5001_{nb}", v["blank"])
            z.writestr(f"smithann_1001_5002_{stem}-1.ipynb", v["third"])
            z.writestr(f"smithann_1001_5003_{stem}-2.ipynb", v["solution"])
            # late, submitted once
            z.writestr(f"jonesbob_LATE_1002_5004_{nb}", v["solution"])
            # late re-upload after an on-time one
            z.writestr(f"leeemma_1003_5005_{nb}", v["solution"])
            z.writestr(f"leeemma_LATE_1003_5006_{stem}-1.ipynb", v["blank"])
        z.writestr("leeemma_1003_5007_notes.txt", b"not a notebook")
        z.writestr("README.ipynb", versions[notebooks[0]]["blank"])  # not an LMS name

    # stock zip_collect with the documented Canvas pattern stops the whole batch at the first re-upload
    stock = zip_collect(lms_course, "--collector=nbgrader.plugins.FileNameCollectorPlugin",
                        f"--FileNameCollectorPlugin.named_regexp={lms.NBGRADER_CANVAS_REGEXP}")
    assert stock.returncode != 0
    assert "Duplicate submission file" in stock.stdout + stock.stderr
    assert not (lms_course / "submitted").exists() or not any((lms_course / "submitted").iterdir())

    # the course's collector (nbgrader_config.py) keeps the latest and finishes the batch
    proc = zip_collect(lms_course, "--force")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for nb in notebooks:
        got = {s: _sha(lms_course / "submitted" / s / AID / nb) for s in ("smithann", "jonesbob", "leeemma")}
        assert got["smithann"] == hashlib.sha256(versions[nb]["solution"]).hexdigest()  # the -2 upload
        assert got["jonesbob"] == hashlib.sha256(versions[nb]["solution"]).hexdigest()
        assert got["leeemma"] == hashlib.sha256(versions[nb]["blank"]).hexdigest()     # the late re-upload
    assert sorted(p.name for p in (lms_course / "submitted").iterdir()) == ["jonesbob", "leeemma", "smithann"]
    assert not any((lms_course / "submitted").glob("*/*/timestamp.txt")), "no invented submission times"

    report = pd.read_csv(lms_course / "downloaded" / AID / lms.REPORT_NAME, dtype=str, keep_default_na=False)
    assert len(report) == 6 * len(notebooks) + 2
    kept = report[report["status"] == "collected"].set_index("student_id")
    assert set(kept.index) == {"smithann", "jonesbob", "leeemma"}
    assert kept.loc["jonesbob", "late"] == "yes" and kept.loc["smithann", "late"] == "no"
    assert kept.loc["leeemma", "late"] == "yes"
    older = report[report["note"] == "an older upload of the same notebook"]
    assert len(older) == 3 * len(notebooks)
    assert all(k.endswith("-2.ipynb") for k in older[older["file"].str.contains("smithann")]["kept"])
    skipped = dict(zip(report["file"].str.rsplit("/", n=1).str[-1], report["note"]))
    assert skipped["leeemma_1003_5007_notes.txt"] == "not a notebook"
    assert skipped["README.ipynb"] == "file name does not follow the Canvas or Moodle scheme"
    assert "Skipping" in proc.stdout + proc.stderr


def test_moodle_download_in_folders_and_flat_with_a_second_download(lms_course: Path, versions):
    notebooks = sorted(versions)
    archive = _archive(lms_course)
    old, new = archive / "moodle_monday.zip", archive / "moodle_friday.zip"
    with zipfile.ZipFile(old, "w") as z:  # first download: folders (Moodle's default)
        for nb in notebooks:
            z.writestr(f"Ann Smith_301_assignsubmission_file_/{nb}", versions[nb]["blank"])
            z.writestr(f"Bob Jones_302_assignsubmission_file_/{nb}", versions[nb]["solution"])
        z.writestr("Bob Jones_302_assignsubmission_onlinetext_/onlinetext.html", b"<p>hello</p>")
    with zipfile.ZipFile(new, "w") as z:  # a later download, flat names: Ann resubmitted
        for nb in notebooks:
            z.writestr(f"Ann Smith_301_assignsubmission_file_{nb}", versions[nb]["solution"])
            z.writestr(f"Participant_303_assignsubmission_file_{nb}", versions[nb]["third"])  # blind marking
    now = time.time()
    os.utime(old, (now - 4 * 86400, now - 4 * 86400))
    os.utime(new, (now, now))

    proc = zip_collect(lms_course)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for nb in notebooks:
        assert _sha(lms_course / "submitted" / "301" / AID / nb) == hashlib.sha256(versions[nb]["solution"]).hexdigest()
        assert _sha(lms_course / "submitted" / "302" / AID / nb) == hashlib.sha256(versions[nb]["solution"]).hexdigest()
        assert _sha(lms_course / "submitted" / "303" / AID / nb) == hashlib.sha256(versions[nb]["third"]).hexdigest()
    report = pd.read_csv(lms_course / "downloaded" / AID / lms.REPORT_NAME, dtype=str, keep_default_na=False)
    collected = report[report["status"] == "collected"]
    assert set(collected["lms"]) == {"moodle"} and set(collected["late"]) == {"unknown"}
    superseded = report[report["kept"] != ""]
    assert len(superseded) == len(notebooks)
    assert all(f.startswith("moodle_monday/Ann Smith_301") for f in superseded["file"])
    assert (report["file"] == "moodle_monday/Bob Jones_302_assignsubmission_onlinetext_/onlinetext.html").any()


def test_collect_command_refuses_to_overwrite_without_force(lms_course: Path, versions, tmp_path_factory):
    nb = sorted(versions)[0]
    download = tmp_path_factory.mktemp("dl") / "submissions.zip"
    with zipfile.ZipFile(download, "w") as z:
        z.writestr(f"smithann_1001_5001_{nb}", versions[nb]["blank"])
    lines = []
    lms.collect_lms(lms_course, AID, [download], say=lines.append)
    target = lms_course / "submitted" / "smithann" / AID / nb
    assert _sha(target) == hashlib.sha256(versions[nb]["blank"]).hexdigest()
    assert any(line.startswith("$ nbgrader zip_collect") for line in lines)

    with zipfile.ZipFile(download, "w") as z:
        z.writestr(f"smithann_1001_5009_{nb}", versions[nb]["solution"])
    with pytest.raises(SystemExit, match="--force"):
        lms.collect_lms(lms_course, AID, [download], say=lines.append)
    assert _sha(target) == hashlib.sha256(versions[nb]["blank"]).hexdigest(), "nothing changed"
    rows = lms.collect_lms(lms_course, AID, [download], force=True, say=lines.append)
    assert _sha(target) == hashlib.sha256(versions[nb]["solution"]).hexdigest()
    assert [r["status"] for r in rows if r["file"].endswith(".ipynb")] == ["collected"]


def test_name_parsing_edge_cases():
    released = {"lab-2.ipynb", "essay.ipynb"}
    f = lms.parse_name("smithann_LATE_11_22_lab-2.ipynb", released=released)
    assert (f.lms, f.lms_id, f.notebook, f.late, f.order) == ("canvas", "smithann", "lab-2.ipynb", "yes", (0, 22))
    f = lms.parse_name("smithann_11_23_lab-2-1.ipynb", released=released)
    assert (f.notebook, f.order) == ("lab-2.ipynb", (1, 23))
    f = lms.parse_name("x/Ann Marie Smith_77_assignsubmission_file_/sub/essay.ipynb", released=released)
    assert (f.lms, f.lms_id, f.name, f.notebook) == ("moodle", "77", "Ann Marie Smith", "essay.ipynb")
    assert lms.parse_name("random_name.ipynb").lms == ""


def test_roster_maps_lms_ids_to_student_ids(tmp_path: Path):
    (tmp_path / "map.csv").write_text("lms_id,student_id\nsmithann,asmith\n301,bjones\n")
    assert lms.read_roster(tmp_path / "map.csv") == {"smithann": "asmith", "301": "bjones"}
    (tmp_path / "canvas.csv").write_text(
        'Student,ID,SIS User ID,SIS Login ID,Section,A1 (55)\n"    Points Possible",,,,,10\n'
        '"Smith, Ann",1001,S-1,asmith,Sec 1,\n')
    assert lms.read_roster(tmp_path / "canvas.csv") == {"1001": "asmith"}


# ---------------------------------------------------------------- grades out
def test_export_canvas_gradebook_import_csv(lms_course: Path, tmp_path: Path):
    sol = {p.name: p for p in sorted((lms_course / "source" / AID).glob("*.ipynb"))}
    blank = {p.name: lms_course / "release" / AID / p.name for p in sorted((lms_course / "release" / AID).glob("*.ipynb"))}
    course.submit(lms_course, AID, "asmith", sol, timestamp="2020-02-01 10:00:00.000000 UTC")
    course.submit(lms_course, AID, "bjones", blank, timestamp="2020-02-01 10:00:00.000000 UTC")
    course.add_students(lms_course, ["cnobody"])
    run = grading.grade_class(lms_course, AID, workers=2, say=lambda *_: None)
    assert not run.failed
    scores = course.scores(lms_course, AID)
    max_score = scores["asmith"]["max_score"]

    # nbgrader's own CSV, for the record
    course.nbgrader(lms_course, "export", "--to", str(tmp_path / "grades.csv"))
    nbgrader_csv = pd.read_csv(tmp_path / "grades.csv")
    assert set(nbgrader_csv["student_id"]) == {"asmith", "bjones", "cnobody"}

    # without a roster: nbgrader ids as SIS ids, the Points Possible row, blank for no submission
    out = tmp_path / "canvas_import.csv"
    lms.export_canvas(lms_course, out, assignments=[AID], say=lambda *_: None)
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(df.columns) == lms.CANVAS_ID_COLUMNS + [AID]
    assert df.iloc[0]["Student"] == lms.CANVAS_POINTS_ROW and float(df.iloc[0][AID]) == max_score
    rows = df.iloc[1:].set_index("SIS Login ID")
    assert float(rows.loc["asmith", AID]) == pytest.approx(scores["asmith"]["score"])
    assert float(rows.loc["bjones", AID]) == 0
    assert rows.loc["cnobody", AID] == ""

    # with the CSV exported from Canvas: Canvas IDs and sections kept, scores in the existing column
    roster = tmp_path / "canvas_export.csv"
    roster.write_text(
        f'Student,ID,SIS User ID,SIS Login ID,Section,{AID} (4242),Other quiz (4243)\n'
        f'"    Points Possible",,,,,{max_score:g},10\n'
        '"Smith, Ann",1001,S-1,asmith,Section 1,,7\n'
        '"Jones, Bob",1002,S-2,bjones,Section 2,,8\n'
        '"Student, Test",9999,,,Section 1,,\n', encoding="utf-8")
    df = lms.export_canvas(lms_course, tmp_path / "canvas_import2.csv", roster=roster, missing="zero",
                           assignments=[AID], say=lambda *_: None)
    written = pd.read_csv(tmp_path / "canvas_import2.csv", dtype=str, keep_default_na=False)
    assert list(written.columns) == lms.CANVAS_ID_COLUMNS + [f"{AID} (4242)"]
    assert written.iloc[0]["Student"] == lms.CANVAS_POINTS_ROW
    body = written.iloc[1:].set_index("SIS Login ID")
    assert list(body.index) == ["asmith", "bjones"]
    assert body.loc["asmith", "ID"] == "1001" and body.loc["bjones", "Section"] == "Section 2"
    assert float(body.loc["asmith", f"{AID} (4242)"]) == pytest.approx(scores["asmith"]["score"])
    assert float(body.loc["bjones", f"{AID} (4242)"]) == 0
    assert len(df) == 3
