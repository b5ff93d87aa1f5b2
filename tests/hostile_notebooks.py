"""Hostile and broken submissions of assignment 1, built from the solution notebook.

Each submission is the solution with one thing done to it.  ``SUBMISSIONS`` maps a
student id to a :class:`Submission`: the files to hand in and the exact score each
test cell should get.  Wrong answers are the *honest mistakes* of the student
``honest_wrong``; an attack that should gain nothing must score exactly what those
mistakes score without the attack.
"""
from __future__ import annotations

import copy
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from coursekit import SOURCE_DIR

AID = "a1_sourcing_close_reading"
NB_NAME = "sourcing_and_close_reading.ipynb"
SOLUTION = SOURCE_DIR / AID / NB_NAME


def solution() -> nbformat.NotebookNode:
    nb = nbformat.read(SOLUTION, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def points_of_tests() -> dict[str, float]:
    """grade_id -> points of every autograded test cell."""
    return {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"])
            for c in solution().cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")}


POINTS = points_of_tests()
FULL = sum(POINTS.values())          # 16 autograded points
MANUAL = {"a1-q33-answer": 0.0, "a1-q34-answer": 0.0}  # written answers: not yet marked


def cell(nb, grade_id):
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return c
    raise KeyError(grade_id)


def index(nb, grade_id):
    return nb.cells.index(cell(nb, grade_id))


def code(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


# --------------------------------------------------------------------------
# Honest mistakes (what an attacker's wrong answers look like without the attack)
# --------------------------------------------------------------------------
WRONG = {
    "a1-q11-answer": 'genre_choice = "a"\n',
    "a1-q12-answer": 'author_choices = "ab"\n',
    "a1-q21-answer": code('''
        BACK_MATTER = ["author note", "photo credit", "publisher note"]

        def body_word_counts(table):
            """Forgets to leave out the back matter."""
            return table.set_index("paragraph")["text"].str.split().str.len()

        word_counts = body_word_counts(paragraphs)
        '''),
    "a1-q22-answer": code('''
        def role_counts(table):
            """Counts the back matter too."""
            return table["role"].value_counts()

        roles = role_counts(paragraphs)
        '''),
    "a1-q23-answer": "recommendation_share = 0.5\n",
    "a1-q24-answer": code('''
        def actor_mentions(table):
            """Counts nothing."""
            return pd.Series({actor: 0 for actor in ACTOR_PATTERNS})

        mentions = actor_mentions(paragraphs)
        '''),
    "a1-q25-answer": code('''
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.bar(word_counts.index, word_counts.values, color=OKABE_ITO[4])
        plt.show()
        '''),
    "a1-q31-answer": 'statement_kind = "b"\n',
    "a1-q32-answer": 'evidence_choices = "ae"\n',
}
TEST_OF = {answer: answer.replace("-answer", "-tests") for answer in WRONG}


def with_wrong(nb, *answers):
    for gid in answers:
        cell(nb, gid).source = WRONG[gid]
    return nb


def prepend(nb, grade_id, text):
    c = cell(nb, grade_id)
    c.source = code(text) + c.source
    return nb


def append(nb, grade_id, text):
    c = cell(nb, grade_id)
    c.source = c.source.rstrip("\n") + "\n" + code(text)
    return nb


@dataclass
class Submission:
    files: dict[str, bytes]
    zero: tuple[str, ...] = ()             # test cells that must score 0 (all others: full points)
    manual: dict[str, float] = field(default_factory=lambda: dict(MANUAL))
    note: str = ""

    @property
    def expected_cells(self) -> dict[str, float]:
        out = {gid: (0.0 if gid in self.zero else pts) for gid, pts in POINTS.items()}
        out.update(self.manual)
        return out

    @property
    def expected_score(self) -> float:
        return sum(v for k, v in self.expected_cells.items() if k in POINTS)


def notebook_files(nb, name=NB_NAME) -> dict[str, bytes]:
    return {name: nbformat.writes(nb).encode("utf-8")}


def zero_for(*answers) -> tuple[str, ...]:
    return tuple(TEST_OF[a] for a in answers)


# --------------------------------------------------------------------------
# Submissions that break or stop their own kernel
# --------------------------------------------------------------------------
def runtime_submissions() -> dict[str, Submission]:
    """Several independent kinds share a student where each breaks a different question."""
    subs: dict[str, Submission] = {}

    nb = solution()
    prepend(nb, "a1-q11-answer", "raise KeyboardInterrupt")
    prepend(nb, "a1-q12-answer", "import sys\nsys.exit(3)")
    prepend(nb, "a1-q22-answer", "def role_counts(table)\n    return 1")
    prepend(nb, "a1-q23-answer", 'raise ValueError("not today")')
    subs["rt_errors"] = Submission(notebook_files(nb), zero_for("a1-q11-answer", "a1-q12-answer", "a1-q22-answer",
                                                                "a1-q23-answer"),
                                   note="KeyboardInterrupt, sys.exit(), a syntax error, an exception")

    nb = solution()
    prepend(nb, "a1-q11-answer", "while True:\n    pass")
    prepend(nb, "a1-q12-answer", "import time\ntime.sleep(10 ** 6)")
    subs["rt_hangs"] = Submission(notebook_files(nb), zero_for("a1-q11-answer", "a1-q12-answer"),
                                  note="a cell that never ends and one that sleeps forever")

    nb = prepend(solution(), "a1-q31-answer", """
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            pass
        """)
    subs["rt_ignores_interrupt"] = Submission(notebook_files(nb), zero_for("a1-q31-answer"),
                                              note="an endless loop that ignores the interrupt")

    nb = prepend(solution(), "a1-q32-answer", "import os\nos._exit(1)")
    subs["rt_os_exit"] = Submission(notebook_files(nb), zero_for("a1-q32-answer"), note="os._exit() kills the kernel")

    nb = prepend(solution(), "a1-q25-answer", """
        import os, signal, sys, time
        try:
            os.kill(os.getppid(), signal.SIGKILL)
        except OSError as exc:
            print("parent:", exc)
        sys.stdout.flush()
        time.sleep(0.5)
        os.killpg(0, signal.SIGKILL)
        """)
    subs["rt_kill_parent"] = Submission(notebook_files(nb), zero_for("a1-q25-answer"),
                                        note="kills its parent, then its own process group")

    nb = solution()
    append(nb, "a1-q11-answer", 'print("x" * 50_000_000)')
    prepend(nb, "a1-q12-answer", "hoard = bytearray(10 ** 9)")
    prepend(nb, "a1-q24-answer", """
        import os
        while True:
            os.fork()
        """)
    subs["rt_resources"] = Submission(notebook_files(nb), zero_for("a1-q12-answer", "a1-q24-answer"),
                                      note="50 MB printed on one line, a 1 GB allocation, a fork loop")
    return subs


#: kind of hostile submission -> (student, the answer cell it breaks or None)
RUNTIME_KINDS = {
    "never_ends": ("rt_hangs", "a1-q11-answer"),
    "sleeps_forever": ("rt_hangs", "a1-q12-answer"),
    "ignores_interrupt": ("rt_ignores_interrupt", "a1-q31-answer"),
    "syntax_error": ("rt_errors", "a1-q22-answer"),
    "exception": ("rt_errors", "a1-q23-answer"),
    "sys_exit": ("rt_errors", "a1-q12-answer"),
    "os_exit": ("rt_os_exit", "a1-q32-answer"),
    "keyboard_interrupt": ("rt_errors", "a1-q11-answer"),
    "50mb_output": ("rt_resources", "a1-q11-answer"),
    "1gb_memory": ("rt_resources", "a1-q12-answer"),
    "fork_loop": ("rt_resources", "a1-q24-answer"),
    "kills_parent": ("rt_kill_parent", "a1-q25-answer"),
}


# --------------------------------------------------------------------------
# Submissions whose answer code attacks the tests from inside the interpreter
# --------------------------------------------------------------------------
def _hash(letters: str) -> str:
    import hashlib
    return hashlib.sha256("".join(sorted(set(letters))).encode()).hexdigest()


def integrity_submissions() -> dict[str, Submission]:
    subs: dict[str, Submission] = {}
    mc = ("a1-q11-answer", "a1-q12-answer", "a1-q31-answer", "a1-q32-answer")

    nb = with_wrong(solution(), *mc)
    table = {"a": _hash("b"), "ab": _hash("acd"), "b": _hash("a"), "ae": _hash("abe")}
    append(nb, "a1-q11-answer", f'''
        # redefine the course's checking helper so that every wrong letter "matches"
        _table = {table!r}
        def answer_hash(answer):
            return _table.get(str(answer), "")
        ''')
    subs["attack_redefine_helper"] = Submission(notebook_files(nb), zero_for(*mc),
                                                note="redefines answer_hash, the tests' assert helper")

    nb = with_wrong(solution(), "a1-q23-answer")
    append(nb, "a1-q23-answer", '''
        import builtins, sys
        _real_abs = builtins.abs

        def _abs(x):
            # in the hidden test's closeness check, every difference is 0
            if "_expected" in sys._getframe(1).f_code.co_names:
                return 0.0
            return _real_abs(x)

        builtins.abs = _abs
        ''')
    subs["attack_patch_builtins"] = Submission(notebook_files(nb), zero_for("a1-q23-answer"),
                                               note="patches builtins.abs")

    nb = with_wrong(solution(), "a1-q23-answer")
    append(nb, "a1-q23-answer", '''
        import sys
        import numpy as np
        import pandas as pd

        _original_sum = pd.Series.sum

        class _Half(float):
            def __truediv__(self, other):
                return 0.5

        def _sum(self, *args, **kwargs):
            # inside the hidden test, make the "expected" share equal our 0.5
            if "_expected" in sys._getframe(1).f_code.co_names:
                return _Half(1.0)
            return _original_sum(self, *args, **kwargs)

        pd.Series.sum = _sum
        np.isclose = lambda *args, **kwargs: True
        np.allclose = lambda *args, **kwargs: True
        ''')
    subs["attack_patch_pandas_numpy"] = Submission(notebook_files(nb), zero_for("a1-q23-answer"),
                                                   note="monkeypatches pandas.Series.sum and numpy functions")

    nb = with_wrong(solution(), "a1-q11-answer", "a1-q25-answer")
    append(nb, "a1-q11-answer", '''
        import sys
        ip = get_ipython()
        def _wrap_in_try(lines):
            # every later cell runs inside try/except: no assertion can fail
            return ["try:\\n"] + ["    " + line for line in lines] + ["\\n    pass\\nexcept BaseException:\\n    pass\\n"]
        ip.input_transformers_post.append(_wrap_in_try)
        ip.set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)
        sys.excepthook = lambda *args: None
        ''')
    subs["attack_swallow_exceptions"] = Submission(
        notebook_files(nb), zero_for("a1-q11-answer", "a1-q25-answer"),
        note="swallows every exception: input transformer, custom exception handler, sys.excepthook")

    nb = with_wrong(solution(), "a1-q12-answer", "a1-q21-answer")
    append(nb, "a1-q12-answer", '''
        import ast

        class _NoAsserts(ast.NodeTransformer):
            def visit_Assert(self, node):
                return ast.Pass()

        get_ipython().ast_transformers.append(_NoAsserts())
        ''')
    subs["attack_ast_transformer"] = Submission(notebook_files(nb), zero_for("a1-q12-answer", "a1-q21-answer"),
                                                note="an AST transformer that deletes every assert")

    nb = with_wrong(solution(), "a1-q31-answer", "a1-q32-answer")
    append(nb, "a1-q31-answer", '''
        def _silence_tests(lines):
            text = "".join(lines)
            return ["pass\\n"] if ("assert" in text or "Check:" in text) else lines

        get_ipython().input_transformers_cleanup.append(_silence_tests)
        ''')
    subs["attack_input_transformer"] = Submission(notebook_files(nb), zero_for("a1-q31-answer", "a1-q32-answer"),
                                                  note="an input transformer that rewrites test cells to pass")

    nb = with_wrong(solution(), "a1-q22-answer", "a1-q24-answer")
    append(nb, "a1-q22-answer", '''
        _kernel = get_ipython().kernel
        _real_do_execute = _kernel.do_execute

        async def _do_execute(code, silent, *args, **kwargs):
            if "assert" in code:   # a test cell: report success without running it
                return {"status": "ok", "execution_count": _kernel.execution_count,
                        "payload": [], "user_expressions": {}}
            return await _real_do_execute(code, silent, *args, **kwargs)

        _kernel.do_execute = _do_execute
        ''')
    subs["attack_kernel_hook"] = Submission(notebook_files(nb), zero_for("a1-q22-answer", "a1-q24-answer"),
                                            note="replaces the kernel's execute handler")

    # a module named like a library, handed in beside the notebook: the working folder comes
    # before site-packages on sys.path, so any kernel started there imports it for `import pandas`
    shadow = textwrap.dedent('''
        import os, sys
        try:
            from IPython import get_ipython
            _ip = get_ipython()
        except Exception:
            _ip = None
        if _ip is not None:
            def _wrap_in_try(lines):
                return ["try:\\n"] + ["    " + line for line in lines] + ["\\n    pass\\nexcept BaseException:\\n    pass\\n"]
            _ip.input_transformers_post.append(_wrap_in_try)
            _ip.set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)
        _here = os.path.dirname(os.path.abspath(__file__))
        del sys.modules[__name__]
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
        import pandas as _real  # the real library, so that nothing else looks wrong
        sys.modules[__name__] = _real
        ''')
    nb = with_wrong(solution(), "a1-q11-answer", "a1-q25-answer")
    subs["attack_shadow_module"] = Submission(
        {**notebook_files(nb), "pandas.py": shadow.encode()}, zero_for("a1-q11-answer", "a1-q25-answer"),
        note="hands in pandas.py, which swallows every exception in the kernel that imports it")
    return subs


def spy_submission(course_root: Path, other_student: str, port: int) -> Submission:
    """Correct answers plus code that tries to read what it must not and to write where it must not."""
    nb = solution()
    paths = {
        "source": str(course_root / "source" / AID / NB_NAME),
        "release": str(course_root / "release" / AID / NB_NAME),
        "gradebook": str(course_root / "gradebook.db"),
        "other": str(course_root / "submitted" / other_student / AID / NB_NAME),
        "autograded": str(course_root / "autograded" / other_student / AID / NB_NAME),
        "config": str(course_root / "nbgrader_config.py"),
    }
    append(nb, "a1-q11-answer", f'''
        import glob, os, socket
        _found = []
        def _try(label, action):
            try:
                result = action()
                _found.append(f"{{label}}: SUCCEEDED {{str(result)[:80]!r}}")
            except Exception as exc:
                _found.append(f"{{label}}: blocked ({{type(exc).__name__}})")
        _paths = {paths!r}
        for _label, _path in _paths.items():
            _try("read " + _label, lambda p=_path: open(p, "rb").read(200))
        _try("write gradebook", lambda: open(_paths["gradebook"], "ab").write(b"x"))
        _try("write other student", lambda: open(_paths["other"], "w").write("{{}}"))
        _try("write own folder", lambda: open("planted.txt", "w").write("x"))
        _try("notebooks here", lambda: glob.glob("*.ipynb") or 1 / 0)
        _try("notebooks above", lambda: glob.glob("../**/*.ipynb", recursive=True) or 1 / 0)
        _try("network", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2))
        _try("internet", lambda: socket.create_connection(("1.1.1.1", 53), timeout=2))

        # remember every cell the kernel is asked to run (would capture hidden tests)
        _seen = []
        get_ipython().input_transformers_cleanup.append(lambda lines: (_seen.append("".join(lines)), lines)[1])
        ''')
    append(nb, "a1-q32-answer", '''
        print("\\n".join(_found))
        print("SEEN-CELLS:", "\\n----\\n".join(_seen))
        ''')
    return Submission(notebook_files(nb), (), note="reads sources, gradebook, other students; network; spies on cells")


# --------------------------------------------------------------------------
# Submissions that tamper with tests, ids, points and locked cells
# --------------------------------------------------------------------------
def tampering_submissions() -> dict[str, Submission]:
    subs: dict[str, Submission] = {}

    nb = with_wrong(solution(), "a1-q11-answer", "a1-q12-answer", "a1-q21-answer")
    cell(nb, "a1-q11-tests").source = "pass\n"                    # a test replaced by pass
    del nb.cells[index(nb, "a1-q12-tests")]                        # a test deleted
    test = cell(nb, "a1-q21-tests")                                # a test's id changed, then emptied
    test.metadata["nbgrader"]["grade_id"] = "my-own-check"
    test.source = "pass\n"
    cell(nb, "a1-q21-answer").metadata["nbgrader"]["grade_id"] = "a1-q21-answer-v2"
    subs["tamper_tests"] = Submission(notebook_files(nb), zero_for("a1-q11-answer", "a1-q12-answer", "a1-q21-answer"),
                                      note="tests replaced by pass, deleted, renamed")

    nb = solution()
    cell(nb, "a1-q22-tests").metadata["nbgrader"]["points"] = 100
    cell(nb, "a1-q11-tests").metadata["nbgrader"]["points"] = "lots"
    subs["tamper_points_raised"] = Submission(notebook_files(nb), (), note="points raised in metadata")

    nb = with_wrong(solution(), "a1-q11-answer")
    append(nb, "a1-setup", f"""
        def answer_hash(answer):
            return "{_hash("b")}"
        """)
    cell(nb, "a1-setup").metadata["nbgrader"]["locked"] = False
    subs["tamper_locked_edited"] = Submission(notebook_files(nb), zero_for("a1-q11-answer"),
                                              note="locked set-up cell unlocked and edited")

    nb = solution()
    cell(nb, "a1-q22-tests").metadata["nbgrader"]["schema_version"] = 1
    cell(nb, "a1-q23-answer").metadata["nbgrader"] = {"grade": True, "solution": "yes"}
    nb.cells.insert(3, nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": "not a dict"}))
    subs["tamper_bad_metadata"] = Submission(notebook_files(nb), (),
                                             note="nbgrader metadata that makes nbgrader's validation abort")
    return subs


TAMPERING_KINDS = {
    "test_replaced_by_pass": ("tamper_tests", "a1-q11-answer"),
    "test_deleted": ("tamper_tests", "a1-q12-answer"),
    "ids_changed": ("tamper_tests", "a1-q21-answer"),
    "points_raised": ("tamper_points_raised", None),
    "locked_cell_edited": ("tamper_locked_edited", "a1-q11-answer"),
    "metadata_that_aborts_validation": ("tamper_bad_metadata", None),
}


# --------------------------------------------------------------------------
# Broken files
# --------------------------------------------------------------------------
def file_submissions() -> dict[str, Submission]:
    subs: dict[str, Submission] = {}
    no_manual = {k: 0.0 for k in MANUAL}
    all_zero = tuple(POINTS)
    subs["file_not_json"] = Submission({NB_NAME: b'{"cells": [ {"cell_type": "code", "sou'}, all_zero, no_manual,
                                       note="not valid JSON")
    v3 = nbformat.convert(solution(), 3)
    subs["file_nbformat3"] = Submission({NB_NAME: json.dumps(v3).encode()}, (), note="an older nbformat (v3)")
    subs["file_missing"] = Submission({"oped_paragraphs.csv": (SOURCE_DIR / AID / "oped_paragraphs.csv").read_bytes()},
                                      all_zero, no_manual, note="the notebook is missing")
    subs["file_extra"] = Submission({**notebook_files(solution()), "my_notes.txt": b"draft\n"}, (),
                                    note="an extra file")
    subs["file_renamed"] = Submission(notebook_files(solution(), "sourcing_and_close_reading (1).ipynb"),
                                      all_zero, no_manual, note="the notebook was renamed")
    nb = solution()
    nb.metadata["kernelspec"] = {"name": "python", "display_name": "Python", "language": "python"}
    subs["file_wrong_kernelspec"] = Submission(notebook_files(nb), (), note="a wrong kernelspec")
    return subs


def honest_submissions() -> dict[str, Submission]:
    nb = with_wrong(solution(), *WRONG)
    return {
        "honest_a": Submission(notebook_files(solution()), ()),
        "honest_wrong": Submission(notebook_files(nb), zero_for(*WRONG), note="every autograded answer wrong"),
    }


def copy_nb(nb):
    return copy.deepcopy(nb)
