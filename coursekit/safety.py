"""Grading that survives hostile and broken submissions (GitHub issue 6).

Design, in one paragraph: nbgrader runs the tests of a notebook in the student's own
interpreter, so anything the student's code did there -- redefine ``answer_hash``,
patch ``builtins`` or ``pandas.Series.__eq__``, install an IPython input or AST
transformer or a custom exception handler, hack the kernel's reply -- decides the
grade.  No check run *inside* that interpreter can be trusted, because the student's
code ran first and can patch the checker too.  So :class:`SandboxedExecute` (the
course's replacement for nbgrader's ``Execute`` in ``Autograde.autograde_preprocessors``)
runs every notebook in **two** sandboxed kernels:

* the **student kernel** runs the student's cells and the locked set-up cells, exactly
  as the student ran them; its outputs are what the autograded notebook and the
  feedback show;
* the **judge kernel** never runs a line the student wrote.  It runs the locked cells
  (with the source from the gradebook) and the test cells.  Names a test uses that
  only the student defines are fetched from the student kernel through
  :mod:`coursekit.bridge` as *data* (rebuilt as genuine ``int``/``str``/pandas
  objects) or as handles whose methods run back in the student kernel.  Names that any
  locked cell defines (``answer_hash``, ``paragraphs``, ``pd``...) and built-ins are
  always the judge's own.

The grade of a test cell is therefore decided by clean code on data, and an honest
answer gets exactly the credit it gets from stock nbgrader.  Both kernels run in a
bubblewrap sandbox (:mod:`coursekit.sandbox`): no network, an unprivileged uid, a
read-only copy of the submission's data files (never a notebook, so no hidden tests),
a private ``/tmp`` and CPU, memory, process and file-size limits.  A cell that kills
or wedges its kernel (``os._exit``, an interrupt-proof loop, a fork loop, a signal to
its own process group) scores 0; the kernel is restarted, the student's earlier
cells are run again, and the rest of the notebook is graded.  Output is bounded in
bytes while it is received.

Everything else a grading run needs lives here too: metadata repair and unreadable
notebooks (:class:`RepairSubmission`, :class:`SafeNotebookExporter`), hidden tests
kept out of feedback (:class:`StripHiddenTests`, :class:`RedactTestErrors`), a byte
bound on saved outputs (:class:`LimitOutputBytes`), gradebook backups
(:func:`backup_gradebook`, :func:`restore_gradebook`), submission checks
(:func:`preflight`) and the ``python -m coursekit backup|restore|preflight|feedback``
commands.  The section "Grading untrusted work" of docs/administration.md is the guide.
"""
from __future__ import annotations

import ast
import asyncio
import builtins
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert.exporters import NotebookExporter
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Bool, Int

from .sandbox import SandboxedKernelManager, stage_working_folder

log = logging.getLogger("coursekit.safety")
_root_log = logging.getLogger("coursekit")
if not _root_log.handlers:  # grading logs go to stderr beside nbgrader's own
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("[coursekit | %(levelname)s] %(message)s"))
    _root_log.addHandler(_handler)
    _root_log.setLevel(logging.INFO)
    _root_log.propagate = False

BRIDGE_SOURCE = (Path(__file__).with_name("bridge.py")).read_text(encoding="utf-8")
BRIDGE_SHA256 = hashlib.sha256(BRIDGE_SOURCE.encode("utf-8")).hexdigest()
BRIDGE = "__import__('sys').modules['_coursekit_bridge']"
KIB = 1024


# ==========================================================================
# Which cells are the assignment's own, and which names they define
# ==========================================================================
def _python_source(source: str) -> str:
    """Cell source as plain Python (IPython magics and ``!`` commands turned into calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:
        return source


def bound_names(source: str) -> set[str]:
    """Names a cell binds at the top level of the notebook's namespace."""
    try:
        tree = ast.parse(_python_source(source))
    except SyntaxError:
        return set()
    names: set[str] = set()

    def visit(node, top=True):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if top:
                names.add(node.name)
            return
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    names.add(alias.asname or alias.name.split(".")[0])
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        if isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        for child in ast.iter_child_nodes(node):
            visit(child, top)

    visit(tree)
    return names


def used_names(source: str) -> set[str]:
    """Every name a cell reads (a superset of what it needs from outside)."""
    try:
        tree = ast.parse(_python_source(source))
    except SyntaxError:
        return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", source))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


@dataclass
class CellPlan:
    role: str              # "student", "locked" (set-up: student kernel and judge) or "test" (judge only)
    fetch: list[str]       # names the judge takes from the student kernel first


def plan_notebook(nb: NotebookNode, db_url: str, notebook_id: str, assignment_id: str) -> list[CellPlan | None]:
    """Decide, from the gradebook (never from the submission), where each cell runs.

    Locked code cells and test cells get the gradebook's source back (nbgrader's
    OverwriteCells has normally done that already).
    """
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        nbrow = gb.find_notebook(notebook_id, assignment_id)
        locked = {c.name: c.source for c in nbrow.source_cells if c.locked and c.cell_type == "code"}
        graded = {c.name for c in nbrow.grade_cells}
        solutions = {c.name for c in nbrow.solution_cells}
    tests = {name for name in graded if name not in solutions and name in locked}
    trusted: set[str] = set(dir(builtins)) | {"get_ipython", "exit", "quit", "display", "In", "Out"}
    for source in locked.values():
        trusted |= bound_names(source)
    plans: list[CellPlan | None] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            plans.append(None)
            continue
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in locked:
            cell.source = locked[gid]
            fetch = sorted(n for n in used_names(cell.source) if n not in trusted and not n.startswith("_coursekit"))
            plans.append(CellPlan("test" if gid in tests else "locked", fetch))
        else:
            plans.append(CellPlan("student", []))
    return plans


