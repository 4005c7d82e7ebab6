"""Starting and stopping the sandbox's processes, each in its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from conformance.errors import KaicError
from conformance.sandbox.netns import wrap


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port` (of the calling thread's
    network namespace: see netns.call)."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(
    name: str,
    cmd: Sequence[str],
    logs: Path,
    env: dict[str, str] | None = None,
    *,
    netns: str | None = None,
) -> int:
    """Start `cmd` in its own process group (inside the sandbox's network namespace if given),
    its output going to `<logs>/<name>.log`; return its pid, also written to `<logs>/<name>.pid`
    before a stop signal can interrupt (so a stopped `up` can stop it, see `recorded_pids`)."""
    log = (logs / f"{name}.log").open("ab")
    with signals_held() as previous:
        proc = subprocess.Popen(
            wrap(cmd, netns),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            # a blocked mask is inherited: the child must get SIGTERM (down's first try)
            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, previous),
        )
        (logs / f"{name}{PID_SUFFIX}").write_text(f"{proc.pid}\n")
    log.close()
    return proc.pid


PID_SUFFIX = ".pid"
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def signals_held() -> Iterator[set[int | signal.Signals]]:
    """Hold SIGINT, SIGTERM and SIGHUP back (they are delivered on leaving) while a process is
    started and recorded, so that none is started without a record; yields the mask before,
    which a child started meanwhile must be given back (a mask is inherited across exec)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield previous
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def recorded_pids(logs: Path) -> dict[str, int]:
    """The pid of every process `start` started with these logs, by name."""
    found = {}
    for path in logs.glob(f"*{PID_SUFFIX}"):
        with contextlib.suppress(OSError, ValueError):
            found[path.name.removesuffix(PID_SUFFIX)] = int(path.read_text())
    return found


class Ports:
    """Ports for the sandbox's listeners. Inside its own network namespace nothing else listens,
    so they are fixed ones below the ephemeral range (no client connection in the namespace can
    be holding them); on the host's loopback, free ones."""

    def __init__(self, netns: str | None, first: int = 20000) -> None:
        self.netns = netns
        self.next = first

    def __call__(self) -> int:
        if self.netns is None:
            return free_port()
        self.next += 1
        return self.next - 1


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def stop(pids: Sequence[int], grace_s: float = 10) -> None:
    """SIGTERM each process group, then SIGKILL what is still there after `grace_s`."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def wait_until(
    what: str, ready: Callable[[], bool], pid: int, log: Path, timeout_s: float = 60
) -> None:
    """Poll `ready` (a health endpoint: nothing to watch yet) until true; fail with the log tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive(pid):
            raise KaicError(f"sandbox: {what} exited; last log line: {_tail(log)} (log: {log})")
        time.sleep(0.2)
    raise KaicError(f"sandbox: {what} not ready after {timeout_s:.0f}s: {_tail(log)} (log: {log})")


INOTIFY_HINT = (
    "too many open files: the host's inotify instances are used up"
    " (fs.inotify.max_user_instances, each sandbox takes about 14); stop other sandboxes"
    " (kaic sandbox down) or raise the limit (sysctl -w fs.inotify.max_user_instances=512)"
)


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    # Controllers watch their certificates with inotify; the per-user instance limit is shared by
    # every sandbox on the host, and the error says only "too many open files".
    if any("too many open files" in line for line in lines):
        return INOTIFY_HINT
    # A Go crash ends with a goroutine dump: its first line ("panic: …", "fatal error: …") says
    # why; otherwise the last line does.
    for line in lines:
        if line.startswith(("panic:", "fatal error:", "runtime: ")):
            return line[:300]
    return lines[-1][:300] if lines else "empty log"
