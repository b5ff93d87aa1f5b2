"""Pre-forked kernels: start a sandboxed Python kernel without paying for its imports again.

A fresh ``python -m ipykernel_launcher`` costs about 0.2 CPU-seconds before it answers, and
a course notebook then spends about 0.35 more importing pandas and matplotlib.  The grading
command starts two kernels per notebook (the student's and the judge), so on a 2-core machine
those imports, not the tests, set the pace.

A *template* process (the "zygote" of Android and Chromium) imports the kernel and the
course's libraries once and then only forks.  Each kernel is a fork of the template that
joins a freshly made bubblewrap sandbox and drops to that sandbox's uid before it runs a
line of the notebook:

1. the grader starts ``bwrap`` exactly as for an ordinary kernel (same binds, namespaces,
   resource limits, uid), but the command inside is a placeholder, ``cat`` reading a pipe;
2. the template forks; the child opens the placeholder's namespaces (mount, PID, network,
   IPC, UTS, cgroup) and root through ``/proc`` and enters them with ``setns(2)``; a
   double fork puts the kernel process inside the sandbox's PID namespace with the sandbox's
   init as its parent, as for an exec'd kernel;
3. the kernel process ``chroot``-s into the sandbox's root, sets the same resource limits,
   drops every capability, takes the sandbox uid and ``no_new_privs``, closes every file
   descriptor it did not ask for, takes the kernel's environment, and runs ipykernel's
   entry point as ``python -m ipykernel_launcher`` would;
4. the kernel holds the write end of the placeholder's pipe: when the kernel exits the
   placeholder reads end-of-file and exits, the sandbox's init exits, and the grader sees
   the kernel process end exactly as before.  Killing ``bwrap`` kills the whole sandbox,
   kernel included (it lives in the sandbox's PID namespace).

The template never sees a notebook, a gradebook or a test: it is a fresh interpreter started
with the kernel's own environment, that imported libraries and waits.  Everything a kernel
inherits from it is what any fresh kernel would have loaded from the same files.  Process-wide
state that a fresh process would draw at random is drawn again after the fork (Python's
``random`` does this itself; NumPy's global generator is reseeded here).

Only a grader running as root uses it (joining namespaces needs ``CAP_SYS_ADMIN``); anywhere
else, or for a kernel command that is not ``python -m ipykernel_launcher``, kernels start the
ordinary way.  ``tests/test_prefork.py`` checks that a pre-forked kernel and an ordinary one
see the same sandbox and give the same outputs and scores.

This file is also the template's program (see ``BOOTSTRAP``), so it must use only the
standard library at module level.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import traceback

#: Modules the template imports before it forks (missing ones are skipped).
KERNEL_MODULES = ["ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.iostream",
                  "IPython.core.interactiveshell", "jupyter_client.session", "zmq", "tornado.ioloop",
                  # what IPython loads to format its first traceback (a failing test makes one)
                  "IPython.core.ultratb", "stack_data", "executing", "asttokens", "pure_eval",
                  "pygments.formatters.terminal256", "pygments.formatters.html", "pygments.lexers.python",
                  "pygments.styles", "pygments.console", "pygments.filters"]

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
#: namespaces to enter, in order (mount last: it changes the root and working folder)
NAMESPACES = [("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET),
              ("cgroup", CLONE_NEWCGROUP), ("pid", CLONE_NEWPID), ("mnt", CLONE_NEWNS)]

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
PR_SET_PDEATHSIG = 1
PR_SET_SECUREBITS = 28
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
MAX_MESSAGE = 1 << 20


# ==========================================================================
# The template process
# ==========================================================================
def _libc():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _preload(modules: list[str]) -> list[str]:
    """Import the kernel and ``modules``; return the names that failed."""
    import importlib
    import threading

    failed = []
    for name in KERNEL_MODULES + list(modules):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a missing optional library is not an error
            failed.append(name)
    _compile_bridge()
    # inspect's module-by-file cache (filled on a traceback's first lookup by scanning every
    # loaded module's path): a pure cache of file names, the same inside the sandbox
    import inspect

    inspect.getmodule(None, "/nonexistent/coursekit-prefork-warm-up.py")
    if threading.active_count() != 1:  # forking a threaded process is not safe
        raise RuntimeError(f"importing started threads: {[t.name for t in threading.enumerate()]}")
    if "matplotlib_inline.backend_inline" in sys.modules:  # it hooks into a shell that does not exist yet
        raise RuntimeError("the inline backend was loaded before a kernel existed")
    return failed


def _compile_bridge() -> None:
    """Compile coursekit's grading bridge (``bridge.py`` beside this file) once for every kernel.

    ``coursekit.safety`` boots the bridge in each kernel; finding the compiled code here (with
    the SHA-256 of its source) it skips compiling 30 kB of source per kernel.  The boot takes it
    out of ``sys.modules`` again before any notebook code runs.
    """
    import hashlib
    import types

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bridge.py")
    try:
        with open(path, encoding="utf-8") as fh:
            source = fh.read()
    except OSError:
        return
    sys.modules["_coursekit_bridge_code"] = types.SimpleNamespace(  # type: ignore[assignment]
        sha256=hashlib.sha256(source.encode("utf-8")).hexdigest(),
        code=compile(source, "<coursekit bridge>", "exec"))


def serve(control_fd: int, listen_path: str, modules: list[str]) -> None:
    """Answer fork requests until the grader that started the template closes ``control_fd``.

    The grader process that started the template holds ``control_fd``; its worker processes
    (forked later) each connect to the Unix socket ``listen_path`` (in a folder only root can
    enter) and send requests there, one at a time per connection.
    """
    import selectors

    libc = _libc()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # never outlive the grader
    control = socket.socket(fileno=control_fd)
    try:
        failed = _preload(modules)
    except Exception as exc:  # noqa: BLE001
        control.send(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}).encode())
        return
    # the entry ipykernel_launcher removes before it starts (an empty first entry from -c)
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(listen_path)
    os.chmod(listen_path, 0o600)
    listener.listen(64)
    control.send(json.dumps({"ready": True, "skipped": failed, "pid": os.getpid()}).encode())
    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ, "control")
    sel.register(listener, selectors.EVENT_READ, "listener")
    while True:
        for key, _ in sel.select():
            if key.data == "control":  # the grader closed its end (or wrote): stop
                return
            if key.data == "listener":
                conn, _addr = listener.accept()
                sel.register(conn, selectors.EVENT_READ, "client")
                continue
            conn = key.fileobj
            try:
                raw, fds, _flags, _addr = socket.recv_fds(conn, MAX_MESSAGE, 8)
            except OSError:
                raw, fds = b"", []
            if not raw:
                sel.unregister(conn)
                conn.close()
                continue
            try:
                reply = _spawn(libc, json.loads(raw), fds)
            except Exception as exc:  # noqa: BLE001 - report, keep serving
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                for fd in fds:
                    os.close(fd)
            with _suppress():
                conn.send(json.dumps(reply).encode())


def _spawn(libc, req: dict, fds: list[int]) -> dict:
    """Fork a kernel into the sandbox whose placeholder is ``req['target']``; return its host pid."""
    alive_fd, log_fd = fds
    target = int(req["target"])
    for name in ("mnt", "pid", "net"):  # never a kernel outside a sandbox, whatever pid is asked for
        if os.readlink(f"/proc/{target}/ns/{name}") == os.readlink(f"/proc/self/ns/{name}"):
            return {"id": req.get("id"), "error": f"process {target} is not in a sandbox ({name} namespace)"}
    ns_fds = [(os.open(f"/proc/{target}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag)
              for name, flag in NAMESPACES if os.path.exists(f"/proc/{target}/ns/{name}")]
    root_fd = os.open(f"/proc/{target}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    report_r, report_w = os.pipe()
    try:
        middle = os.fork()
        if middle == 0:  # ------------------------------------------------ middle child
            code = 1
            try:
                os.close(report_r)
                for fd, flag in ns_fds:
                    _check(libc.setns(fd, flag), f"setns {flag:#x}")
                first = os.fork()  # the first process in the sandbox's PID namespace...
                if first == 0:
                    try:
                        if os.fork() == 0:  # ...forks the kernel and exits, so that the kernel's
                            _become_kernel(libc, req, root_fd, alive_fd, log_fd)  # parent becomes the
                    finally:  # sandbox's init (pid 1 inside), as for an exec'd kernel; never returns
                        os._exit(0)
                os.waitpid(first, 0)
                os.write(report_w, json.dumps({"forked": True}).encode())
                code = 0
            except BaseException as exc:  # noqa: BLE001
                with _suppress():
                    os.write(report_w, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
            finally:
                os._exit(code)
        os.close(report_w)
        report_w = -1
        chunks = []
        while True:
            chunk = os.read(report_r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.waitpid(middle, 0)
        text = b"".join(chunks).decode() or '{"error": "the forked process reported nothing"}'
        reply = json.loads(text)
        if reply.get("forked"):
            reply = _kernel_beside(target)
        return {**reply, "id": req.get("id")}
    finally:
        for fd, _ in ns_fds:
            os.close(fd)
        os.close(root_fd)
        os.close(report_r)
        if report_w >= 0:
            os.close(report_w)


def _kernel_beside(placeholder: int) -> dict:
    """Host pid of the kernel just forked: the other child of the placeholder's parent (the sandbox's init)."""
    with open(f"/proc/{placeholder}/stat") as fh:
        init = int(fh.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{init}/task/{init}/children") as fh:
        others = [int(p) for p in fh.read().split() if int(p) != placeholder]
    if len(others) != 1:
        return {"error": f"expected one kernel beside the placeholder, found {others}"}
    return {"pid": others[0]}


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


def _become_kernel(libc, req: dict, root_fd: int, alive_fd: int, log_fd: int) -> None:
    """In the sandbox's namespaces: become the sandboxed kernel process and run it."""
    import resource

    try:
        os.setsid()  # its own process group: an interrupt goes to the kernel and its children
        os.fchdir(root_fd)
        os.chroot(".")
        os.chdir(req["cwd"])
        os.umask(0o022)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as an exec'd kernel inherits it
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for what, value in req["limits"]:
            soft, hard = resource.getrlimit(what)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            extra = 5 if what == resource.RLIMIT_CPU else 0
            resource.setrlimit(what, (value, value + extra))
        if os.geteuid() == 0:
            # securebits off first, so that taking a non-zero uid clears every capability
            _check(libc.prctl(PR_SET_SECUREBITS, 0, 0, 0, 0), "clear securebits")
            with open("/proc/sys/kernel/cap_last_cap") as fh:
                last = int(fh.read())
            for cap in range(last + 1):
                _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
            libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
            os.setgroups([])
            os.setresgid(req["gid"], req["gid"], req["gid"])
            os.setresuid(req["uid"], req["uid"], req["uid"])
        _clear_capabilities(libc)  # inheritable too, as setpriv --inh-caps=-all does
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # as after exec: /proc/self stays the kernel's
        _verify_unprivileged()  # fail closed: no kernel runs with any privilege left
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        keep = sorted({0, 1, 2, alive_fd})
        low = 3
        for fd in keep[3:] + [1 << 20]:
            if fd > low:
                os.closerange(low, fd)
            low = fd + 1
        os.set_inheritable(alive_fd, False)
        os.environ.clear()
        os.environ.update(req["env"])
        os.environ["PWD"] = req["cwd"]  # as bwrap --chdir sets it
        _fresh_process_state(req)
    except BaseException:  # noqa: BLE001
        with _suppress():
            os.write(log_fd, traceback.format_exc().encode())
        os._exit(126)
    code = 0
    try:
        from ipykernel import kernelapp as app

        app.launch_new_instance()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    finally:
        import atexit

        with _suppress():
            atexit._run_exitfuncs()
        with _suppress():
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _clear_capabilities(libc) -> None:
    """capset(2) every capability set (effective, permitted, inheritable) to empty."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
    data = (Data * 2)()
    _check(libc.capset(ctypes.byref(header), data), "capset")


def _verify_unprivileged() -> None:
    with open("/proc/self/status") as fh:
        status = dict(line.split(":", 1) for line in fh if ":" in line)
    leftover = [k for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb") if int(status[k].strip(), 16)]
    if leftover or status["NoNewPrivs"].strip() != "1" or 0 in os.getresuid() or 0 in os.getresgid():
        raise PermissionError(f"privileges left after dropping them: {leftover or 'uid, gid or no_new_privs'}")


def _fresh_process_state(req: dict) -> None:
    """Redraw or reset what a freshly started kernel would not share with its siblings."""
    import importlib

    sys.argv = [req["launcher"], *req["argv"]]
    sys.dont_write_bytecode = bool(req["env"].get("PYTHONDONTWRITEBYTECODE"))
    importlib.invalidate_caches()
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()  # a fresh process seeds NumPy's global generator from the OS
    mpl = sys.modules.get("matplotlib")
    if mpl is not None:  # recompute config/cache folders from the kernel's environment
        for name in ("get_configdir", "get_cachedir"):
            fn = getattr(mpl, name, None)  # memoised in a closure (matplotlib._logged_cached)
            code = getattr(fn, "__code__", None)
            for var, cell in zip(code.co_freevars if code else (), getattr(fn, "__closure__", None) or ()):
                if var == "called":
                    cell.cell_contents = False
                elif var == "ret":
                    cell.cell_contents = None


#: how the grader starts the template: ``python -c BOOTSTRAP <this file> <fd> <socket path> <modules>``
#: (a short command line for ``ps``; the file is read by path, not imported from a package)
BOOTSTRAP = ("import sys; __file__ = sys.argv[1]; "
             "exec(compile(open(__file__).read(), __file__, 'exec'))")

if __name__ == "__main__":
    serve(int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]))