# ==========================================================================
# Output bounded in bytes, while it arrives
# ==========================================================================
class _BoundedOutputMixin:
    """Keep at most ``max_stream_bytes`` of printed text and ``max_output_bytes`` in all per cell."""

    max_output_bytes = 1024 * KIB
    max_stream_bytes = 100 * KIB

    def output(self, outs, msg, display_id, cell_index):
        budgets = self.__dict__.setdefault("_coursekit_budgets", {})
        key = msg.get("parent_header", {}).get("msg_id")
        spent = budgets.setdefault(key, {"all": 0, "stream": 0, "cut": False})
        content = msg.get("content", {})
        kind = msg.get("msg_type")
        if kind == "stream":
            text = content.get("text", "")
            if not isinstance(text, str):
                return None
            size = len(text.encode("utf-8", "replace"))
            room = min(self.max_stream_bytes - spent["stream"], self.max_output_bytes - spent["all"])
            if room <= 0:
                return self._cut(outs, spent)
            if size > room:
                content["text"] = text.encode("utf-8", "replace")[:room].decode("utf-8", "ignore")
                size = room
                spent["stream"] += size
                spent["all"] += size
                out = super().output(outs, msg, display_id, cell_index)
                self._cut(outs, spent)
                return out
            spent["stream"] += size
            spent["all"] += size
            return super().output(outs, msg, display_id, cell_index)
        if kind == "error":
            content["ename"] = str(content.get("ename", ""))[:200]
            content["evalue"] = str(content.get("evalue", ""))[:2000]
            content["traceback"] = [str(line)[:2000] for line in list(content.get("traceback", []))[:200]]
        size = len(json.dumps(content, default=str))
        if spent["all"] + size > self.max_output_bytes:
            return self._cut(outs, spent)
        spent["all"] += size
        return super().output(outs, msg, display_id, cell_index)

    def _cut(self, outs, spent):
        if not spent["cut"]:
            spent["cut"] = True
            outs.append(nbformat.v4.new_output(
                "stream", name="stdout",
                text=f"\n... output truncated: more than {self.max_stream_bytes // KIB} kB of text "
                     f"or {self.max_output_bytes // KIB} kB in all ...\n"))
        return None


def _record_reply_error(cell, execute_reply):
    """nbgrader's rule: an error reply with no matching error output still costs the points."""
    content = (execute_reply or {}).get("content", {})
    if content.get("status") == "error":
        if not any(o.output_type == "error" and o.get("ename") == content.get("ename") for o in cell.outputs):
            cell.outputs.append(nbformat.v4.new_output(
                "error", ename=str(content.get("ename", "Error"))[:200],
                evalue=str(content.get("evalue", ""))[:2000],
                traceback=[str(x)[:2000] for x in content.get("traceback", [])[:200]]
                or ["ERROR: An error occurred while showtraceback was disabled"]))


class _JudgeClient(_BoundedOutputMixin, NotebookClient):
    """Runs the locked and test cells in the clean judge kernel."""

    def on_cell_executed(self, **kwargs):  # shadows the hook trait, as nbgrader's Execute does
        _record_reply_error(kwargs["cell"], kwargs.get("execute_reply"))


class KernelStopped(Exception):
    """A kernel died or stopped answering."""


def _error_output(ename: str, evalue: str) -> NotebookNode:
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                  traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"])


