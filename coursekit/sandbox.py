"""Jupyter kernels for untrusted student code, run inside a bubblewrap sandbox.

:class:`SandboxedKernelManager` is a ``jupyter_client`` kernel manager that starts
the ordinary ``python3`` kernel through `bubblewrap <https://github.com/containers/bubblewrap>`_
(Debian package ``bubblewrap``, command ``bwrap``), the namespace sandbox that
Flatpak uses.  Each kernel gets:

* its own user, PID, IPC, UTS, cgroup and **network** namespaces (``--unshare-all``:
  no network at all, not even the host's loopback);
* a real unprivileged host uid (65534, ``nobody``, or the next free uid of a
  small pool when several kernels run at once), so the limits below are
  enforced by the host kernel and a fork loop cannot starve other sandboxes;
* a file system made only of read-only binds of the Python runtime it needs
  (``/usr``, the interpreter and the virtual environment), a read-only copy of
  the submission's working folder (its data files: never a notebook, so no
  hidden tests and no solution), a private size-limited ``/tmp`` and a folder
  for its ZeroMQ sockets;
* ``--die-with-parent`` and resource limits set before ``exec``: CPU seconds,
  address space, processes, file size and open files.

A kernel in its own network namespace cannot be reached over TCP, so the
manager uses jupyter_client's ``ipc`` transport: the kernel's sockets are Unix
sockets in a folder shared with the grader.  Once the kernel has bound them,
:meth:`SandboxedKernelManager.seal` takes the folder's write permission away
again, so the only host folder the student could write to is closed.

With ``prefork`` on (the grading command ``python -m coursekit grade`` turns it on), a kernel
is not started from scratch: bwrap runs a placeholder in the same sandbox, and the kernel is
forked from a template process that has already imported ipykernel, pandas and matplotlib,
then enters the placeholder's namespaces, drops to its uid and runs (see
:mod:`coursekit.prefork`).  Same sandbox, same limits, about a fifth of the CPU per kernel.

Where bubblewrap is missing or cannot create namespaces the manager logs a
clear warning and starts the kernel without a sandbox (still with the resource
limits, and as uid 65534 when the grader runs as root), so grading keeps
working.  See the section "Grading untrusted work" of docs/administration.md.
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import functools
import logging
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Int, List, Unicode

log = logging.getLogger("coursekit.sandbox")

NOBODY = 65534
#: uids used for sandboxes, in the order they are handed out.  65534 is the
#: Debian ``nobody``; the ones below it (65520-65533) are unassigned on Debian
#: and systemd systems.  Each running sandbox holds one, so that RLIMIT_NPROC
#: (counted per uid by the host kernel) isolates sandboxes from each other.
DEFAULT_UID_POOL = list(range(NOBODY, 65519, -1))

WORK_DIR = "/home/student/work"  # where the submission's folder appears inside the sandbox
PLACEHOLDER = "/usr/bin/cat"  # what runs in a sandbox whose kernel is forked in (coursekit.prefork)
MiB = 1024 * 1024


# --------------------------------------------------------------------------
# Is bubblewrap usable here?
# --------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def probe_bwrap(bwrap: str = "", uid: int = NOBODY) -> tuple[str | None, str]:
    """Return ``(path_to_bwrap, "")`` if a sandbox can be created, else ``(None, reason)``."""
    path = bwrap or shutil.which("bwrap") or ""
    if not path or not os.path.exists(path):
        return None, f"bubblewrap ('bwrap') was not found{' at ' + bwrap if bwrap else ' on PATH'}"
    cmd = [path, *_unshare_args(), "--die-with-parent", "--ro-bind", "/usr", "/usr",
           *_merged_usr_links(), "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
           *_drop_to(uid, NOBODY), "/bin/sh", "-c", '[ "$(id -u)" = "%d" ] || [ "$(id -u)" != 0 ]' % uid]
    kw: dict = {}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, **kw)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"bubblewrap could not be run: {exc}"
    if proc.returncode != 0:
        return None, f"bubblewrap cannot create a sandbox here: {proc.stderr.strip() or proc.returncode}"
    return path, ""


def _merged_usr_links() -> list[str]:
    """``/bin``, ``/lib``... as in the host: symlinks into /usr (merged /usr) or read-only binds."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    return args


