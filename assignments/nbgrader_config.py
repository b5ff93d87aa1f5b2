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

# --- Grading safely --------------------------------------------------------
# A cell that runs longer than this is stopped and the question scores 0.
c.Execute.timeout = 30
c.Execute.interrupt_on_timeout = True
# ipykernel 7 sometimes takes seconds to exit gracefully; scores are unaffected.
c.Execute.shutdown_kernel = "immediate"
# A test cell deleted by the student is put back from the gradebook.
c.OverwriteCells.add_missing_cells = True
# Huge printed output is cut before it reaches the gradebook or feedback.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60