# ==========================================================================
# The execution preprocessor
# ==========================================================================
class SandboxedExecute(_BoundedOutputMixin, Execute):
    """Execute a submission in a sandboxed student kernel and grade it in a judge kernel."""

    judge = Bool(True, help="Run locked and test cells in a separate judge kernel.").tag(config=True)
    sandbox = Bool(True, help="Run kernels in bubblewrap (warn and run unsandboxed if impossible).").tag(config=True)
    max_output_bytes = Int(1024 * KIB, help="Bytes of output kept per cell.").tag(config=True)
    max_stream_bytes = Int(100 * KIB, help="Bytes of printed text kept per cell.").tag(config=True)
    max_restarts = Int(4, help="Kernel restarts allowed per notebook before the rest scores 0.").tag(config=True)
    judge_margin = Int(10, help="Extra seconds the judge gets per test cell beyond Execute.timeout.").tag(config=True)

    def __init__(self, **kw):
        kw.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(**kw)

    # -- entry point ----------------------------------------------------------
    def preprocess(self, nb, resources=None, km=None):
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        from jupyter_core.utils import run_sync

        run_sync(self._async_grade)()
        return self.nb, self.resources

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        km.sandbox = km.sandbox and self.sandbox
        return km

    async def _async_grade(self):
        nbg = self.resources["nbgrader"]
        self._plans = plan_notebook(self.nb, nbg["db_url"], nbg["notebook"], nbg["assignment"])
        self._who = f"{nbg.get('student', '?')}/{nbg['assignment']}/{nbg['notebook']}"
        self._executed: list[int] = []
        self._restarts = 0
        self._student_alive = False
        self._judge_alive = False
        self._judge_cells: list[int] = []
        path = self.resources.get("metadata", {}).get("path") or os.getcwd()
        self.judge_client = None
        self._scratch = None
        try:
            await self._start_kernels(path)
            await self._run_cells()
        finally:
            await self._shutdown()

    async def _start_kernels(self, path):
        """Start the student kernel and the judge kernel (at the same time), ready for the first cell."""
        self._scratch = Path(tempfile.mkdtemp(prefix="coursekit-grade-"))
        os.chmod(self._scratch, 0o711)  # an unsandboxed kernel's uid must reach work/
        work = stage_working_folder(path, self._scratch / "work")
        # the judge sees only the instructor's files (the released data), never what the
        # student handed in beside the notebook: an edited data file or a module named like a
        # library (pandas.py comes before site-packages on sys.path) would otherwise reach it
        instructor = self._instructor_folder()
        judge_work = (stage_working_folder(instructor, self._scratch / "judge") if instructor
                      else stage_working_folder(path, self._scratch / "judge", code=False))
        self.km = self.create_kernel_manager()
        self.km.work_dir = str(work)
        self.km._prepare_runtime()
        starts = [self._start_student(path)]
        if self.judge:
            jkm = self.kernel_manager_class(kernel_name=self.km.kernel_name, config=self.config)
            jkm.sandbox = self.km.sandbox
            jkm.work_dir = str(judge_work)
            jkm.extra_ro_binds = [str(self.km.ipc_dir)]
            self.judge_client = _JudgeClient(
                self.nb, km=jkm, timeout=self.timeout + self.judge_margin,
                interrupt_on_timeout=True, raise_on_iopub_timeout=True, allow_errors=True,
                startup_timeout=self.startup_timeout, shutdown_kernel="immediate",
                extra_arguments=list(self.extra_arguments), resources=self.resources,
                error_on_timeout=dict(self.error_on_timeout), log=self.log)
            self.judge_client.max_output_bytes = self.max_output_bytes
            self.judge_client.max_stream_bytes = self.max_stream_bytes
            starts.append(self._start_judge(path))
        await asyncio.gather(*starts)
        if self.judge:
            await self._connect_judge()

    def _instructor_folder(self) -> Path | None:
        """The assignment's released folder (else its source folder): the instructor's data files."""
        coursedir = _coursedir_of(self)
        if coursedir is None:
            return None
        aid = self.resources["nbgrader"]["assignment"]
        for folder in (coursedir.release_directory, coursedir.source_directory):
            candidate = Path(coursedir.format_path(folder, ".", aid))
            if candidate.is_dir():
                return candidate
        return None

    # -- kernels -----------------------------------------------------------------
    async def _start_student(self, path):
        await self.async_start_new_kernel(cwd=path)
        await self.async_start_new_kernel_client()
        self.km.seal()
        if not self.km.sandboxed:
            self.log.warning("%s: graded WITHOUT a sandbox (%s)", self._who, self.km.sandbox_problem)
        info = await self.async_wait_for_reply(await _maybe(self.kc.kernel_info()))
        if info and "language_info" in info["content"]:
            self.nb.metadata["language_info"] = info["content"]["language_info"]
        await self._boot(self.kc, "install_agent(get_ipython().user_ns)")
        self._student_alive = True

    async def _start_judge(self, path):
        jc = self.judge_client
        await jc.async_start_new_kernel(cwd=path)
        await jc.async_start_new_kernel_client()
        jc.km.seal()
        self._judge_alive = True

    async def _connect_judge(self):
        info = self._student_connection() if self._student_alive else None
        call = f"install_judge(get_ipython().user_ns, {info!r}, {float(self.timeout)!r})"
        await self._boot(self.judge_client.kc, call)

    def _student_connection(self):
        info = dict(self.km.get_connection_info())
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in info.items()
                if k in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port",
                         "ip", "key", "transport", "signature_scheme")}

    async def _shutdown(self):
        async def stop(client):
            try:
                await client._async_cleanup_kernel()
            except Exception as exc:  # never let clean-up hide the grade
                self.log.warning("%s: kernel clean-up: %s", self._who, exc)

        clients = [c for c in (self.judge_client, self) if c is not None and c.km is not None]
        kms = [c.km for c in clients]
        await asyncio.gather(*(stop(c) for c in clients))
        for km in kms:
            km.release_sandbox()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    async def _boot(self, kc, call):
        """Install the bridge in a kernel that has just started (before any student code runs there).

        Sent as a user expression, not as cell code: IPython passes cell code through its
        input transformers, which cost about 50 ms per kernel on the bridge's 30 kB of source;
        an expression is compiled directly.
        """
        expression = f"exec(compile({_boot_code(call)!r}, '<coursekit boot>', 'exec'), globals())"
        reply = await self._silent(kc, "", 60, expressions={"boot": expression})
        result = reply["content"].get("user_expressions", {}).get("boot", {})
        if result.get("status") != "ok":
            self.log.error("%s: the grading bridge could not be installed in a kernel: %s: %s", self._who,
                           result.get("ename", reply["content"].get("ename")),
                           result.get("evalue", reply["content"].get("evalue")))

    async def _silent(self, kc, code, timeout, expressions=None):
        """Run code without recording output; raise KernelStopped if no reply in time."""
        msg_id = kc.execute(code, silent=True, store_history=False, allow_stdin=False, stop_on_error=False,
                            user_expressions=expressions)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KernelStopped("no reply in time")
            try:
                msg = await kc.shell_channel.get_msg(timeout=min(remaining, 1.0))
            except Exception:
                if not await kc.is_alive():
                    raise KernelStopped("kernel died") from None
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    # -- the cells ---------------------------------------------------------------
    async def _run_cells(self):
        count = 0
        for index, cell in enumerate(self.nb.cells):
            plan = self._plans[index]
            if plan is None or not cell.source.strip():
                continue
            count += 1
            if plan.role == "test" and self.judge:
                await self._run_test(cell, index, count)
                continue
            if plan.role == "locked" and self.judge:
                # the judge runs the same locked cell at the same time (it needs nothing
                # the student kernel computes in this cell)
                await asyncio.gather(self._run_student(cell, index, count), self._judge_locked(index))
            else:
                await self._run_student(cell, index, count)

    async def _run_student(self, cell, index, count):
        if not self._student_alive:
            cell.outputs = [_error_output("KernelStopped", "Not run: earlier cells stopped the kernel too often.")]
            return
        try:
            try:
                await self.async_execute_cell(cell, index, execution_count=count)
            finally:
                self._reap(self.km)
        except (DeadKernelError, CellTimeoutError, KernelStopped, asyncio.TimeoutError, RuntimeError) as exc:
            died = isinstance(exc, DeadKernelError) or not await self._alive(self)
            self.log.error("%s: cell %d %s; restarting the student kernel", self._who, index,
                           "killed its kernel" if died else "did not stop when interrupted")
            cell.outputs.append(_error_output(
                "KernelStopped" if died else "CellTimeoutError",
                "This cell stopped the kernel; it scores nothing. The kernel was restarted and the "
                "cells before it were run again." if died else
                f"This cell did not finish within {self.timeout} s and ignored the interrupt; it scores "
                "nothing. The kernel was restarted and the cells before it were run again."))
            cell["execution_count"] = count
            await self._recover_student()
            return
        self._executed.append(index)

    def _reap(self, km):
        try:
            killed = km.reap_strays() if km is not None else 0
        except Exception as exc:  # never let clean-up hide the grade
            self.log.warning("%s: could not check for left-over processes: %s", self._who, exc)
            return
        if killed:
            self.log.warning("%s: killed %d process(es) a cell left running", self._who, killed)

    async def _alive(self, client):
        try:
            return bool(client.kc is not None and await client.kc.is_alive())
        except Exception:
            return False

    async def _recover_student(self):
        """Restart the student kernel and replay the cells that ran before (skipping any that fail)."""
        while True:
            self._restarts += 1
            if self._restarts > self.max_restarts:
                self.log.error("%s: the student kernel stopped %d times; the remaining cells score 0",
                               self._who, self._restarts - 1)
                self._student_alive = False
                await self._stop_student()
                await self._relink_judge()
                return
            try:
                await self._restart_student()
                for index in list(self._executed):
                    try:
                        await self._silent(self.kc, self.nb.cells[index].source, self.timeout)
                    except KernelStopped:
                        self._executed.remove(index)
                        raise
            except (KernelStopped, DeadKernelError, RuntimeError, asyncio.TimeoutError) as exc:
                self.log.error("%s: restart/replay failed (%s); trying again", self._who, exc)
                continue
            self._student_alive = True
            await self._relink_judge()
            return

    async def _stop_student(self):
        try:
            if self.kc is not None:
                await _maybe(self.kc.stop_channels())
            if self.km is not None and self.km.has_kernel:
                await self.km.shutdown_kernel(now=True, restart=True)
        except Exception as exc:
            self.log.warning("%s: stopping the student kernel: %s", self._who, exc)

    async def _restart_student(self):
        await self._stop_student()
        self.km.unseal()
        await self.km.start_kernel(**self.km._launch_args)
        self.kc = self.km.client()
        await _maybe(self.kc.start_channels())
        await self.kc.wait_for_ready(timeout=self.startup_timeout)
        self.kc.allow_stdin = False
        self.km.seal()
        await self._boot(self.kc, "install_agent(get_ipython().user_ns)")

    async def _relink_judge(self):
        if self.judge and self._judge_alive:
            info = self._student_connection() if self._student_alive else None
            try:
                await self._silent(self.judge_client.kc, f"{BRIDGE}.JUDGE.connect({info!r})", 30)
            except KernelStopped:
                await self._recover_judge()

    async def _ensure_student_idle(self):
        """After a test: a student function the judge called may still be running."""
        if not self._student_alive:
            return
        try:
            await self._silent(self.kc, "", 10)  # an idle kernel answers in milliseconds
            return
        except KernelStopped:
            pass
        try:
            await self.km.interrupt_kernel()
            await self._silent(self.kc, "", 5)
            return
        except (KernelStopped, RuntimeError):
            self.log.error("%s: the student kernel is stuck after a test; restarting it", self._who)
        await self._recover_student()

    # -- judge side ---------------------------------------------------------------
    async def _judge_prelude(self, index):
        names = self._plans[index].fetch
        code = f"{BRIDGE}.JUDGE.before_cell({names!r}, {float(self.timeout)!r})"
        await self._silent(self.judge_client.kc, code, self.timeout + self.judge_margin)

    async def _judge_locked(self, index):
        if not self._judge_alive:
            return
        try:
            await self._judge_prelude(index)
            await self._silent(self.judge_client.kc, self.nb.cells[index].source, self.timeout + self.judge_margin)
            self._judge_cells.append(index)
        except KernelStopped:
            self.log.error("%s: the judge kernel stopped in locked cell %d", self._who, index)
            await self._recover_judge()

    async def _run_test(self, cell, index, count):
        jc = self.judge_client
        if not self._judge_alive:
            cell.outputs = [_error_output("KernelStopped", "The tests could not be run.")]
            cell["execution_count"] = count
            return
        try:
            await self._judge_prelude(index)
            await jc.async_execute_cell(cell, index, execution_count=count)
            self._reap(self.km)
        except (DeadKernelError, CellTimeoutError, KernelStopped, asyncio.TimeoutError, RuntimeError) as exc:
            self.log.error("%s: the judge kernel stopped in test cell %d (%s)", self._who, index, exc)
            cell.outputs.append(_error_output("KernelStopped", "The tests of this question could not finish."))
            cell["execution_count"] = count
            await self._recover_judge()
        await self._ensure_student_idle()

    async def _recover_judge(self):
        jc = self.judge_client
        for _ in range(3):
            try:
                if jc.kc is not None:
                    await _maybe(jc.kc.stop_channels())
                if jc.km.has_kernel:
                    await jc.km.shutdown_kernel(now=True, restart=True)
                jc.km.unseal()
                await jc.km.start_kernel(**jc.km._launch_args)
                jc.kc = jc.km.client()
                await _maybe(jc.kc.start_channels())
                await jc.kc.wait_for_ready(timeout=self.startup_timeout)
                jc.km.seal()
                self._judge_alive = True
                await self._connect_judge()
                for index in list(self._judge_cells):
                    await self._judge_prelude(index)
                    await self._silent(jc.kc, self.nb.cells[index].source, self.timeout + self.judge_margin)
                return
            except (KernelStopped, DeadKernelError, RuntimeError, asyncio.TimeoutError) as exc:
                self.log.error("%s: restarting the judge kernel failed: %s", self._who, exc)
        self._judge_alive = False


