"""Where did the class struggle?  ``python -m coursekit analytics --out report.html``

Reads the gradebook through nbgrader's API into pandas tables and writes one
self-contained HTML report (figures embedded, each with alt text, a numbered
caption and a paragraph that says in words what it shows):

1. the score distribution of each assignment;
2. each question's difficulty (mean score / points) and discrimination (the
   correlation between the question's score and the rest of the assignment's
   score, so a question that strong students miss as often as weak ones
   stands out);
3. the levels awarded on each written answer, next to its rubric;
4. the hidden tests that fail most often: submissions whose visible checks
   passed but whose hidden tests failed (hard-coded answers, functions that
   only work on the course's table), read from the autograded notebooks.

The same tables are available to an instructor notebook::

    from coursekit import analytics
    tables = analytics.load(course_dir)          # dict of DataFrames
    analytics.item_statistics(tables["items"])

Why a command rather than a notebook: the report has to be rebuilt after every
grading run and handed to teaching assistants as one file; a command does that
in one step, is tested on a graded synthetic class, and leaves no outputs or
gradebook paths in a notebook that could be committed by mistake.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import re
from pathlib import Path

from . import COURSE_DIR, OKABE_ITO

PALETTE = list(OKABE_ITO.values())
ANSI = re.compile(r"\x1b\[[0-9;]*m")
FRAME = re.compile(r"In\s*\[(\d+)\],\s*line\s*(\d+)")
MARK_SCHEME = re.compile(r"=== BEGIN MARK SCHEME ===(.*?)=== END MARK SCHEME ===", re.S)
LOW_DISCRIMINATION = 0.2  # the report flags questions below this (the course's choice of threshold)


# --------------------------------------------------------------------------- data
def load(course: str | Path, assignments: list[str] | None = None) -> dict:
    """Gradebook contents as pandas DataFrames.

    ``items``: one row per (student, assignment, notebook, graded cell) with ``max_score``,
    ``auto_score``, ``manual_score``, ``score`` (nbgrader's: manual if given, else auto, plus
    extra credit), ``kind`` (``test`` for autograded code cells, ``written`` for manually graded
    answers, ``task``), ``pending`` (waiting for a human).
    ``submissions``: one row per (student, assignment) with the totals nbgrader computes.
    ``students``: every student in the gradebook.  ``cells``: the graded cells of each assignment.
    """
    import pandas as pd
    from nbgrader.api import Gradebook

    from .grading import _load_app

    course = Path(course).resolve()
    app = _load_app(course)
    items, subs, cells = [], [], []
    with Gradebook(app.coursedir.db_url, app.coursedir.course_id) as gb:
        students = pd.DataFrame([{"student": s.id, "first_name": s.first_name, "last_name": s.last_name}
                                 for s in gb.students], columns=["student", "first_name", "last_name"])
        for a in gb.assignments:
            if assignments and a.name not in assignments:
                continue
            for nb in a.notebooks:
                for cell in nb.grade_cells:
                    cells.append({"assignment": a.name, "notebook": nb.name, "cell": cell.name,
                                  "cell_type": cell.cell_type, "max_score": float(cell.max_score)})
            for sub in gb.assignment_submissions(a.name):
                subs.append({"student": sub.student.id, "assignment": a.name, "score": float(sub.score),
                             "max_score": float(sub.max_score), "needs_manual_grade": bool(sub.needs_manual_grade),
                             "late_penalty": float(sub.late_submission_penalty or 0.0),
                             "timestamp": sub.timestamp})
                for snb in sub.notebooks:
                    for g in snb.grades:
                        cell = g.cell
                        kind = "task" if cell.type == "TaskCell" else (
                            "test" if cell.cell_type == "code" else "written")
                        items.append({"student": sub.student.id, "assignment": a.name, "notebook": snb.name,
                                      "cell": cell.name, "kind": kind, "max_score": float(cell.max_score),
                                      "auto_score": g.auto_score, "manual_score": g.manual_score,
                                      "score": float(g.score), "pending": bool(g.needs_manual_grade)})
    return {
        "students": students,
        "submissions": pd.DataFrame(subs, columns=["student", "assignment", "score", "max_score",
                                                   "needs_manual_grade", "late_penalty", "timestamp"]),
        "items": pd.DataFrame(items, columns=["student", "assignment", "notebook", "cell", "kind", "max_score",
                                              "auto_score", "manual_score", "score", "pending"]),
        "cells": pd.DataFrame(cells, columns=["assignment", "notebook", "cell", "cell_type", "max_score"]),
        "course": course,
        "coursedir": app.coursedir,
    }


def score_distribution(submissions):
    """Per assignment: submissions, median and quartiles (percent of the maximum), zeros, full marks."""
    import pandas as pd

    rows = []
    for aid, g in submissions.groupby("assignment", sort=False):
        pct = 100 * g["score"] / g["max_score"]
        rows.append({"assignment": aid, "submissions": len(g), "max_score": g["max_score"].iloc[0],
                     "median_pct": pct.median(), "q1_pct": pct.quantile(0.25), "q3_pct": pct.quantile(0.75),
                     "zero": int((g["score"] == 0).sum()), "full": int((g["score"] >= g["max_score"]).sum()),
                     "pending_manual": int(g["needs_manual_grade"].sum())})
    return pd.DataFrame(rows)


def item_statistics(items):
    """Difficulty and discrimination of every graded cell.

    ``difficulty`` is the mean score divided by the points (1 = everyone earned everything).
    ``discrimination`` is the corrected item-total correlation: Pearson's r between the cell's
    score and the student's total on the *other* cells of the assignment.  Cells still waiting
    for a human grader are left out of both (``graded`` counts the scores used).
    """
    import numpy as np
    import pandas as pd

    graded = items[~items["pending"]].copy()
    totals = graded.groupby(["assignment", "student"])["score"].sum().rename("total")
    graded = graded.join(totals, on=["assignment", "student"])
    graded["rest"] = graded["total"] - graded["score"]
    rows = []
    for (aid, nb, cell), g in items.groupby(["assignment", "notebook", "cell"], sort=False):
        gg = graded[(graded["assignment"] == aid) & (graded["notebook"] == nb) & (graded["cell"] == cell)]
        max_score = g["max_score"].iloc[0]
        disc = np.nan
        if len(gg) >= 3 and gg["score"].std() > 0 and gg["rest"].std() > 0:
            disc = float(np.corrcoef(gg["score"], gg["rest"])[0, 1])
        rows.append({"assignment": aid, "notebook": nb, "cell": cell, "kind": g["kind"].iloc[0],
                     "max_score": max_score, "graded": len(gg), "pending": int(g["pending"].sum()),
                     "mean_score": gg["score"].mean() if len(gg) else np.nan,
                     "difficulty": gg["score"].mean() / max_score if len(gg) and max_score else np.nan,
                     "discrimination": disc})
    return pd.DataFrame(rows)


def rubric_levels(items):
    """Students at each level (points a grader gave) on every written answer.

    Only answers a human has marked are counted by level; ``unanswered`` counts answers left as
    released (nbgrader scores those 0 without a grader) and ``pending`` those waiting for a grader.
    """
    import pandas as pd

    written = items[items["kind"] == "written"]
    rows = []
    for (aid, nb, cell), g in written.groupby(["assignment", "notebook", "cell"], sort=False):
        marked = g[g["manual_score"].notna()]
        counts = marked["score"].value_counts().to_dict()
        unanswered = int((g["manual_score"].isna() & ~g["pending"]).sum())
        levels = sorted(set(range(int(g["max_score"].iloc[0]) + 1)) | {float(k) for k in counts})
        for level in levels:
            rows.append({"assignment": aid, "notebook": nb, "cell": cell, "level": float(level),
                         "max_score": g["max_score"].iloc[0], "students": int(counts.get(level, 0)),
                         "unanswered": unanswered, "pending": int(g["pending"].sum())})
    return pd.DataFrame(rows, columns=["assignment", "notebook", "cell", "level", "max_score", "students",
                                       "unanswered", "pending"])


def mark_schemes(course: str | Path, assignment: str) -> dict[str, str]:
    """grade_id of each written answer -> the rubric in the prompt cell just above it (source notebooks)."""
    import nbformat

    out = {}
    for path in sorted((Path(course) / "source" / assignment).glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        previous = ""
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and meta.get("solution") and cell.cell_type == "markdown":
                m = MARK_SCHEME.search(previous) or MARK_SCHEME.search(cell.source)
                if m:
                    out[meta["grade_id"]] = m.group(1).strip()
            previous = cell.source
    return out


def _hidden_range(source: str) -> tuple[int, int] | None:
    lines = source.splitlines()
    start = end = None
    for i, line in enumerate(lines, start=1):
        if line.strip() == "### BEGIN HIDDEN TESTS":
            start = i
        elif line.strip() == "### END HIDDEN TESTS" and start:
            end = i
    return (start, end) if start and end else None


def hidden_test_outcomes(course: str | Path, coursedir=None, assignments: list[str] | None = None):
    """For every test cell that has hidden tests and every autograded submission: what happened.

    ``outcome`` is ``passed``, ``failed visible`` (an error before the hidden block: the student's
    answer is missing or wrong in a way the student could see), ``failed hidden`` (the visible
    checks passed and the hidden tests failed) or ``failed`` (an error whose line could not be
    placed).  ``message`` is the error's last line.  Read from ``autograded/*/<assignment>/*.ipynb``.
    """
    import nbformat
    import pandas as pd

    course = Path(course)
    autograded = Path(coursedir.autograded_directory) if coursedir else Path("autograded")
    if not autograded.is_absolute():
        autograded = course / autograded
    rows = []
    for path in sorted(autograded.glob("*/*/*.ipynb")):
        student, aid = path.parent.parent.name, path.parent.name
        if assignments and aid not in assignments:
            continue
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception:  # noqa: BLE001 - an unreadable notebook is skipped
            continue
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
                continue
            hidden = _hidden_range(cell.source)
            if not hidden:
                continue
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            outcome, message = "passed", ""
            if errors:
                err = errors[-1]
                message = f"{err.get('ename', '')}: {ANSI.sub('', str(err.get('evalue', '')))}".strip(": ")
                trace = ANSI.sub("", "\n".join(err.get("traceback", [])))
                # the first frame of the traceback is the test cell itself (later ones are functions it
                # called); its execution number may differ from the cell's when a separate kernel ran the tests
                frames = FRAME.findall(trace)
                if not frames:
                    outcome = "failed"
                elif int(frames[0][1]) > hidden[0]:
                    outcome = "failed hidden"
                else:
                    outcome = "failed visible"
            rows.append({"assignment": aid, "notebook": path.stem, "cell": meta.get("grade_id"),
                         "student": student, "outcome": outcome, "message": message})
    return pd.DataFrame(rows, columns=["assignment", "notebook", "cell", "student", "outcome", "message"])


def hidden_test_summary(outcomes):
    """Per test cell: how many submissions failed only the hidden tests, and the commonest message."""
    import pandas as pd

    rows = []
    for (aid, nb, cell), g in outcomes.groupby(["assignment", "notebook", "cell"], sort=False):
        hidden = g[g["outcome"] == "failed hidden"]
        reached = g[g["outcome"].isin(["passed", "failed hidden"])]
        common = hidden["message"].value_counts()
        rows.append({"assignment": aid, "notebook": nb, "cell": cell, "submissions": len(g),
                     "passed": int((g["outcome"] == "passed").sum()),
                     "failed_visible": int((g["outcome"] == "failed visible").sum()),
                     "failed_hidden": len(hidden),
                     "hidden_fail_rate": len(hidden) / len(reached) if len(reached) else 0.0,
                     "commonest_message": common.index[0] if len(common) else ""})
    df = pd.DataFrame(rows, columns=["assignment", "notebook", "cell", "submissions", "passed", "failed_visible",
                                     "failed_hidden", "hidden_fail_rate", "commonest_message"])
    return df.sort_values(["failed_hidden", "hidden_fail_rate"], ascending=False, ignore_index=True)


# --------------------------------------------------------------------------- figures
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _new_figure(width=7.5, height=3.6):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def figure_distribution(aid, submissions):
    g = submissions[submissions["assignment"] == aid]
    pct = 100 * g["score"] / g["max_score"]
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.hist(pct, bins=[i * 10 for i in range(11)], color=OKABE_ITO["blue"], edgecolor=OKABE_ITO["black"])
    ax.set_title(f"Scores on {aid} ({_n(len(g), 'submission')})")
    ax.set_xlabel("Score (percent of the maximum)")
    ax.set_ylabel("Students")
    ax.set_xlim(0, 100)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def figure_items(aid, stats):
    s = stats[stats["assignment"] == aid].iloc[::-1]
    fig = _new_figure(7.5, 1.0 + 0.32 * max(1, len(s)))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    colours = {"test": OKABE_ITO["blue"], "written": OKABE_ITO["orange"], "task": OKABE_ITO["bluish_green"]}
    bar_colours = [colours.get(k, PALETTE[0]) for k in s["kind"]]
    ax1.barh(s["cell"], s["difficulty"].fillna(0), color=bar_colours, edgecolor=OKABE_ITO["black"])
    ax1.set_xlim(0, 1)
    ax1.set_title("Difficulty")
    ax1.set_xlabel("Mean score / points")
    ax1.set_ylabel("Graded cell")
    ax2.barh(s["cell"], s["discrimination"].fillna(0), color=bar_colours, edgecolor=OKABE_ITO["black"])
    for y, value in enumerate(s["discrimination"]):
        if value != value:  # NaN: not enough spread to compute
            ax2.annotate("n/a", (0, y), xytext=(3, -3), textcoords="offset points", fontsize=7)
    ax2.axvline(LOW_DISCRIMINATION, color=OKABE_ITO["vermillion"], linestyle="--", linewidth=1)
    ax2.set_xlim(-1, 1)
    ax2.set_title("Discrimination")
    ax2.set_xlabel("Correlation with the rest of the score")
    from matplotlib.patches import Patch

    kinds = list(dict.fromkeys(s["kind"]))
    ax2.legend(handles=[Patch(color=colours.get(k, PALETTE[0]), label=k) for k in kinds], fontsize=7,
               loc="lower left")
    fig.suptitle(f"Difficulty and discrimination of each graded cell of {aid}")
    return fig


def figure_rubric(aid, levels):
    lv = levels[levels["assignment"] == aid]
    cells = list(dict.fromkeys(lv["cell"]))
    fig = _new_figure(7.5, 0.7 + 0.55 * max(1, len(cells)))
    ax = fig.add_subplot()
    all_levels = sorted(lv["level"].unique())
    left = {c: 0 for c in cells}
    for i, level in enumerate(all_levels):
        counts = [int(lv[(lv["cell"] == c) & (lv["level"] == level)]["students"].sum()) for c in cells]
        ax.barh(cells, counts, left=[left[c] for c in cells], color=PALETTE[i % len(PALETTE)],
                edgecolor=OKABE_ITO["black"], label=f"{level:g} points")
        for c, n in zip(cells, counts):
            left[c] += n
    ax.set_title(f"Points awarded on the written answers of {aid}")
    ax.set_xlabel("Students")
    ax.set_ylabel("Written answer")
    ax.legend(fontsize=8, ncols=min(len(all_levels), 6), loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return fig


def figure_hidden(aid, summary):
    s = summary[summary["assignment"] == aid].sort_values("failed_hidden")
    fig = _new_figure(7.5, 0.8 + 0.45 * max(1, len(s)))
    ax = fig.add_subplot()
    ax.barh(s["cell"], s["failed_hidden"], color=OKABE_ITO["vermillion"], edgecolor=OKABE_ITO["black"],
            label="visible checks passed, hidden tests failed")
    ax.barh(s["cell"], s["failed_visible"], left=s["failed_hidden"], color=OKABE_ITO["sky_blue"],
            edgecolor=OKABE_ITO["black"], label="failed before the hidden tests")
    ax.set_title(f"Test cells with hidden tests in {aid}: failures")
    ax.set_xlabel("Submissions")
    ax.set_ylabel("Test cell")
    ax.legend(fontsize=8, loc="lower right")
    return fig


# --------------------------------------------------------------------------- report
def _n(count, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _pct(x) -> str:
    return "n/a" if x != x else f"{x:.0f}%"


def _describe_distribution(row) -> str:
    return (f"{_n(row['submissions'], 'submission')} of {row['assignment']} (maximum {row['max_score']:g} points). "
            f"The median score is {_pct(row['median_pct'])} of the maximum; the middle half of the class "
            f"scored between {_pct(row['q1_pct'])} and {_pct(row['q3_pct'])}. {row['zero']} scored zero "
            f"and {row['full']} earned full marks."
            + (f" {_n(row['pending_manual'], 'submission')} still {'has' if row['pending_manual'] == 1 else 'have'}"
               " written answers to mark, so those scores may rise." if row["pending_manual"] else ""))


def _describe_items(aid, stats) -> str:
    s = stats[stats["assignment"] == aid].dropna(subset=["difficulty"])
    if s.empty:
        return "No graded questions yet."
    hardest = s.sort_values("difficulty").iloc[0]
    easiest = s.sort_values("difficulty").iloc[-1]
    text = (f"The hardest graded cell was {hardest['cell']} (students earned {hardest['difficulty']:.0%} of its "
            f"points on average) and the easiest {easiest['cell']} ({easiest['difficulty']:.0%}). ")
    known = s.dropna(subset=["discrimination"])
    low = known[known["discrimination"] < LOW_DISCRIMINATION]["cell"].tolist()
    if known.empty:
        text += "Discrimination needs at least three marked submissions with different scores; not yet. "
    elif low:
        text += (f"Cells whose score barely tracks the rest of the assignment (discrimination below "
                 f"{LOW_DISCRIMINATION}): {', '.join(low)}; check their wording and their tests. ")
    else:
        text += f"Every cell with a computable discrimination is at or above {LOW_DISCRIMINATION}. "
    pending = int(stats[stats["assignment"] == aid]["pending"].sum())
    if pending:
        text += f"{_n(pending, 'written answer')} not marked yet {'is' if pending == 1 else 'are'} left out. "
    return text + "With few students, discrimination is noisy: read it as a pointer, not a verdict."


def _describe_rubric(aid, levels) -> str:
    lv = levels[levels["assignment"] == aid]
    parts = []
    for cell, g in lv.groupby("cell", sort=False):
        graded = int(g["students"].sum())
        extra = []
        if g["unanswered"].iloc[0]:
            extra.append(f"{g['unanswered'].iloc[0]} left unanswered (0 points without a grader)")
        if g["pending"].iloc[0]:
            extra.append(f"{g['pending'].iloc[0]} waiting for a grader")
        if not graded:
            parts.append(f"{cell}: none marked yet" + (f" ({'; '.join(extra)})" if extra else ""))
            continue
        top = g.sort_values("students").iloc[-1]
        mean = (g["level"] * g["students"]).sum() / graded
        parts.append(f"{cell}: {graded} marked, mean {mean:.1f} of {g['max_score'].iloc[0]:g}, most often "
                     f"{top['level']:g} points ({_n(int(top['students']), 'student')})"
                     + (f"; {'; '.join(extra)}" if extra else ""))
    return "; ".join(parts) + "."


def _describe_hidden(aid, summary) -> str:
    s = summary[summary["assignment"] == aid]
    bad = s[s["failed_hidden"] > 0]
    if s.empty:
        return "No test cell of this assignment has hidden tests."
    if bad.empty:
        return ("No submission passed the visible checks and then failed hidden tests: where answers were "
                "wrong, the students could see it.")
    top = bad.iloc[0]
    return (f"{len(bad)} test cell(s) had submissions that passed the visible checks but failed hidden tests. "
            f"The commonest was {top['cell']}: {top['failed_hidden']} submission(s)"
            + (f", most often with “{top['commonest_message']}”" if top["commonest_message"] else "")
            + ". A hidden-test failure after passing checks usually means an answer that works only on "
              "the course's own table (hard-coded values), so say so in feedback.")


def build_report(course: str | Path = COURSE_DIR, out: str | Path = "instructor_report.html",
                 assignments: list[str] | None = None) -> Path:
    """Write the HTML report for ``course``; return its path."""
    t = load(course, assignments)
    subs, items = t["submissions"], t["items"]
    dist = score_distribution(subs)
    stats = item_statistics(items)
    levels = rubric_levels(items)
    outcomes = hidden_test_outcomes(t["course"], t["coursedir"], assignments)
    hidden = hidden_test_summary(outcomes)
    course_id = t["coursedir"].course_id

    parts: list[str] = []
    n_fig = 0

    def figure(fig, alt: str, caption: str, text: str) -> None:
        nonlocal n_fig
        n_fig += 1
        parts.append(f"<p>{html.escape(text)}</p>")
        parts.append(f'<figure><img src="data:image/png;base64,{_png(fig)}" alt="{html.escape(alt)}">'
                     f"<figcaption><strong>Figure {n_fig}.</strong> {html.escape(caption)}</figcaption></figure>")

    def table(df, caption: str, cols: dict) -> None:
        view = df[list(cols)].rename(columns=cols)
        body = view.to_html(index=False, float_format=lambda x: f"{x:.2f}", border=0, na_rep="–")
        body = re.sub(r"<table[^>]*>", f'<table class="data"><caption>{html.escape(caption)}</caption>', body,
                      count=1)
        parts.append(body)

    aids = list(dict.fromkeys(t["cells"]["assignment"]))
    parts.append(f"<h1>Instructor report: {html.escape(course_id)}</h1>")
    parts.append(f"<p>{len(t['students'])} students in the gradebook; {len(subs)} graded submissions across "
                 f"{len(aids)} assignments. Scores are nbgrader's (manual marks where given, otherwise the "
                 "autograder's).</p>")
    for aid in aids:
        parts.append(f"<h2>{html.escape(aid)}</h2>")
        row = dist[dist["assignment"] == aid]
        parts.append("<h3>Score distribution</h3>")
        if row.empty:
            parts.append("<p>No submissions yet.</p>")
            continue
        r = row.iloc[0]
        figure(figure_distribution(aid, subs),
               f"Histogram of {r['submissions']} scores on {aid} in 10-point bands of the maximum; median "
               f"{_pct(r['median_pct'])}, {r['zero']} at zero, {r['full']} at full marks.",
               f"Distribution of total scores on {aid}, in percent of the maximum.", _describe_distribution(r))
        parts.append("<h3>Question difficulty and discrimination</h3>")
        figure(figure_items(aid, stats),
               f"Two bar charts side by side, one bar per graded cell of {aid}: on the left the difficulty "
               "(mean score over points, 0 to 1), on the right the discrimination (-1 to 1, dashed line at "
               f"{LOW_DISCRIMINATION}, n/a where it cannot be computed). " + _describe_items(aid, stats),
               f"Difficulty and discrimination of each graded cell of {aid}; blue bars are autograded "
               "tests, orange bars written answers.", _describe_items(aid, stats))
        table(stats[stats["assignment"] == aid], f"Questions of {aid}",
              {"cell": "Cell", "kind": "Kind", "max_score": "Points", "graded": "Graded",
               "mean_score": "Mean score", "difficulty": "Difficulty", "discrimination": "Discrimination"})
        parts.append("<h3>Written answers: rubric levels</h3>")
        lv = levels[levels["assignment"] == aid]
        if lv.empty:
            parts.append("<p>This assignment has no written answers.</p>")
        elif not lv["students"].sum():
            parts.append(f"<p>{html.escape(_describe_rubric(aid, levels))}</p>")
        else:
            figure(figure_rubric(aid, levels),
                   f"Stacked bar chart, one bar per written answer of {aid}, split by the points awarded.",
                   f"Points awarded on each written answer of {aid} (marked answers only).",
                   _describe_rubric(aid, levels))
        if not lv.empty:
            schemes = mark_schemes(t["course"], aid)
            for cell in dict.fromkeys(lv["cell"]):
                if cell in schemes:
                    parts.append(f"<details><summary>Rubric for {html.escape(cell)}</summary>"
                                 f"<pre>{html.escape(schemes[cell])}</pre></details>")
        parts.append("<h3>Hidden tests that fail most often</h3>")
        hs = hidden[hidden["assignment"] == aid]
        if hs.empty:
            parts.append("<p>No autograded test cell of this assignment has hidden tests.</p>")
        else:
            figure(figure_hidden(aid, hidden),
                   f"Horizontal bar chart of the test cells with hidden tests in {aid}: for each, the "
                   "submissions that passed the visible checks but failed the hidden tests, and those that "
                   "failed earlier.", f"Failures of the test cells that contain hidden tests, {aid}.",
                   _describe_hidden(aid, hidden))
            table(hs, f"Hidden tests of {aid}",
                  {"cell": "Cell", "submissions": "Submissions", "passed": "Passed",
                   "failed_visible": "Failed visible checks", "failed_hidden": "Failed hidden tests only",
                   "commonest_message": "Commonest hidden-test message"})
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
             "line-height:1.5;color:#111}img{max-width:100%}figure{margin:1rem 0}"
             "table.data{border-collapse:collapse;margin:1rem 0}table.data td,table.data th"
             "{border:1px solid #999;padding:.2rem .5rem;text-align:left}caption{font-weight:bold;text-align:left}")
    doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Instructor report: '
           f"{html.escape(course_id)}</title><style>{style}</style></head><body>\n" + "\n".join(parts)
           + "\n</body></html>\n")
    out = Path(out)
    out.write_text(doc, encoding="utf-8")
    return out


# --------------------------------------------------------------------------- CLI
def _cmd(args) -> int:
    out = build_report(args.course, args.out, args.assignment)
    print(f"wrote {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analytics", help="write the instructor report (HTML) from the gradebook",
        description="Score distributions, question difficulty and discrimination, rubric levels of written "
                    "answers, and the hidden tests that fail most often, as one HTML file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--course", type=Path, default=COURSE_DIR)
    p.add_argument("--out", type=Path, default=Path("instructor_report.html"))
    p.add_argument("--assignment", action="append", help="only this assignment (repeatable)")
    p.set_defaults(func=_cmd)
