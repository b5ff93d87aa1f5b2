"""nbgrader configuration for the course "Reading the Soleimani strike".

Every setting below is here for a reason a real course meets; the README's
instructor section explains each one.  Paths are relative to this file so
the course works wherever it is cloned.
"""
import os

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

HERE = os.path.dirname(os.path.abspath(__file__))

# --- Course identity and layout -------------------------------------------
c.CourseDirectory.course_id = "soleimani-oped-2020"
c.CourseDirectory.root = HERE
# The gradebook: SQLite by default.  Several graders or parallel grading on a
# server: set NBGRADER_DB_URL, e.g. postgresql+psycopg2://user@127.0.0.1:5432/gradebook
c.CourseDirectory.db_url = os.environ.get(
    "NBGRADER_DB_URL", "sqlite:///" + os.path.join(HERE, "gradebook.db")
)
# Data files beside each notebook are released with it; caches are not.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".DS_Store"]
c.CourseDirectory.max_file_size = 10_000  # kB; a student folder bigger than this is not collected

# --- Exchange (release / fetch / submit / collect on one machine or a hub) --
# nbgrader's default (/srv/nbgrader/exchange) rarely exists on a laptop and the
# Assignment List then says "Error fetching courses!".  Use a folder beside
# the course unless the hub administrator sets NBGRADER_EXCHANGE.
_exchange = os.environ.get("NBGRADER_EXCHANGE", os.path.join(HERE, "exchange"))
os.makedirs(_exchange, exist_ok=True)
c.Exchange.root = _exchange

# --- What students receive -------------------------------------------------
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\nraise NotImplementedError()",
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Mark schemes sit in the read-only prompt cell just above each written answer,
# so graders see the rubric next to the answer in Formgrader (nbgrader restores
# locked cells from the gradebook when it autogrades).  That needs this off.
c.ClearMarkScheme.enforce_metadata = False

# --- LMS / zip_collect -----------------------------------------------------
# Put the zip downloaded from Canvas or Moodle in downloaded/<assignment>/archive/
# and run `nbgrader zip_collect <assignment>` (or `python -m coursekit collect-lms
# <assignment> <zip>`, which also refuses to overwrite earlier submissions
# without --force).  File names the two LMSs write (exact patterns: coursekit/lms.py):
#   Canvas: <name>_[LATE_]<user id>_<file id>_<notebook>[-<n>].ipynb
#   Moodle: <Full Name>_<participant id>_assignsubmission_file_/<notebook>.ipynb
# The course's collector reads both schemes, keeps the latest upload when a
# notebook appears twice (stock zip_collect stops the whole batch there), and
# writes downloaded/<assignment>/collect_report.csv: lateness, what was skipped.
import importlib.util  # noqa: E402
import sys  # noqa: E402

_repo = os.path.dirname(HERE)
if os.path.isdir(os.path.join(_repo, "coursekit")) and _repo not in sys.path:
    sys.path.insert(0, _repo)
if importlib.util.find_spec("coursekit") and importlib.util.find_spec("coursekit.lms"):
    c.ZipCollectApp.collector_plugin = "coursekit.lms.LMSCollector"
    c.LMSCollector.lms = "auto"  # or "canvas" / "moodle"
    # Optional: CSV mapping LMS ids to student ids (lms_id,student_id), or the
    # Canvas gradebook export (its ID column -> SIS Login ID). Relative to this folder.
    c.LMSCollector.roster = ""
else:  # course folder used without the coursekit package: stock collector, Canvas names
    c.FileNameCollectorPlugin.named_regexp = (
        r".*/(?P<student_id>[^/_]+)_(?:LATE_)?\d+_\d+_(?P<file_id>[^/]+?)(?:-\d+)?\.ipynb$"
    )