async def _maybe(value):
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


def _boot_code(call: str) -> str:
    """Code that creates the bridge module in a fresh kernel and calls ``call`` on it.

    A kernel forked from coursekit.prefork's template finds the bridge already compiled
    there (``_coursekit_bridge_code``, checked against the source's SHA-256) and skips the
    compilation; the module itself is always created afresh.
    """
    return (
        "def _coursekit_boot():\n"
        "    import sys, types\n"
        "    module = types.ModuleType('_coursekit_bridge')\n"
        "    sys.modules['_coursekit_bridge'] = module\n"
        "    cached = sys.modules.pop('_coursekit_bridge_code', None)\n"
        f"    if getattr(cached, 'sha256', None) == {BRIDGE_SHA256!r}:\n"
        "        code = cached.code\n"
        "    else:\n"
        f"        code = compile({BRIDGE_SOURCE!r}, '<coursekit bridge>', 'exec')\n"
        "    exec(code, module.__dict__)\n"
        f"    module.{call}\n"
        "_coursekit_boot()\n"
        "del _coursekit_boot\n"
    )


# ==========================================================================
# Reading what students hand in
# ==========================================================================
def _student_of(resources) -> str:
    try:
        return resources["nbgrader"]["student"]
    except (KeyError, TypeError):
        return "?"


def read_notebook_text(text: str) -> tuple[NotebookNode, list[str]]:
    """Parse a submitted notebook leniently; returns the notebook and what was wrong with it.

    Raises ValueError if it is not a notebook at all.
    """
    notes: list[str] = []
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(raw, dict) or "nbformat" not in raw:
        raise ValueError("JSON, but not a Jupyter notebook (no 'nbformat' field)")
    version = raw.get("nbformat")
    if not isinstance(version, int) or version > 4 or version < 1:
        raise ValueError(f"unsupported notebook format version {version!r}")
    if version < 4:
        notes.append(f"old notebook format (version {version}); converted to version 4")
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:
        raise ValueError(f"cannot be read as a notebook ({type(exc).__name__}: {str(exc)[:200]})") from None
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise ValueError("the notebook has no list of cells")
    fixed = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            notes.append("a cell of unknown type was dropped")
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(str(s) for s in source)
        new = {
            "code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
            "raw": nbformat.v4.new_raw_cell,
        }[cell["cell_type"]](source=str(source))
        metadata = cell.get("metadata")
        new.metadata = metadata if isinstance(metadata, dict) else {}
        if isinstance(cell.get("id"), str) and re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", cell["id"]):
            new["id"] = cell["id"]
        fixed.append(new)
    metadata = nb.get("metadata")
    out = nbformat.v4.new_notebook(cells=fixed, metadata=metadata if isinstance(metadata, dict) else {})
    return out, notes


