"""JupyterLab on a temporary copy of the course, driven by Debian's chromium through Playwright.

Used by tests/test_browser.py.  Never downloads a browser: it uses /usr/bin/chromium
(``apt-get install chromium``), which .ci/run installs when it is missing.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from coursekit import COURSE_DIR, DATA_DIR, LESSONS_DIR, ROOT, course

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VENV_BIN = Path(sys.executable).parent
SKIP = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "_staging")

# Settings a test user starts with: every cell rendered (JupyterLab 4 leaves cells that are
# off screen empty otherwise), and no news/update pop-ups over the screenshots.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


def copy_course_tree(dest: Path) -> Path:
    """What a newcomer clones, without anything generated: README, root config, lessons, data, course sources."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("README.md", "nbgrader_config.py"):
        shutil.copy2(ROOT / name, dest / name)
    for folder in (LESSONS_DIR, DATA_DIR):
        if folder.is_dir():
            shutil.copytree(folder, dest / folder.name, ignore=SKIP)
    course.copy_course(dest / COURSE_DIR.name)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """``jupyter lab`` started in ``root`` as the README says, on 127.0.0.1 with a random port and a token."""

    def __init__(self, root: Path, state: Path):
        self.root, self.state = Path(root), Path(state)
        self.token = secrets.token_hex(16)
        self.log_path = self.state / "jupyterlab.log"
        settings = self.state / "settings"
        for name, value in LAB_SETTINGS.items():
            target = settings / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(value))
        self.env = {
            **os.environ,
            # nbgrader shells out to `alembic`, which lives beside the interpreter in the venv
            "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]),
            "JUPYTER_RUNTIME_DIR": str(self.state / "runtime"),
            "JUPYTER_CONFIG_DIR": str(self.state / "config"),  # ignore the tester's ~/.jupyter
            "IPYTHONDIR": str(self.state / "ipython"),
            "MPLCONFIGDIR": str(self.state / "matplotlib"),
        }
        for var in ("NBGRADER_DB_URL", "NBGRADER_EXCHANGE"):  # the copy's own gradebook and exchange
            self.env.pop(var, None)
        self.args = [str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
                     f"--port={free_port()}", f"--IdentityProvider.token={self.token}",
                     f"--LabApp.workspaces_dir={self.state / 'workspaces'}",
                     f"--LabApp.user_settings_dir={settings}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            self.args.append("--allow-root")
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> "Lab":
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, cwd=self.root, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60) -> "Lab":
        """Wait for the server's runtime file, then for /api/status to answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.proc.returncode}):\n{self.log_text()}")
            info = sorted((self.state / "runtime").glob("jpserver-*.json"))
            if info:
                # the port actually bound (another program may have taken ours meanwhile)
                self.url = json.loads(info[0].read_text())["url"].rstrip("/")
                try:
                    req = urllib.request.Request(self.url + "/api/status",
                                                 headers={"Authorization": f"token {self.token}"})
                    with urllib.request.urlopen(req, timeout=2) as resp:
                        if resp.status == 200:
                            return self
                except OSError:
                    pass
            time.sleep(0.2)
        raise TimeoutError(f"jupyter lab not ready after {timeout} s:\n{self.log_text()}")

    def page_url(self, workspace: str, path: str = "") -> str:
        """A fresh named workspace, so one test's open tabs never show up in another's."""
        tree = f"/tree/{path}" if path else ""
        return f"{self.url}/lab/workspaces/{workspace}{tree}?token={self.token}"

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and the kernels it started
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        finally:
            self.log.close()


class Shots:
    """Numbered screenshots in the test's folder, copied to the CI artefact folder."""

    def __init__(self, folder: Path, prefix: str, artifacts: Path):
        self.folder, self.prefix, self.artifacts = folder, prefix, artifacts
        self.n = 0
        folder.mkdir(parents=True, exist_ok=True)
        artifacts.mkdir(parents=True, exist_ok=True)

    def __call__(self, page, name: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.prefix}_{self.n:02d}_{name}.png"
        page.screenshot(path=str(path))
        shutil.copy2(path, self.artifacts / path.name)
        return path


# --- JupyterLab page helpers ---------------------------------------------------------------

def menu(page, top: str, item: str) -> None:
    """Click a main-menu entry, e.g. menu(page, "Run", "Run All Cells")."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


def wait_kernel_idle(page, timeout: float = 60_000) -> None:
    page.wait_for_function(
        """() => {
            const name = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar-kernelName');
            const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
            return name && !/No Kernel/.test(name.textContent) && ind && ind.dataset.status === 'idle';
        }""", timeout=timeout)


def open_notebook(page, url: str, timeout: float = 60_000):
    """Open a notebook URL; returns once every cell is rendered and its kernel is idle."""
    page.goto(url)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=timeout)
    wait_kernel_idle(page, timeout)
    return page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")


def wait_cells_executed(page, indexes: list[int] | None = None, timeout: float = 90_000) -> None:
    """Wait until the given code cells (default: every non-empty one) show an execution count."""
    page.wait_for_function(
        """(indexes) => {
            const cells = [...document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell')];
            const chosen = indexes ? indexes.map(i => cells[i]) : cells;
            return chosen.filter(c => c.classList.contains('jp-CodeCell'))
              .filter(c => c.querySelector('.cm-content').textContent.trim() !== '')
              .every(c => /\\[\\d+\\]/.test(c.querySelector('.jp-InputPrompt').textContent));
        }""", arg=indexes, timeout=timeout)
    wait_kernel_idle(page, timeout)


ERROR_OUTPUTS = (".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                 ".jp-OutputArea-output.jp-mod-error")
