"""The real nbgrader cycle with the gradebook in PostgreSQL (a private server on 127.0.0.1).

The server is Debian's ``postgresql`` (``.ci/run`` installs it): ``initdb`` and ``pg_ctl`` start a
throw-away cluster in a temporary folder, as the ``postgres`` user when the tests run as root.
The course reaches it through ``NBGRADER_DB_URL``, which ``assignments/nbgrader_config.py`` honours.
The test skips, saying why, only when no server can be started here.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from coursekit import ROOT, assignment_ids, course, grading

AID = assignment_ids()[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in cmd)]


@pytest.fixture(scope="module")
def postgres_url():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed (Debian package 'postgresql'; .ci/run installs it)")
    bindir = Path(found[-1]).parent
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    tmp = Path(tempfile.mkdtemp(prefix="gradebook-pg-"))
    data = tmp / "data"
    port = _free_port()
    if os.geteuid() == 0:
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    log = tmp / "server.log"
    init = subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "--auth=trust",
                                        "--username=postgres", "--encoding=UTF8", "--no-sync"]),
                          capture_output=True, text=True, timeout=120)
    if init.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"initdb could not create a cluster here: {init.stderr.strip()[-500:]}")
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={tmp} -c fsync=off"
    start = subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log),
                                         "-w", "-t", "60", "start"]), capture_output=True, text=True, timeout=120)
    if start.returncode != 0:
        tail = log.read_text()[-800:] if log.exists() else start.stderr
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"a PostgreSQL server could not be started on 127.0.0.1: {tail.strip()}")
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE gradebook")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/gradebook"
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, text=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


def test_cycle_against_postgresql(postgres_url: str, tmp_path: Path, monkeypatch):
    import psycopg2
    from sqlalchemy.engine import make_url

    env = {"NBGRADER_DB_URL": postgres_url}
    monkeypatch.setenv("NBGRADER_DB_URL", postgres_url)  # course.scores() and grade_class read it too
    root = course.copy_course(tmp_path / "course", [AID])
    course.nbgrader(root, "generate_assignment", AID, "--force", env=env)
    kinds = grading.synthetic_class(root, 3, [AID], seed=3)   # correct, partial, blank
    students = sorted(kinds)

    # the parallel command: 3 workers writing one PostgreSQL gradebook
    proc = subprocess.run([sys.executable, "-m", "coursekit", "grade", AID, "--course", str(root), "--workers", "3"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env}, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 worker(s)" in proc.stdout
    assert not (root / "gradebook.db").exists(), "the gradebook must live in PostgreSQL, not in SQLite"

    scores = course.scores(root, AID)
    assert set(scores) == set(students)
    auto_max = max(v["score"] for s, v in scores.items() if kinds[s] == "correct")
    for s, kind in kinds.items():
        if kind == "correct":
            assert scores[s]["score"] == auto_max > 0
        elif kind == "blank":
            assert scores[s]["score"] == 0
        else:
            assert 0 < scores[s]["score"] < auto_max

    # the same numbers, read straight from the server with SQL
    url = make_url(postgres_url)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    with conn, conn.cursor() as cur:
        cur.execute("""SELECT s.student_id, SUM(COALESCE(g.manual_score, g.auto_score, 0))
                       FROM grade g JOIN submitted_notebook n ON g.notebook_id = n.id
                       JOIN submitted_assignment s ON n.assignment_id = s.id GROUP BY s.student_id""")
        from_sql = {sid: float(total) for sid, total in cur.fetchall()}
    conn.close()
    assert from_sql == {s: pytest.approx(v["score"]) for s, v in scores.items()}

    course.nbgrader(root, "export", "--to", str(tmp_path / "grades.csv"), env=env)
    import pandas as pd

    grades = pd.read_csv(tmp_path / "grades.csv")
    assert set(grades["student_id"]) == set(students)