class SafeNotebookExporter(NotebookExporter):
    """The notebook exporter for autograding: an unreadable submission becomes an empty notebook.

    Stock nbgrader stops grading that student with a traceback (and a notebook-metadata
    error can stop the whole run).  Here the problem is logged with the student's name,
    the notebook scores 0 (its tests are restored from the gradebook and fail), and
    the rest of the class is graded.
    """

    def from_file(self, file_stream, resources=None, **kw):
        name = getattr(file_stream, "name", "notebook")
        try:
            text = file_stream.read()
            nb, notes = read_notebook_text(text)
            for note in notes:
                self.log.warning("Student %s: %s: %s", _student_of(resources), os.path.basename(name), note)
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            self.log.error("Student %s: %s is unreadable: %s. It is graded as an empty notebook "
                           "(0 points for its questions); the rest of the class is graded as usual.",
                           _student_of(resources), os.path.basename(name), exc)
            nb = nbformat.v4.new_notebook()
        return self.from_notebook_node(nb, resources, **kw)


def _coursedir_of(preprocessor):
    obj = preprocessor
    for _ in range(6):
        obj = getattr(obj, "parent", None)
        if obj is None:
            return None
        if getattr(obj, "coursedir", None) is not None:
            return obj.coursedir
    return None


def canonical_order(preprocessor, assignment_id: str, notebook_id: str) -> list[str]:
    """grade_ids of the instructor's notebook in order (source folder, else release folder)."""
    coursedir = _coursedir_of(preprocessor)
    candidates = []
    if coursedir is not None:
        for folder in (coursedir.source_directory, coursedir.release_directory):
            candidates.append(Path(coursedir.format_path(folder, ".", assignment_id)) / f"{notebook_id}.ipynb")
    candidates += [Path("source") / assignment_id / f"{notebook_id}.ipynb",
                   Path("release") / assignment_id / f"{notebook_id}.ipynb"]
    for path in candidates:
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:
            continue
        return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade_id")]
    return []


class RepairSubmission(NbGraderPreprocessor):
    """First sanitising step: nbgrader metadata comes from the gradebook, never from the student.

    * a cell whose ``grade_id`` the gradebook knows gets the gradebook's metadata back
      (points, locked, grade/solution flags, a current schema version), whatever the
      student changed -- so nbgrader's validation cannot abort the run and raised points
      count for nothing;
    * nbgrader metadata that is malformed, unknown or a second copy of an id is removed
      (the cell becomes an ordinary cell);
    * every cell of the assignment that is missing (deleted tests, set-up cells, answer
      cells) is put back in its place with the gradebook's source.

    nbgrader's own OverwriteCells then restores locked sources and checksums.
    """

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook

        nbg = resources["nbgrader"]
        student = nbg.get("student", "?")
        with Gradebook(nbg["db_url"]) as gb:
            nbrow = gb.find_notebook(nbg["notebook"], nbg["assignment"])
            cells = {c.name: (c.cell_type, bool(c.locked), c.source or "") for c in nbrow.source_cells}
            points = {c.name: float(c.max_score) for c in nbrow.grade_cells}
            solutions = {c.name for c in nbrow.solution_cells}
            tasks = {c.name for c in nbrow.task_cells}
        seen: set[str] = set()
        for cell in nb.cells:
            md = cell.metadata.get("nbgrader")
            if md is None:
                continue
            gid = md.get("grade_id") if isinstance(md, dict) else None
            if not isinstance(gid, str) or gid not in cells or gid in seen:
                self.log.warning("Student %s: removed nbgrader metadata the assignment does not have (%r)",
                                 student, str(gid)[:60] if gid is not None else md)
                del cell.metadata["nbgrader"]
                continue
            seen.add(gid)
            canonical = self._canonical(gid, cells, points, solutions, tasks)
            for key in ("grade", "solution", "locked", "points", "task"):
                if md.get(key, canonical.get(key)) != canonical.get(key) and not (
                        key == "points" and _num(md.get(key)) == canonical.get(key)):
                    self.log.warning("Student %s: cell %s had %s=%r; restored %r from the gradebook",
                                     student, gid, key, md.get(key), canonical.get(key))
            cell.metadata["nbgrader"] = canonical
            cell_type = cells[gid][0]
            if cell.cell_type != cell_type:
                self.log.warning("Student %s: cell %s was turned into %s; restored", student, gid, cell.cell_type)
                replacement = (nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell)(
                    source=cell.source, metadata=cell.metadata)
                cell.clear()
                cell.update(replacement)
        self._restore_missing(nb, cells, points, solutions, tasks, seen, student, nbg)
        return nb, resources

    @staticmethod
    def _canonical(gid, cells, points, solutions, tasks):
        md = {"grade": gid in points, "grade_id": gid, "locked": cells[gid][1],
              "schema_version": 3, "solution": gid in solutions}
        if gid in points:
            md["points"] = points[gid]
        if gid in tasks:
            md["task"] = True
        return md

    def _restore_missing(self, nb, cells, points, solutions, tasks, seen, student, nbg):
        missing = [gid for gid in cells if gid not in seen]
        if not missing:
            return
        order = canonical_order(self, nbg["assignment"], nbg["notebook"])
        if not order:
            self.log.warning("Student %s: %d cells are missing and the source notebook was not found to "
                             "place them; nbgrader's add_missing_cells will restore the tests", student, len(missing))
            return
        restored = []
        for gid in [g for g in order if g in missing]:
            cell_type, _, source = cells[gid]
            make = nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell
            cell = make(source=source, metadata={"nbgrader": self._canonical(gid, cells, points, solutions, tasks)})
            if cells[gid][1]:
                cell.metadata["editable"] = False
                cell.metadata["deletable"] = False
            before = order[: order.index(gid)]
            position = 0
            for i, existing in enumerate(nb.cells):
                if existing.metadata.get("nbgrader", {}).get("grade_id") in before:
                    position = i + 1
            nb.cells.insert(position, cell)
            restored.append(gid)
        if restored:
            self.log.warning("Student %s: %d cell(s) missing from %s.ipynb were restored from the gradebook: %s",
                             student, len(restored), nbg["notebook"], ", ".join(restored))


