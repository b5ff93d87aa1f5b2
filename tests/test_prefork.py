"""Pre-forked kernels (``coursekit.prefork``): the same sandbox and the same results, for less CPU.

Each test starts real sandboxed kernels both ways -- the ordinary way (bubblewrap runs
``python -m ipykernel_launcher``) and forked from the kernel template into a bubblewrap
sandbox -- and compares what the kernel sees and does.  The grading command's use of it is
checked end to end in ``test_parallel_grading.py`` (identical scores to stock autograde) and
``test_hostile_submissions.py`` (the hostile batch graded by the command).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from coursekit.sandbox import KernelTemplate, SandboxedKernelManager, probe_bwrap

BWRAP, WHY = probe_bwrap()
pytestmark = [
    pytest.mark.skipif(BWRAP is None, reason=f"bubblewrap sandbox unavailable: {WHY}"),
    pytest.mark.skipif(os.geteuid() != 0, reason="pre-forked kernels need a grader running as root"),
]

PROBE = r'''
import json, os, resource, socket, sys
import matplotlib, numpy, pandas
status = {l.split(":")[0]: l.split(":", 1)[1].strip() for l in open("/proc/self/status")
          if l.startswith(("Cap", "NoNewPrivs", "Uid", "Gid", "Groups"))}
def attempt(fn):
    try:
        fn()
        return "SUCCEEDED"
    except OSError as exc:
        return type(exc).__name__
facts = {
    "status": status, "cwd": os.getcwd(), "hostname": socket.gethostname(), "root": sorted(os.listdir("/")),
    "work": sorted(os.listdir(".")), "pid1": open("/proc/1/comm").read().strip(),
    "processes": len([p for p in os.listdir("/proc") if p.isdigit()]),
    "limits": {n: resource.getrlimit(getattr(resource, n)) for n in
               ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")},
    "env": dict(os.environ), "path": sys.path, "argv0": os.path.basename(sys.argv[0]),
    "backend": matplotlib.get_backend(), "cachedir": matplotlib.get_cachedir(),
    "dont_write_bytecode": sys.dont_write_bytecode, "umask": os.umask(0o022),
    "sigint": str(__import__("signal").getsignal(__import__("signal").SIGINT)),
    "read_host_file": attempt(lambda: open(HOST_FILE).read()),
    "read_shadow": attempt(lambda: open("/etc/shadow").read()),
    "write_work": attempt(lambda: open("written.txt", "w").write("x")),
    "network": attempt(lambda: socket.create_connection(("1.1.1.1", 80), timeout=2)),
    "numpy_draw": float(numpy.random.random()),
}
print("FACTS" + json.dumps(facts))
'''


#: a file the grader can read but a sandboxed kernel must not see (the project's README)
HOST_FILE = str(Path(__file__).resolve().parent.parent / "README.md")


def run(coro):
    return asyncio.run(coro)


class Kernel:
    """A sandboxed kernel started one way or the other, with a client."""

    def __init__(self, prefork: bool, work: Path):
        self.km = SandboxedKernelManager(kernel_name="python3")
        self.km.prefork = prefork
        self.km.work_dir = str(work)

    async def __aenter__(self):
        await self.km.start_kernel(cwd=self.km.work_dir, extra_arguments=["--HistoryManager.hist_file=:memory:"])
        self.kc = self.km.client()
        self.kc.start_channels()
        await self.kc.wait_for_ready(timeout=60)
        return self

    async def __aexit__(self, *exc):
        self.kc.stop_channels()
        await self.km.shutdown_kernel(now=True)

    async def execute(self, code: str, timeout: float = 60) -> list[dict]:
        messages: list[dict] = []
        await self.kc.execute_interactive(code, timeout=timeout, output_hook=messages.append)
        return messages


def text(messages) -> str:
    return "".join(m["content"].get("text", "") for m in messages if m["msg_type"] == "stream")


def output_kinds(messages) -> list:
    return [(m["msg_type"], sorted(m["content"].get("data", {}))) for m in messages
            if m["msg_type"] in ("display_data", "execute_result", "error")]


@pytest.fixture()
def work(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(folder, 0o755)
    (folder / "data.csv").write_text("a,b\n1,2\n")
    os.chmod(folder / "data.csv", 0o444)
    return folder


async def _probe(prefork: bool, work: Path) -> tuple[dict, list]:
    assert os.path.isfile(HOST_FILE)
    async with Kernel(prefork, work) as k:
        facts = json.loads(text(await k.execute(f"HOST_FILE = {HOST_FILE!r}\n" + PROBE)).split("FACTS", 1)[1])
        plot = await k.execute("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
        facts["kernel_pid_known"] = k.km.kernel_pid() is not None
        facts["template_used"] = k.km.forked_pid is not None
    return facts, output_kinds(plot)


def test_a_preforked_kernel_sees_the_same_sandbox(work):
    ordinary, ordinary_plot = run(_probe(False, work))
    forked, forked_plot = run(_probe(True, work))
    assert forked["template_used"] and not ordinary["template_used"]
    assert forked["kernel_pid_known"] and ordinary["kernel_pid_known"]
    # an unprivileged uid, no capabilities at all, no_new_privs: the same as setpriv gives
    for facts in (ordinary, forked):
        st = facts["status"]
        assert st["Uid"].split()[0] != "0" and len(set(st["Uid"].split())) == 1
        assert all(int(st[c], 16) == 0 for c in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"))
        assert st["NoNewPrivs"] == "1" and st["Groups"] == ""
        assert facts["read_host_file"] == "FileNotFoundError"  # not even there, though the grader reads it
        assert facts["read_shadow"] != "SUCCEEDED"
        assert facts["write_work"] != "SUCCEEDED" and facts["network"] != "SUCCEEDED"
    same = ["cwd", "hostname", "root", "work", "limits", "path", "argv0", "backend", "cachedir",
            "dont_write_bytecode", "umask", "sigint", "read_host_file", "read_shadow", "write_work", "network"]
    assert {k: forked[k] for k in same} == {k: ordinary[k] for k in same}
    assert forked["env"] == ordinary["env"]
    assert forked["pid1"] == ordinary["pid1"] == "bwrap"  # inside the sandbox's own PID namespace
    assert forked["processes"] <= ordinary["processes"] + 1  # + the placeholder
    assert forked_plot == ordinary_plot == [("display_data", ["image/png", "text/plain"])]


def test_forked_kernels_draw_their_own_random_numbers(work):
    async def draws():
        out = []
        for _ in range(2):
            async with Kernel(True, work) as k:
                out.append(text(await k.execute("import numpy, random\nprint(numpy.random.random(), random.random())")))
        return out

    first, second = run(draws())
    assert first != second


def test_a_preforked_kernel_that_exits_is_seen_dead_and_can_be_restarted(work):
    async def scenario():
        async with Kernel(True, work) as k:
            pid = k.km.forked_pid
            k.kc.execute("import os; os._exit(3)")
            for _ in range(100):
                if not await k.km.is_alive():
                    break
                await asyncio.sleep(0.1)
            dead = not await k.km.is_alive()
            await k.km.restart_kernel(now=True)
            k.kc.stop_channels()
            k.kc = k.km.client()
            k.kc.start_channels()
            await k.kc.wait_for_ready(timeout=60)
            again = text(await k.execute("print(6 * 7)"))
            return dead, pid, k.km.forked_pid, again

    dead, before, after, again = run(scenario())
    assert dead
    assert after is not None and after != before
    assert again.strip() == "42"


def test_interrupt_reaches_a_preforked_kernel(work):
    async def scenario():
        async with Kernel(True, work) as k:
            msg_id = k.kc.execute("import time\nwhile True:\n    time.sleep(0.01)")
            await asyncio.sleep(1.0)
            await k.km.interrupt_kernel()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                reply = await k.kc.get_shell_msg(timeout=20)
                if reply["parent_header"].get("msg_id") == msg_id:
                    return reply["content"], text(await k.execute("print('still here')"))
        return None, ""

    content, after = run(scenario())
    assert content["status"] == "error" and content["ename"] == "KeyboardInterrupt"
    assert after.strip() == "still here"


def test_stray_processes_are_reaped_but_not_the_kernel(work):
    async def scenario():
        async with Kernel(True, work) as k:
            out = text(await k.execute(
                "import subprocess\np = subprocess.Popen(['sleep', '300'])\nprint(p.pid)"))
            killed = k.km.reap_strays()
            alive = await k.km.is_alive()
            placeholder_alive = os.path.exists(f"/proc/{k.km.placeholder_pid}")
            answer = text(await k.execute("print(p.wait())"))
            return out, killed, alive, placeholder_alive, answer

    out, killed, alive, placeholder_alive, answer = run(scenario())
    assert out.strip().isdigit()
    assert killed == 1
    assert alive and placeholder_alive
    assert answer.strip() == str(-signal.SIGKILL)


def test_shutdown_leaves_no_kernel_behind(work):
    async def scenario():
        async with Kernel(True, work) as k:
            pid, placeholder = k.km.forked_pid, k.km.placeholder_pid
        return pid, placeholder

    pid, placeholder = run(scenario())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(p) for p in (pid, placeholder)):
        time.sleep(0.05)
    assert not _running(pid) and not _running(placeholder)


def test_the_template_is_not_used_unless_asked(work):
    facts, _ = run(_probe(False, work))
    assert not facts["template_used"]


def test_a_template_that_cannot_start_falls_back_to_ordinary_kernels(work, caplog):
    async def scenario():
        k = Kernel(True, work)
        k.km.prefork_modules = ["no_such_module_for_coursekit_tests"]  # skipped, not fatal
        async with k:
            skipped = KernelTemplate.get(k.km._kernel_env(dict(os.environ)), list(k.km.prefork_modules)).skipped
            return skipped, text(await k.execute("print('ok')"))

    skipped, out = run(scenario())
    assert skipped == ["no_such_module_for_coursekit_tests"]
    assert out.strip() == "ok"


def _running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_the_bridge_compiled_in_the_template_is_used_only_if_its_source_matches(work):
    """The grading bridge is compiled once in the template; a kernel boots from it only if the digest matches."""
    from coursekit.safety import BRIDGE_SOURCE, _boot_code

    boot = _boot_code("install_agent(get_ipython().user_ns)")
    check = ("import sys\nm = sys.modules['_coursekit_bridge']\n"
             "print(m.AGENT is not None, hasattr(m, 'PLANTED'), '_coursekit_bridge_code' in sys.modules)")
    marked = BRIDGE_SOURCE + "\nPLANTED = 1\n"

    async def boot_with(digest: str | None) -> tuple[str, str]:
        async with Kernel(True, work) as k:
            present = text(await k.execute("import sys\nprint('_coursekit_bridge_code' in sys.modules)"))
            # mark the cached code so that the test can tell which code the boot used
            change = f"c = sys.modules['_coursekit_bridge_code']\nc.code = compile({marked!r}, 'b', 'exec')\n"
            if digest:
                change += f"c.sha256 = {digest!r}\n"
            await k.execute(change)
            await k.execute(boot)
            return present, text(await k.execute(check))

    present, used = run(boot_with(None))
    _, ignored = run(boot_with("f" * 64))
    assert present.strip() == "True"
    assert used.split() == ["True", "True", "False"]      # booted from the template's compiled code
    assert ignored.split() == ["True", "False", "False"]  # digest differs: compiled from the source


def test_a_kernel_that_dies_leaving_a_forked_child_is_seen_dead_and_its_sandbox_goes(work):
    """The child keeps the placeholder's pipe open; the manager sees the kernel gone and ends the sandbox."""
    async def scenario():
        async with Kernel(True, work) as k:
            pid = k.km.forked_pid
            k.kc.execute("import os, time\nif os.fork() == 0:\n    time.sleep(300)\nelse:\n    os._exit(1)")
            await asyncio.sleep(0.5)
            child = [p for p in _children(k.km.placeholder_pid) if p not in (pid, k.km.placeholder_pid)]
            for _ in range(100):
                if not await k.km.is_alive():
                    break
                await asyncio.sleep(0.1)
            return (await k.km.is_alive(), k.km.provisioner.process.poll(), child)

    alive, bwrap_exit, child = run(scenario())
    assert not alive
    assert bwrap_exit is not None  # the sandbox was killed, not left to the child
    assert len(child) == 1 and not _running(child[0])