def _unshare_args() -> list[str]:
    """Namespaces for the sandbox.

    As root, bwrap runs privileged without a user namespace (a uid inside one would
    map back to root on the host) and the kernel drops to an unprivileged host uid
    with setpriv.  As an ordinary user, bwrap needs a user namespace and the kernel
    keeps that user's uid.
    """
    if os.geteuid() == 0:
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    return ["--unshare-all", "--unshare-user", "--disable-userns"]


def _drop_to(uid: int, gid: int) -> list[str]:
    """Inside the sandbox: become ``uid`` with no capabilities left (root graders only)."""
    if os.geteuid() != 0:
        return []
    return ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
            "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def _drop_privileges_kwargs(uid: int, gid: int = NOBODY) -> dict:
    """Popen keyword arguments that run an unsandboxed child as ``uid`` when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": uid, "group": gid, "extra_groups": []}


# --------------------------------------------------------------------------
# A pool of uids, one per running sandbox
# --------------------------------------------------------------------------
class UidLease:
    """Hold one uid of the pool for as long as a sandbox lives (an flock on a file)."""

    def __init__(self, pool: list[int]):
        self.uid: int | None = None
        self._fh = None
        lock_dir = Path(tempfile.gettempdir()) / f"coursekit-sandbox-uids-{os.geteuid()}"
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        for uid in pool:
            fh = open(lock_dir / f"{uid}.lock", "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            self.uid, self._fh = uid, fh
            return
        # every uid is busy: share the first one (limits then apply to the sandboxes together)
        self.uid = pool[0]
        log.warning("all %d sandbox uids are in use; sharing uid %d", len(pool), self.uid)

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


# --------------------------------------------------------------------------
# What a Python kernel needs to see
# --------------------------------------------------------------------------
def python_runtime_paths() -> list[str]:
    """Folders the interpreter and its packages live in (all bound read-only)."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  str(Path(os.path.realpath(sys.executable)).parent.parent)}
    out: list[str] = []
    for p in sorted(candidates, key=len):
        p = os.path.realpath(p)
        if p in ("/", "/usr") or p.startswith("/usr/"):
            continue  # /usr is bound as a whole
        if any(p == q or p.startswith(q + "/") for q in out):
            continue
        if os.path.isdir(p):
            out.append(p)
    # an interpreter reached through a symlink (a venv's bin/python -> pyenv)
    return out


def matplotlib_font_cache() -> str | None:
    """A matplotlib font list the kernels can reuse (building one costs seconds per kernel)."""
    cache = Path(tempfile.gettempdir()) / f"coursekit-sandbox-cache-{os.geteuid()}" / "matplotlib"
    found = sorted(cache.glob("fontlist-v*.json"))
    if not found:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"],
                           env={**os.environ, "MPLCONFIGDIR": str(cache)},
                           capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        found = sorted(cache.glob("fontlist-v*.json"))
    return str(found[-1]) if found else None


#: files that Python would import or run from a kernel's working folder
CODE_SUFFIXES = (".py", ".pyc", ".pyd", ".pyw", ".so", ".pth")


def stage_working_folder(folder: str | os.PathLike, dest: str | os.PathLike, code: bool = True) -> Path:
    """Copy the data files of a submission's folder (never notebooks) into ``dest``.

    The sandbox sees only this copy, read-only.  Notebooks are left out because the
    folder being graded holds the notebook with its hidden tests restored.  With
    ``code=False`` anything Python could import from the folder is left out too.
    """
    src, dest = Path(folder), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o755)
    if not src.is_dir():
        return dest
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        for d in dirs:
            (dest / rel / d).mkdir(exist_ok=True)
            os.chmod(dest / rel / d, 0o755)
        for name in files:
            if name.endswith(".ipynb") or name.startswith("."):
                continue
            if not code and (name.endswith(CODE_SUFFIXES) or name == "matplotlibrc"):
                continue
            s = Path(root) / name
            if s.is_symlink() or not s.is_file():
                continue
            target = dest / rel / name
            shutil.copyfile(s, target)
            os.chmod(target, 0o444)
    return dest