def _num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class LimitOutputBytes(NbGraderPreprocessor):
    """nbgrader's LimitOutput counts lines; this bounds every cell's outputs in bytes."""

    max_stream_bytes = Int(100 * KIB, help="Bytes of printed text kept per cell.").tag(config=True)
    max_output_bytes = Int(1024 * KIB, help="Bytes of output kept per cell.").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        kept, text_used, all_used, cut = [], 0, 0, False
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = out.get("text", "")
                data = text.encode("utf-8", "replace")
                room = min(self.max_stream_bytes - text_used, self.max_output_bytes - all_used)
                if room <= 0:
                    cut = True
                    continue
                if len(data) > room:
                    out["text"] = data[:room].decode("utf-8", "ignore")
                    cut = True
                text_used += min(len(data), room)
                all_used += min(len(data), room)
                kept.append(out)
                continue
            size = len(json.dumps(out, default=str))
            if all_used + size > self.max_output_bytes:
                cut = True
                continue
            all_used += size
            kept.append(out)
        if cut:
            kept.append(nbformat.v4.new_output("stream", name="stdout", text=(
                f"\n... output truncated: more than {self.max_stream_bytes // KIB} kB of text "
                f"or {self.max_output_bytes // KIB} kB in all ...\n")))
        cell.outputs = kept
        return cell, resources


# ==========================================================================
# Feedback: no hidden tests, no details of what student code did inside the tests
# ==========================================================================
HIDDEN_BLOCK = re.compile(r"[ \t]*#+[ \t]*BEGIN HIDDEN TESTS.*?#+[ \t]*END HIDDEN TESTS[^\n]*\n?", re.S)
HIDDEN_NOTE = "# (Hidden tests ran here when your work was graded; they are not shown.)\n"
_SHOWN_ERRORS = {"AssertionError", "NameError", "CellTimeoutError", "TimeoutError", "KernelStopped"}


def _is_test_cell(cell) -> bool:
    md = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(md.get("grade")) and not md.get("solution")


class StripHiddenTests(NbGraderPreprocessor):
    """Feedback step: remove the hidden-test block from every test cell's source."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and "HIDDEN TESTS" in cell.source:
            cell.source = HIDDEN_BLOCK.sub(HIDDEN_NOTE, cell.source)
            if "HIDDEN TESTS" in cell.source:  # an unterminated block: drop everything from it on
                cell.source = cell.source[: cell.source.index("HIDDEN TESTS")].rsplit("\n", 1)[0] + "\n" + HIDDEN_NOTE
        return cell, resources


class RedactTestErrors(NbGraderPreprocessor):
    """Feedback step: a failed test shows its message, never its code or what student code said.

    IPython tracebacks quote the failing lines (hidden tests included), and an exception
    raised by the student's function while a hidden test called it could carry the
    hidden test's data.  Test cells therefore keep only the error name and, for the
    test's own messages (AssertionError), missing names and time-outs, the message.
    Printed output of test cells with hidden tests is dropped.
    """

    def preprocess_cell(self, cell, resources, index):
        if not _is_test_cell(cell):
            return cell, resources
        hidden = "Hidden tests ran here" in cell.source or "HIDDEN TESTS" in cell.source
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                ename = str(out.get("ename", "Error"))
                evalue = str(out.get("evalue", "")) if ename in _SHOWN_ERRORS else "(details not shown)"
                out["ename"], out["evalue"] = ename, evalue[:1000]
                out["traceback"] = [f"\x1b[0;31m{ename}\x1b[0m: {evalue[:1000]}"]
                kept.append(out)
            elif not hidden:
                kept.append(out)
        cell.outputs = kept
        return cell, resources


def check_feedback(course_dir, assignment_id: str) -> list[str]:
    """Lines of hidden tests that appear in any feedback file of the assignment (should be none)."""
    from nbgrader.api import Gradebook

    course_dir = Path(course_dir)
    hidden_lines: set[str] = set()
    with Gradebook(course_db_url(course_dir)) as gb:
        for nbrow in gb.find_assignment(assignment_id).notebooks:
            for cell in nbrow.source_cells:
                for block in re.findall(r"BEGIN HIDDEN TESTS(.*?)END HIDDEN TESTS", cell.source or "", re.S):
                    hidden_lines |= {ln.strip() for ln in block.splitlines() if len(ln.strip()) > 12}
    problems = []
    for page in sorted((course_dir / "feedback").glob(f"*/{assignment_id}/*.html")):
        import html as _html

        text = _html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8", errors="replace")))
        for line in hidden_lines:
            if line in text:
                problems.append(f"{page.relative_to(course_dir)}: shows hidden test line {line[:60]!r}")
        if "BEGIN HIDDEN TESTS" in text:
            problems.append(f"{page.relative_to(course_dir)}: shows a hidden-test block")
    return problems


# ==========================================================================
# Gradebook backups
# ==========================================================================
def course_db_url(course_dir) -> str:
    """The gradebook URL the course's nbgrader_config.py sets (SQLite beside it by default)."""
    course_dir = Path(course_dir).resolve()
    config = course_dir / "nbgrader_config.py"
    if config.exists():
        try:
            from traitlets.config.loader import PyFileConfigLoader

            cfg = PyFileConfigLoader(config.name, path=str(course_dir)).load_config()
            url = cfg.CourseDirectory.get("db_url")
            if isinstance(url, str) and url:
                return url
        except Exception as exc:  # a broken config must not stop a backup
            log.warning("could not read %s (%s); using the default gradebook", config, exc)
    return os.environ.get("NBGRADER_DB_URL", "sqlite:///" + str(course_dir / "gradebook.db"))


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


def _copy_tables(src_url: str, dest_url: str) -> None:
    """Copy every gradebook table (nbgrader's schema and alembic's version) between databases."""
    import sqlalchemy as sa
    from nbgrader.api import Base

    src = sa.create_engine(src_url)
    dest = sa.create_engine(dest_url)
    try:
        Base.metadata.create_all(dest)
        meta = sa.MetaData()
        meta.reflect(bind=src)
        tables = [t for t in Base.metadata.sorted_tables if t.name in meta.tables]
        with src.connect() as s, dest.begin() as d:
            for table in reversed(tables):
                d.execute(table.delete())
            for table in tables:
                rows = [dict(r._mapping) for r in s.execute(sa.select(table))]
                if rows:
                    d.execute(table.insert(), rows)
            if "alembic_version" in meta.tables:
                version = sa.Table("alembic_version", sa.MetaData(), sa.Column("version_num", sa.String(32)))
                version.create(bind=d, checkfirst=True)
                d.execute(version.delete())
                rows = [dict(r._mapping) for r in s.execute(sa.select(meta.tables["alembic_version"]))]
                if rows:
                    d.execute(version.insert(), rows)
    finally:
        src.dispose()
        dest.dispose()