def _children(placeholder: int) -> list[int]:
    """Processes beside ``placeholder`` in its sandbox (the children of the sandbox's init)."""
    parent = int(Path(f"/proc/{placeholder}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return [int(p) for p in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]


def test_a_reused_pid_is_never_signalled(work):
    """The manager signals the kernel only while its pid still names that very process."""
    async def scenario():
        async with Kernel(True, work) as k:
            real = k.km._forked_identity
            k.km._forked_identity = ("1", real[1])  # as if the pid now belonged to another process
            pid_seen, alive_seen = k.km.kernel_pid(), await k.km.is_alive()
            k.km._forked_identity = real
            return pid_seen, alive_seen

    pid_seen, alive_seen = run(scenario())
    assert pid_seen is None and not alive_seen


def test_the_template_refuses_a_process_outside_a_sandbox(work):
    async def scenario():
        async with Kernel(True, work) as k:
            env = k.km._kernel_env(dict(os.environ))
            template = KernelTemplate.get(env, list(k.km.prefork_modules))
            r, w = os.pipe()
            try:
                with pytest.raises(RuntimeError, match="not in a sandbox"):
                    template.spawn({"target": os.getpid(), "uid": 65534, "gid": 65534, "cwd": "/", "env": {},
                                    "limits": [], "argv": [], "launcher": "x"}, [w, w])
            finally:
                os.close(r)
                os.close(w)
            return text(await k.execute("print('still serving')"))

    assert run(scenario()).strip() == "still serving"


def test_a_template_that_fails_to_fork_falls_back_to_an_ordinary_kernel(work, monkeypatch):
    def broken(self, request, fds):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(KernelTemplate, "spawn", broken)

    async def scenario():
        async with Kernel(True, work) as k:
            return k.km.forked_pid, text(await k.execute("import os\nprint(os.getuid() != 0, 6 * 7)"))

    forked, out = run(scenario())
    assert forked is None
    assert out.split() == ["True", "42"]