# --- Grading safely --------------------------------------------------------
# Student notebooks are untrusted input.  Design and reasons: the README section
# "Grading untrusted work" and the docstring of coursekit/safety.py.  In short:
# each notebook runs in a bubblewrap sandbox (no network, uid 65534, read-only
# view of its own data files, CPU/memory/process limits); the tests run in a
# second, clean "judge" kernel that only receives the student's answers as
# data, so nothing the student's code does to its interpreter changes a grade.
# A cell that runs longer than this is stopped and the question scores 0.
c.Execute.timeout = 30
c.Execute.interrupt_on_timeout = True
# ipykernel 7 sometimes takes seconds to exit gracefully; scores are unaffected.
c.Execute.shutdown_kernel = "immediate"
# A test cell deleted by the student is put back from the gradebook.
c.OverwriteCells.add_missing_cells = True
# Huge printed output is cut before it reaches the gradebook or feedback
# (lines here; bytes in coursekit's LimitOutputBytes and SandboxedExecute).
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60

import sys as _sys  # noqa: E402

# coursekit lives beside this folder (or beside the virtual environment when a
# copy of the course folder is graded elsewhere, as the tests do).
for _root in (os.environ.get("COURSEKIT_ROOT"), os.path.dirname(HERE), os.path.dirname(_sys.prefix)):
    if _root and os.path.isfile(os.path.join(_root, "coursekit", "safety.py")):
        if _root not in _sys.path:
            _sys.path.insert(0, _root)
        break
try:
    import coursekit.safety  # noqa: E402,F401
except ImportError as _exc:  # stock nbgrader still grades, but without any of the protections
    print(f"WARNING: coursekit.safety not importable ({_exc}); grading runs student code "
          "UNSANDBOXED in the student's own interpreter.", file=_sys.stderr)
else:
    from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor  # noqa: E402
    from nbgrader.preprocessors import (  # noqa: E402
        AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds, GetGrades, IgnorePattern,
        LimitOutput, OverwriteCells, OverwriteKernelspec, SaveAutoGrades)

    # An unreadable notebook (not JSON, unknown format) scores 0 with a message
    # naming the student, instead of an error; old formats are converted.
    c.Autograde.exporter_class = "coursekit.safety.SafeNotebookExporter"
    # Metadata comes from the gradebook: edited points, ids, schema versions and
    # deleted cells are restored before nbgrader validates anything.
    c.Autograde.sanitize_preprocessors = [
        "coursekit.safety.RepairSubmission", ClearOutput, DeduplicateIds, OverwriteKernelspec,
        OverwriteCells, CheckCellMetadata]
    # nbgrader's Execute replaced by the sandboxed student kernel + judge kernel.
    c.Autograde.autograde_preprocessors = [
        "coursekit.safety.SandboxedExecute", IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
        "coursekit.safety.LimitOutputBytes", SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    # A gradebook backup (backups/gradebook-<time>.db) before each grading run
    # (restore: `python -m coursekit restore`), and the pre-flight findings about
    # each submission (renamed, missing, unreadable...) in the log, by student.
    c.Autograde.pre_convert_hook = "coursekit.safety.before_grading"
    # Feedback shows no hidden-test source and no test tracebacks.
    c.GenerateFeedback.preprocessors = [
        GetGrades, "coursekit.safety.StripHiddenTests", "coursekit.safety.RedactTestErrors",
        "coursekit.safety.LimitOutputBytes", CSSHTMLHeaderPreprocessor]
    # Output kept per cell, in bytes (printed text / everything).
    c.SandboxedExecute.max_stream_bytes = 100_000
    c.SandboxedExecute.max_output_bytes = 1_000_000
    c.LimitOutputBytes.max_stream_bytes = 100_000
    c.LimitOutputBytes.max_output_bytes = 1_000_000
    # Limits of each sandboxed kernel (see coursekit/sandbox.py).
    c.SandboxedKernelManager.cpu_seconds = 600          # CPU seconds over the notebook
    c.SandboxedKernelManager.memory_bytes = 1024 ** 3   # address space: 1 GiB
    c.SandboxedKernelManager.max_processes = 32         # processes + threads of its uid
    c.SandboxedKernelManager.max_file_bytes = 64 * 1024 ** 2
    c.SandboxedKernelManager.tmp_bytes = 256 * 1024 ** 2  # its private /tmp
    # Without bubblewrap, grading still works with a loud warning (see README).
    c.SandboxedKernelManager.sandbox = True