def _sqlite_copy(src: Path, dest: Path) -> None:
    """A consistent copy of a live SQLite database (sqlite3's online backup API)."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=60)
    target = sqlite3.connect(str(dest), timeout=60)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def backup_gradebook(course_dir, label: str = "") -> Path:
    """Copy the course's gradebook to ``<course>/backups/gradebook-<time>.db`` and return that path.

    Works for SQLite and for any database SQLAlchemy reaches (PostgreSQL): the backup
    is always a self-contained SQLite file that :func:`restore_gradebook` can put back.
    """
    course_dir = Path(course_dir).resolve()
    url = course_db_url(course_dir)
    folder = course_dir / "backups"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    dest = folder / f"gradebook-{stamp}{('-' + label) if label else ''}.db"
    src = _sqlite_path(url)
    if src is not None:
        if src.exists():
            _sqlite_copy(src, dest)
        else:
            sqlite3.connect(str(dest)).close()  # nothing graded yet: an empty backup
    else:
        _copy_tables(url, "sqlite:///" + str(dest))
    log.debug("gradebook copied to %s", dest)
    return dest


def list_backups(course_dir) -> list[Path]:
    return sorted((Path(course_dir).resolve() / "backups").glob("gradebook-*.db"))


def restore_gradebook(course_dir, backup=None) -> Path:
    """Put a backup back as the course's gradebook (the latest one unless ``backup`` is given).

    The current gradebook is backed up first (``...-before-restore.db``), so a restore
    can itself be undone.  Returns the backup that was restored.
    """
    course_dir = Path(course_dir).resolve()
    if backup is None:
        candidates = [p for p in list_backups(course_dir) if not p.stem.endswith("-before-restore")]
        if not candidates:
            raise FileNotFoundError(f"no gradebook backups in {course_dir / 'backups'}")
        backup = candidates[-1]
    backup = Path(backup)
    if not backup.exists():
        raise FileNotFoundError(backup)
    backup_gradebook(course_dir, label="before-restore")
    url = course_db_url(course_dir)
    dest = _sqlite_path(url)
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(backup, dest)
    else:
        _copy_tables("sqlite:///" + str(backup), url)
    log.debug("gradebook restored from %s", backup)
    return backup


_BACKED_UP: set[str] = set()


def before_grading(assignment=None, student=None, notebooks=None, **_):
    """nbgrader ``pre_convert_hook`` of ``autograde``, called before each student is graded.

    * once per grading process, before any grade is written: a gradebook backup
      (skipped when ``COURSEKIT_SKIP_AUTO_BACKUP=1``, e.g. because a parallel grading
      command took one backup for all its workers);
    * for each student: the :func:`preflight` findings about that submission, in the
      grading log, naming the student.
    """
    root = os.getcwd()  # nbgrader converts from the course folder
    if root not in _BACKED_UP and not os.environ.get("COURSEKIT_SKIP_AUTO_BACKUP"):
        try:
            path = backup_gradebook(root)
        except Exception as exc:
            # nbgrader swallows hook errors; refusing to grade is safer than grading unbacked
            raise SystemExit(f"coursekit: could not back up the gradebook before grading ({exc}); "
                             "grading stopped, nothing was changed.") from exc
        _BACKED_UP.add(root)
        log.warning("gradebook backed up to %s (restore: python -m coursekit restore --course %s)", path, root)
    for nb_path in list(notebooks or [])[:1]:
        parts = Path(nb_path).parts
        if len(parts) >= 3:
            who, aid = parts[-3], parts[-2]
            try:
                for problem in check_student(root, aid, who):
                    log.warning("%s", problem)
            except Exception as exc:  # a check must never stop grading
                log.warning("pre-flight check of %s failed: %s", who, exc)


backup_before_grading = before_grading  # the older name


# ==========================================================================
# Pre-flight: what is wrong with the submissions, per student
# ==========================================================================
@dataclass
class Problem:
    student: str
    notebook: str
    message: str
    severity: str = "error"   # "error": work will be lost or misgraded; "warning": handled automatically

    def __str__(self) -> str:
        return f"[{self.severity}] student {self.student}: {self.notebook}: {self.message}"


def _expected(course_dir: Path, assignment_id: str) -> tuple[list[str], set[str], dict[str, dict]]:
    """Notebook names, other file names and per-notebook cell facts of the assignment."""
    source = course_dir / "source" / assignment_id
    notebooks = sorted(p.name for p in source.glob("*.ipynb"))
    files = {str(p.relative_to(source)) for p in source.rglob("*")
             if p.is_file() and p.suffix != ".ipynb" and ".ipynb_checkpoints" not in p.parts}
    facts: dict[str, dict] = {}
    try:
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(course_db_url(course_dir)) as gb:
            try:
                assignment = gb.find_assignment(assignment_id)
            except MissingEntry:
                assignment = None
            for nbrow in (assignment.notebooks if assignment is not None else []):
                facts[nbrow.name + ".ipynb"] = {
                    "cells": {c.name: (c.cell_type, bool(c.locked), c.source or "") for c in nbrow.source_cells},
                    "points": {c.name: float(c.max_score) for c in nbrow.grade_cells},
                    "tests": {c.name for c in nbrow.grade_cells if c.cell_type == "code"}
                    - {c.name for c in nbrow.solution_cells},
                    "kernel": (json.loads(nbrow.kernelspec) or {}).get("name") if nbrow.kernelspec else None,
                }
    except Exception as exc:
        log.warning("preflight: gradebook not readable (%s); checking files only", exc)
    return notebooks, files, facts


def _close_match(name: str, candidates: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.0)
    return found[0] if found else None


def preflight(course_dir, assignment_id: str) -> list[Problem]:
    """Check every submission of an assignment before grading; one :class:`Problem` per finding.

    Missing, renamed, extra, unreadable, old-format and wrongly-configured notebooks,
    and edited nbgrader metadata or tests, are reported with the student's id.  Nothing
    is changed.  Grading handles all of these (see the README), but a renamed or
    unreadable notebook scores 0 until the instructor acts.
    """
    course_dir = Path(course_dir).resolve()
    expected = _expected(course_dir, assignment_id)
    problems: list[Problem] = []
    for folder in sorted((course_dir / "submitted").glob(f"*/{assignment_id}")):
        if folder.is_dir():
            problems += _check_folder(folder, expected)
    return problems


def check_student(course_dir, assignment_id: str, student: str) -> list[Problem]:
    """:func:`preflight` for one student."""
    course_dir = Path(course_dir).resolve()
    folder = course_dir / "submitted" / student / assignment_id
    if not folder.is_dir():
        return [Problem(student, assignment_id, "nothing handed in")]
    return _check_folder(folder, _expected(course_dir, assignment_id))


def _check_folder(folder: Path, expected) -> list[Problem]:
    notebooks, files, facts = expected
    student, assignment_id = folder.parent.name, folder.name
    problems: list[Problem] = []
    present = sorted(p.name for p in folder.glob("*.ipynb"))
    unknown = [n for n in present if n not in notebooks]
    for name in notebooks:
        if name in present:
            problems += _check_notebook(student, folder / name, facts.get(name))
        elif unknown:
            guess = _close_match(name, unknown)
            problems.append(Problem(student, name, (
                f"missing; {guess!r} was handed in instead (renamed?). nbgrader grades only {name!r}: "
                f"it scores 0 unless you copy {guess!r} to {name!r} in submitted/{student}/{assignment_id}/ "
                "and grade again")))
        else:
            problems.append(Problem(student, name, "missing: not handed in; it scores 0"))
    for name in unknown:
        problems.append(Problem(student, name, "extra notebook that is not part of the assignment; "
                                "it is not graded", "warning"))
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_file() and path.suffix != ".ipynb" and rel != "timestamp.txt" \
                and rel not in files and ".ipynb_checkpoints" not in path.parts:
            problems.append(Problem(student, rel, "extra file; it is kept beside the notebook but not graded",
                                    "warning"))
    stamp = folder / "timestamp.txt"
    if stamp.exists():
        try:
            from nbgrader.utils import parse_utc

            parse_utc(stamp.read_text().strip())
        except Exception:
            problems.append(Problem(student, "timestamp.txt", "unreadable submission time; lateness "
                                    "cannot be computed"))
    return problems


def _check_notebook(student: str, path: Path, fact: dict | None) -> list[Problem]:
    name = path.name
    out: list[Problem] = []
    try:
        nb, notes = read_notebook_text(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return [Problem(student, name, "not a text file (not UTF-8); it is graded as an empty notebook (0)")]
    except ValueError as exc:
        return [Problem(student, name, f"{exc}; it is graded as an empty notebook (0)")]
    out += [Problem(student, name, note, "warning") for note in notes]
    if not fact:
        return out
    kernel = nb.metadata.get("kernelspec", {}).get("name") if isinstance(nb.metadata.get("kernelspec"), dict) else None
    if fact["kernel"] and kernel != fact["kernel"]:
        out.append(Problem(student, name, f"kernelspec {kernel!r} instead of {fact['kernel']!r}; grading uses "
                           f"{fact['kernel']!r}", "warning"))
    seen: dict[str, int] = {}
    for cell in nb.cells:
        md = cell.metadata.get("nbgrader")
        if md is None:
            continue
        gid = md.get("grade_id") if isinstance(md, dict) else None
        if not isinstance(md, dict) or gid not in fact["cells"]:
            out.append(Problem(student, name, f"nbgrader metadata the assignment does not have ({str(gid)[:40]!r}); "
                               "removed before grading", "warning"))
            continue
        seen[gid] = seen.get(gid, 0) + 1
        cell_type, locked, source = fact["cells"][gid]
        if seen[gid] == 2:
            out.append(Problem(student, name, f"cell {gid} appears more than once; only the first is graded",
                               "warning"))
        if md.get("schema_version") != 3:
            out.append(Problem(student, name, f"cell {gid} has nbgrader schema version "
                               f"{md.get('schema_version')!r}; restored before grading", "warning"))
        if gid in fact["points"] and _num(md.get("points")) != fact["points"][gid]:
            out.append(Problem(student, name, f"points of {gid} changed to {md.get('points')!r}; the "
                               f"gradebook's {fact['points'][gid]:g} are used", "warning"))
        if bool(md.get("locked")) != locked or cell.cell_type != cell_type:
            out.append(Problem(student, name, f"cell {gid} was unlocked or changed type; restored", "warning"))
        if gid in fact["tests"] and "HIDDEN TESTS" not in source and cell.source.strip() != source.strip():
            out.append(Problem(student, name, f"test cell {gid} was edited; the original tests are run", "warning"))
    for gid in fact["tests"]:
        if gid not in seen:
            out.append(Problem(student, name, f"test cell {gid} was deleted or its id changed; the original "
                               "tests are put back and run", "warning"))
    return out


# ==========================================================================
# Command line: python -m coursekit backup|restore|preflight|feedback
# ==========================================================================
def _course_arg(p):
    from . import COURSE_DIR

    p.add_argument("--course", type=Path, default=COURSE_DIR,
                   help="course folder with nbgrader_config.py (default: %(default)s)")


def register(subparsers) -> None:
    p = subparsers.add_parser("backup", help="copy the gradebook to <course>/backups/ (done before every grading run)")
    _course_arg(p)
    p.set_defaults(func=_cmd_backup)

    p = subparsers.add_parser("restore", help="put a gradebook backup back (the latest unless one is named)")
    _course_arg(p)
    p.add_argument("backup", nargs="?", type=Path, help="backup file (default: the latest)")
    p.add_argument("--list", action="store_true", help="list the backups and stop")
    p.set_defaults(func=_cmd_restore)

    p = subparsers.add_parser("preflight", help="report missing, renamed, extra and broken submissions per student")
    _course_arg(p)
    p.add_argument("assignment")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any error is found")
    p.set_defaults(func=_cmd_preflight)

    p = subparsers.add_parser("feedback", help="nbgrader generate_feedback, then check that no hidden test leaked")
    _course_arg(p)
    p.add_argument("assignment")
    p.set_defaults(func=_cmd_feedback)


def _cmd_backup(args) -> int:
    print(backup_gradebook(args.course))
    return 0


def _cmd_restore(args) -> int:
    if args.list:
        for path in list_backups(args.course):
            print(path)
        return 0
    restored = restore_gradebook(args.course, args.backup)
    print(f"restored the gradebook from {restored}")
    return 0


def _cmd_preflight(args) -> int:
    problems = preflight(args.course, args.assignment)
    for problem in problems:
        print(problem)
    errors = sum(p.severity == "error" for p in problems)
    print(f"{len(problems)} findings ({errors} errors) for {args.assignment}")
    return 1 if (args.strict and errors) else 0


def _cmd_feedback(args) -> int:
    from . import course

    proc = course.nbgrader(Path(args.course), "generate_feedback", args.assignment, "--force", check=False)
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-4000:])
    leaks = check_feedback(args.course, args.assignment)
    for leak in leaks:
        print("LEAK:", leak)
    if proc.returncode or leaks:
        return 1
    print(f"feedback for {args.assignment} generated; no hidden test shown")
    return 0