# --------------------------------------------------------------------------
# The kernel manager
# --------------------------------------------------------------------------
class SandboxedKernelManager(AsyncKernelManager):
    """Start the kernel inside bubblewrap, as an unprivileged uid, with resource limits."""

    sandbox = Bool(True, help="Run kernels in a bubblewrap sandbox (warn and run without it if impossible).").tag(config=True)
    bwrap_path = Unicode("", help="Path to bwrap (default: found on PATH).").tag(config=True)
    uid_pool = List(Int(), DEFAULT_UID_POOL, help="Unprivileged uids handed to sandboxes.").tag(config=True)
    gid = Int(NOBODY, help="Group id of sandboxed kernels.").tag(config=True)
    cpu_seconds = Int(600, help="RLIMIT_CPU of a kernel: CPU seconds over its whole life.").tag(config=True)
    memory_bytes = Int(1024 * MiB, help="RLIMIT_AS of a kernel (address space, bytes).").tag(config=True)
    max_processes = Int(32, help="RLIMIT_NPROC: processes and threads of the sandbox's uid.").tag(config=True)
    max_file_bytes = Int(64 * MiB, help="RLIMIT_FSIZE: largest file a kernel may write.").tag(config=True)
    max_open_files = Int(512, help="RLIMIT_NOFILE of a kernel.").tag(config=True)
    tmp_bytes = Int(256 * MiB, help="Size of the kernel's private /tmp (a tmpfs).").tag(config=True)
    prefork = Bool(False, help="Fork kernels from a template process that has already imported the kernel "
                   "and prefork_modules (coursekit.prefork); root graders with bubblewrap only.").tag(config=True)
    prefork_modules = List(Unicode(), ["numpy", "pandas", "matplotlib", "matplotlib.pyplot"],
                           help="Libraries the kernel template imports before it forks.").tag(config=True)

    work_dir = Unicode("", help="Host folder shown read-only as the kernel's working folder.")
    extra_ro_binds = List(Unicode(), help="Host folders shown read-only at the same path.")

    _runtime: Path | None = None
    _lease: UidLease | None = None
    sandboxed: bool = False
    sandbox_problem: str = ""
    forked_pid: int | None = None  # host pid of a pre-forked kernel
    placeholder_pid: int | None = None  # host pid of its sandbox's placeholder process
    _forked_identity: tuple | None = None  # (start time, PID namespace) of that kernel process

    # -- set-up -------------------------------------------------------------
    @property
    def ipc_dir(self) -> Path:
        assert self._runtime is not None
        return self._runtime / "ipc"

    async def _async_pre_start_kernel(self, **kw):
        self._prepare_runtime()
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        os.chown(self.connection_file, self.uid, self.gid)
        os.chmod(self.connection_file, 0o400)
        return kernel_cmd, kw

    def _prepare_runtime(self) -> None:
        """Create (once) the folder for the kernel's sockets and connection file.

        The folder keeps its identity across kernel restarts, so a judge kernel that
        was given a view of it keeps reaching the restarted kernel.
        """
        if self._runtime is None:
            self._runtime = Path(tempfile.mkdtemp(prefix="coursekit-kernel-"))
            os.chmod(self._runtime, 0o711)  # the kernel's uid may pass through, not list
        if self._lease is None:
            self._lease = UidLease(list(self.uid_pool) or [NOBODY])
        ipc = self.ipc_dir
        if not ipc.exists():
            ipc.mkdir(mode=0o700)
        self.unseal()
        self.transport = "ipc"
        self.connection_file = str(ipc / "kernel.json")
        self.ip = str(ipc / "k")

    @property
    def uid(self) -> int:
        if os.geteuid() != 0:
            return os.geteuid()
        return self._lease.uid if self._lease and self._lease.uid is not None else NOBODY

    # -- launch -------------------------------------------------------------
    async def _async_launch_kernel(self, kernel_cmd, **kw):
        original_kw, fallback = dict(kw), False
        cwd = kw.pop("cwd", None) or os.getcwd()
        work = self.work_dir or str(stage_working_folder(cwd, self._runtime / "work"))
        bwrap, problem = probe_bwrap(self.bwrap_path, self.uid) if self.sandbox else (None, "sandbox switched off")
        env = self._kernel_env(kw.get("env") or {})
        limits = self._limits()
        self.forked_pid = self.placeholder_pid = self._forked_identity = None
        template = self._template(kernel_cmd, env) if bwrap else None
        alive: tuple[int, int] | None = None
        if bwrap:
            fds: list[int] = []
            inner = [PLACEHOLDER] if template else kernel_cmd
            cmd = self._bwrap_cmd(bwrap, inner, work, env, fds)
            kw.update(cwd="/", env={"PATH": "/usr/bin:/bin"}, pass_fds=fds, close_fds=True)
            if template:
                alive = os.pipe()
                kw["stdin"] = alive[0]
            self.sandboxed = True
        else:
            self.sandbox_problem = problem
            log.warning("UNSANDBOXED GRADING: %s. Student code runs without a namespace sandbox "
                        "(it can read files this user can read and reach the network); resource "
                        "limits still apply. Install bubblewrap (apt-get install bubblewrap) to fix.",
                        problem)
            fds = []
            cmd = list(kernel_cmd)
            env = {**env, "HOME": str(self._runtime / "home"), "TMPDIR": str(self._runtime / "home")}
            home = self._runtime / "home"
            home.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                os.chown(home, self.uid, self.gid)
            kw.update(cwd=work, env=env)
            self.sandboxed = False
        if not bwrap:
            if os.geteuid() == 0 and _can_run_as(self.uid, self.gid):
                kw.update(_drop_privileges_kwargs(self.uid, self.gid))
            elif os.geteuid() == 0:
                log.warning("UNSANDBOXED GRADING AS ROOT: uid %d cannot run %s; the kernel keeps root's "
                            "privileges", self.uid, sys.executable)
            # a small parent process between grader and kernel: a kernel that kills its
            # parent then kills only this, not the grading run
            cmd = [sys.executable, "-c", _SHIM, *cmd]
        kw["preexec_fn"] = functools.partial(_limit_child, limits)
        # the kernel's own stdout/stderr (not the notebook's): a file, bounded by
        # RLIMIT_FSIZE, instead of the grader's terminal
        self._log_file = open(self._runtime / "kernel.log", "ab")
        kw["stdout"] = kw["stderr"] = self._log_file
        try:
            await super()._async_launch_kernel(cmd, **kw)
            if template and alive:
                try:
                    await self._fork_kernel(template, kernel_cmd, env, limits, alive[1])
                except (OSError, RuntimeError, ValueError) as exc:
                    log.warning("kernel template: %s; starting this kernel the ordinary way", exc)
                    fallback = True
        finally:
            for fd in fds:
                os.close(fd)
            if alive:
                os.close(alive[0])
                os.close(alive[1])
            self._log_file.close()
        if fallback:
            await self._kill_sandbox()
            self._no_template = True
            try:
                await self._async_launch_kernel(kernel_cmd, **original_kw)
            finally:
                self._no_template = False

    # -- pre-forked kernels (coursekit.prefork) -------------------------------------
    _no_template = False

    def _template(self, kernel_cmd: list[str], env: dict) -> "KernelTemplate | None":
        if not self.prefork or self._no_template or os.geteuid() != 0:
            return None
        if (len(kernel_cmd) < 3 or kernel_cmd[1:3] != ["-m", "ipykernel_launcher"]
                or os.path.realpath(kernel_cmd[0]) != os.path.realpath(sys.executable)):
            return None
        template = KernelTemplate.get(env, list(self.prefork_modules))
        return template if template is not None and template.ready() else None

    async def _fork_kernel(self, template: "KernelTemplate", kernel_cmd: list[str], env: dict,
                           limits: dict[int, int], alive_w: int) -> None:
        """Wait for the placeholder of the sandbox just started, then fork the kernel into it."""
        proc = self.provisioner.process
        deadline = time.monotonic() + 30
        while (placeholder := _placeholder_of(proc.pid)) is None:
            if proc.poll() is not None:
                raise RuntimeError(f"the sandbox exited before the kernel started: {self.kernel_log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start within 30 s")
            await asyncio.sleep(0.002)
        self.placeholder_pid = placeholder
        import ipykernel_launcher

        pid = template.spawn({
            "target": placeholder, "uid": self.uid, "gid": self.gid, "cwd": WORK_DIR, "env": env,
            "limits": sorted(limits.items()), "argv": list(kernel_cmd[3:]),
            "launcher": ipykernel_launcher.__file__,
        }, [alive_w, self._log_file.fileno()])
        identity, sandbox = _process_identity(pid), _process_identity(placeholder)
        if identity is None or sandbox is None or identity[1] != sandbox[1]:
            raise RuntimeError("the forked kernel is not in its sandbox's PID namespace")
        self.forked_pid, self._forked_identity = pid, identity

    def _forked_kernel_alive(self) -> bool:
        """Is the pre-forked kernel still running -- that very process, not a reused pid?"""
        return self.forked_pid is not None and _process_identity(self.forked_pid) == self._forked_identity

    async def _async_is_alive(self) -> bool:
        alive = await super()._async_is_alive()
        if alive and self.forked_pid is not None and not self._forked_kernel_alive():
            # the kernel died while a process it forked keeps the placeholder's pipe open:
            # the kernel is gone all the same, and nothing it left may outlive it
            await self._kill_sandbox()
            return False
        return alive

    async def _kill_sandbox(self) -> None:
        """Kill bwrap (its init, and so everything in the sandbox, dies with it) and reap it."""
        proc = getattr(self.provisioner, "process", None) if self.provisioner else None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
            for _ in range(100):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.02)

    is_alive = _async_is_alive

    async def _async_signal_kernel(self, signum: int) -> None:
        if self.forked_pid is not None and self.has_kernel:
            # the kernel leads its own process group (see coursekit.prefork), as an
            # exec'd kernel shares bwrap's: signal the kernel and what it started, if the
            # pid still belongs to it (a reused pid could be another student's kernel)
            if self._forked_kernel_alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.forked_pid, signum)
            return
        await super()._async_signal_kernel(signum)

    def kernel_log_tail(self, size: int = 2000) -> str:
        """The end of what the kernel process wrote to its stdout/stderr (for error messages)."""
        return _file_tail(self._runtime / "kernel.log", size) if self._runtime is not None else ""

    def kernel_pid(self) -> int | None:
        """Host pid of the kernel process (inside bwrap: the grandchild of the launched process)."""
        proc = getattr(self.provisioner, "process", None) if self.provisioner else None
        if proc is None:
            return None
        if self.forked_pid is not None:
            return self.forked_pid if self._forked_kernel_alive() else None
        children = _process_children()
        if not self.sandboxed:  # launched process is the shim; the kernel is its child
            kids = children.get(proc.pid, [])
            return kids[0] if kids else None
        for init in children.get(proc.pid, []):
            kids = children.get(init, [])
            if kids:
                return kids[0]
        return None

    def reap_strays(self) -> int:
        """Kill every process in the sandbox except the kernel (left-over forks, background jobs).

        Returns how many were killed.  Called after each cell: nothing a notebook starts
        may outlive the cell that started it.
        """
        proc = getattr(self.provisioner, "process", None) if self.provisioner else None
        kernel = self.kernel_pid()
        if proc is None or kernel is None:
            return 0
        children = _process_children()
        strays: list[int] = []
        if self.sandboxed:
            for init in children.get(proc.pid, []):
                strays += [p for p in children.get(init, []) if p not in (kernel, self.placeholder_pid)]
        stack = list(children.get(kernel, []))
        while stack:
            pid = stack.pop()
            strays.append(pid)
            stack.extend(children.get(pid, []))
        for pid in strays:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return len(strays)

    def _limits(self) -> dict[int, int]:
        limits = {
            resource.RLIMIT_CPU: self.cpu_seconds,
            resource.RLIMIT_AS: self.memory_bytes,
            resource.RLIMIT_FSIZE: self.max_file_bytes,
            resource.RLIMIT_NOFILE: self.max_open_files,
            resource.RLIMIT_CORE: 0,
        }
        if os.geteuid() == 0:
            # RLIMIT_NPROC counts every process of the uid: meaningful only for the pool's
            # own uid, not for an ordinary grader's account (it already runs processes)
            limits[resource.RLIMIT_NPROC] = self.max_processes
        return limits

    def _kernel_env(self, base: dict) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        env = {
            "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
            "MPLCONFIGDIR": "/tmp/matplotlib", "IPYTHONDIR": "/tmp/ipython",
            "JUPYTER_CONFIG_DIR": "/tmp/jupyter", "JUPYTER_DATA_DIR": "/tmp/jupyter/data",
            "JUPYTER_RUNTIME_DIR": "/tmp/jupyter/runtime", "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "MALLOC_ARENA_MAX": "2",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            # one thread per numerical library: fair CPU use and a predictable address space
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "NUMEXPR_NUM_THREADS": "1", "ARROW_DEFAULT_MEMORY_POOL": "system",
            # tells ipykernel it has a parent (quiet start-up, no parent polling: bwrap
            # kills the kernel with its parent)
            "JPY_PARENT_PID": "1",
        }
        for key in ("NBGRADER_EXECUTION", "MPLBACKEND", "TZ"):
            if key in base:
                env[key] = base[key]
        return env

    def _bwrap_cmd(self, bwrap: str, kernel_cmd: list[str], work: str, env: dict, fds: list[int]) -> list[str]:
        def fd_for(path: str) -> str:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            os.set_inheritable(fd, True)
            fds.append(fd)
            return str(fd)

        cmd = [bwrap, *_unshare_args(), "--die-with-parent", "--clearenv",
               "--ro-bind", "/usr", "/usr", *_merged_usr_links(), "--perms", "0755", "--dir", "/etc"]
        for path in ("/etc/ld.so.cache", "/etc/localtime", "/etc/fonts", "/etc/ssl/certs", "/etc/mime.types"):
            if os.path.exists(path):
                cmd += ["--ro-bind-fd", fd_for(path), path]
        cmd += ["--proc", "/proc", "--dev", "/dev",
                "--size", str(self.tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp",
                "--perms", "1777", "--dir", "/tmp/matplotlib"]
        binds: list[tuple[str, str, str]] = [("--ro-bind-fd", p, p) for p in python_runtime_paths()]
        fonts = matplotlib_font_cache()
        if fonts:
            binds.append(("--ro-bind-fd", fonts, f"/tmp/matplotlib/{Path(fonts).name}"))
        binds += [("--ro-bind-fd", p, p) for p in self.extra_ro_binds]
        binds += [("--bind-fd", str(self.ipc_dir), str(self.ipc_dir)), ("--ro-bind-fd", work, WORK_DIR)]
        # bwrap would create the parents of these mount points 0700 (root only):
        # make them traversable for the unprivileged kernel.
        made = {"/", "/tmp", "/tmp/matplotlib", "/usr", "/proc", "/dev", "/etc"}
        for _, _, dest in binds:
            parents = list(Path(dest).parents)[::-1]
            for parent in map(str, parents):
                if parent not in made and not parent.startswith("/usr/"):
                    cmd += ["--perms", "0755", "--dir", parent]
                    made.add(parent)
        for option, src, dest in binds:
            cmd += [option, fd_for(src), dest]
        cmd += ["--chdir", WORK_DIR, "--hostname", "sandbox"]
        for key, value in env.items():
            cmd += ["--setenv", key, value]
        drop = _drop_to(self.uid, self.gid)
        return cmd + (drop or ["--"]) + list(kernel_cmd)

    # -- after start ----------------------------------------------------------
    def seal(self) -> None:
        """Close the socket folder once the kernel has bound its sockets.

        The sockets stay usable (and are opened to other sandbox uids, so a judge
        kernel can call into this one); no new file can be created there.
        """
        if os.geteuid() != 0 or self._runtime is None:
            return
        ipc = self.ipc_dir
        for entry in ipc.iterdir():
            st = entry.lstat()
            if stat.S_ISSOCK(st.st_mode):
                os.chmod(entry, 0o666)
        os.chown(ipc, 0, 0)
        os.chmod(ipc, 0o755)

    def unseal(self) -> None:
        if self._runtime is not None and self.ipc_dir.exists():
            if os.geteuid() == 0:
                os.chown(self.ipc_dir, self.uid, self.gid)
            os.chmod(self.ipc_dir, 0o700)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        try:
            # a sandbox still running here (its kernel died, a child lives on) is killed
            # before its uid goes back to the pool
            await self._kill_sandbox()
            await super()._async_cleanup_resources(restart=restart)
        finally:
            if not restart:
                self.release_sandbox()

    def release_sandbox(self) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        if self._runtime is not None:
            shutil.rmtree(self._runtime, ignore_errors=True)
            self._runtime = None


_SHIM = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
status = 0
while True:
    try:
        status = os.waitpid(pid, 0)[1]
        break
    except InterruptedError:
        continue
    except ChildProcessError:
        break
sys.exit(os.waitstatus_to_exitcode(status) if status else 0)
"""


@functools.lru_cache(maxsize=None)
def _can_run_as(uid: int, gid: int) -> bool:
    """Can ``uid`` start this interpreter and import ipykernel (it may live under /root)?"""
    try:
        proc = subprocess.run([sys.executable, "-c", "import ipykernel"], cwd="/", capture_output=True,
                              timeout=120, user=uid, group=gid, extra_groups=[])
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def _process_children() -> dict[int, list[int]]:
    """ppid -> child pids of every process on the host (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat_line = fh.read().decode("utf-8", "replace")
        except OSError:
            continue
        try:
            ppid = int(stat_line[stat_line.rindex(")") + 2:].split()[1])
        except (ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _limit_child(limits: dict[int, int]) -> None:  # runs in the child between fork and exec
    # bwrap's monitor process and the sandbox's init must survive the SIGINT that
    # interrupts a cell (it is sent to the whole process group); ipykernel installs
    # its own SIGINT handler while it runs a cell.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.umask(0o022)
    for what, value in limits.items():
        try:
            soft, hard = resource.getrlimit(what)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(what, (value, value if what != resource.RLIMIT_CPU else value + 5))
        except (ValueError, OSError):
            pass



def _file_tail(path, size: int) -> str:
    """The last ``size`` bytes of a log file, as text ("" if it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except (OSError, ValueError):
        return _process_children().get(pid, [])


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _placeholder_of(bwrap_pid: int) -> int | None:
    """Host pid of the placeholder once it runs (bwrap -> the sandbox's init -> placeholder)."""
    name = os.path.basename(PLACEHOLDER)
    for init in _children_of(bwrap_pid):
        for pid in _children_of(init):
            if _comm(pid) == name:
                return pid
    return None


def _process_identity(pid: int | None) -> tuple | None:
    """(start time, PID namespace) of a live process, or None: tells a process from a reused pid."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            return None
        return fields[19], os.readlink(f"/proc/{pid}/ns/pid")
    except (OSError, IndexError):
        return None


# --------------------------------------------------------------------------
# The kernel template (coursekit.prefork), one per interpreter and environment
# --------------------------------------------------------------------------
class KernelTemplate:
    """A running ``coursekit.prefork`` template process and how to ask it for kernels.

    The process that starts a template owns it (the template exits with it); processes forked
    from the owner later (the grading command's workers) share it, each over its own
    connection to the template's Unix socket.
    """

    _running: dict[tuple, "KernelTemplate | None"] = {}
    _lock = threading.Lock()

    def __init__(self, env: dict, modules: list[str]):
        import json

        from . import prefork

        self.owner = os.getpid()
        self.folder = tempfile.mkdtemp(prefix="coursekit-template-")  # 0700: root only
        self.path = os.path.join(self.folder, "fork.sock")
        self.log_path = os.path.join(self.folder, "template.log")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        template_env = dict(env)
        fonts = matplotlib_font_cache()
        if fonts:  # the same font list a sandboxed kernel reads from its /tmp/matplotlib
            template_env["MPLCONFIGDIR"] = str(Path(fonts).parent)
        # what ipykernel sets before a kernel's first matplotlib import (IPKernelApp.init_gui_pylab)
        template_env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", prefork.BOOTSTRAP, prefork.__file__, str(theirs.fileno()), self.path,
                 json.dumps(modules)],
                env=template_env, cwd="/", stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                pass_fds=[theirs.fileno()], close_fds=True)
        theirs.close()
        self.control = ours
        self.pid = self.proc.pid
        self.skipped: list[str] = []
        self.problem = ""
        self._hello: dict | None = None
        self._conn: socket.socket | None = None
        self._conn_pid = 0
        self._requests = 0
        self._spawn_lock = threading.Lock()

    def ready(self, timeout: float = 120) -> bool:
        """Wait (once) until the template has imported everything; False if it failed.

        The template starts in the background, so the grader's other start-up work and the
        template's imports overlap; the first kernel launch waits here.
        """
        import json

        from . import prefork

        if os.getpid() == self.owner:
            if self._hello is None:
                self.control.settimeout(timeout)
                try:
                    self._hello = json.loads(self.control.recv(prefork.MAX_MESSAGE) or b"{}")
                except (OSError, ValueError) as exc:
                    self._hello = {"error": f"no answer from the template: {exc}"}
                self.skipped = self._hello.get("skipped", [])
                if not self._hello.get("ready"):
                    self.problem = self._hello.get("error") or self.log_tail() or "the template exited"
                    log.warning("kernels start the ordinary way: the kernel template failed (%s)", self.problem)
            return bool(self._hello.get("ready")) and self.alive()
        deadline = time.monotonic() + timeout  # a worker forked from the owner: wait for the socket
        while not os.path.exists(self.path):
            if not self.alive() or time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return self.alive()

    @classmethod
    def get(cls, env: dict, modules: list[str]) -> "KernelTemplate | None":
        """The template for this environment (started in the background on first use).

        None if it cannot be started; call :meth:`ready` before asking it for a kernel.
        A template that failed is not started again by this process.
        """
        key = (sys.executable, tuple(sorted(env.items())), tuple(modules))
        with cls._lock:
            if key not in cls._running:
                try:
                    cls._running[key] = cls(env, modules)
                except (OSError, ValueError) as exc:
                    log.warning("kernels start the ordinary way: the kernel template failed (%s)", exc)
                    cls._running[key] = None
            return cls._running[key]

    def alive(self) -> bool:
        if os.getpid() == self.owner:
            return self.proc.poll() is None
        return _process_identity(self.pid) is not None  # a worker forked from the owner: look it up

    def _connection(self) -> socket.socket:
        if self._conn is None or self._conn_pid != os.getpid():
            for attempt in range(100):  # the socket file exists a moment before it listens
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                conn.settimeout(60)
                try:
                    conn.connect(self.path)
                    break
                except ConnectionRefusedError:
                    conn.close()
                    if attempt == 99:
                        raise
                    time.sleep(0.01)
            self._conn, self._conn_pid = conn, os.getpid()
        return self._conn

    def spawn(self, request: dict, fds: list[int]) -> int:
        """Ask the template for a kernel (see coursekit.prefork); return its host pid."""
        import json

        from . import prefork

        with self._spawn_lock:
            self._requests += 1
            request = {**request, "id": f"{os.getpid()}-{self._requests}"}
            try:
                conn = self._connection()
                socket.send_fds(conn, [json.dumps(request).encode()], fds)
                reply = json.loads(conn.recv(prefork.MAX_MESSAGE) or b'{"error": "the template exited"}')
            except (OSError, ValueError):
                self._drop_connection()  # a late reply must never answer the next request
                raise
            if reply.get("id") != request["id"]:
                self._drop_connection()
                raise RuntimeError("the kernel template answered another request")
        if "pid" not in reply:
            raise RuntimeError(f"the kernel template could not start a kernel: {reply.get('error')}")
        return int(reply["pid"])

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self._conn = None

    def log_tail(self, size: int = 2000) -> str:
        return _file_tail(self.log_path, size)

    def close(self) -> None:
        if os.getpid() != getattr(self, "owner", None):
            return
        with contextlib.suppress(OSError):
            self.control.close()
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)

    @classmethod
    def close_all(cls) -> None:
        with cls._lock:
            for template in cls._running.values():
                if template is not None:
                    template.close()
            cls._running.clear()


atexit.register(KernelTemplate.close_all)
