"""Stop everything a pipeline run started when it is interrupted (SIGINT / SIGTERM).

kfp.local runs each step in a child process, a step with ``nproc > 1`` starts torchrun
(``training.distributed.launch_torchrun``), and torchrun puts every rank in a session of its own: a signal
to the parent alone, or to its process group, leaves those running. So, while a run is in progress, this process is made a *child
subreaper* (Linux ``prctl``): a descendant whose parent dies is re-parented here instead of to init, and
the whole tree can still be found by walking ``/proc``. On a signal the tree is sent SIGTERM, then SIGKILL
after a timeout, and only then does the interrupt propagate (so a caller holding a lock, like
``hftpipe retrain``, keeps it until no child is left).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses: split after the last one.
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0]


def children_map(include_zombies: bool = False) -> dict[int, list[int]]:
    """Parent pid -> child pids of every process visible in /proc (live ones only, unless asked)."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        info = _stat(int(entry))
        if info is not None and (include_zombies or info[1] != "Z"):
            tree.setdefault(info[0], []).append(int(entry))
    return tree


def descendants(pid: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Every live descendant of ``pid`` (children first), skipping the subtrees rooted at ``exclude``.

    The walk goes through zombies: a parent just killed shows as a zombie while /proc still lists its
    children under it for a moment, before they are re-parented (measured with torchrun's ranks).
    """
    tree = children_map(include_zombies=True)
    out: list[int] = []
    stack = [c for c in tree.get(pid, []) if c not in exclude]
    while stack:
        child = stack.pop(0)
        if alive(child):
            out.append(child)
        stack.extend(tree.get(child, []))
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has exited; it only awaits reaping)."""
    info = _stat(pid)
    return info is not None and info[1] != "Z"


def _reap(pids: set[int]) -> None:
    """Collect those of ``pids`` that exited as our children (adopted orphans too), so no zombie lingers.

    Only these pids: waiting on any child would steal the exit status of a process someone else awaits.
    """
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def set_subreaper(enabled: bool) -> bool:
    """Make this process adopt orphaned descendants (Linux); False where that is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, int(enabled), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def stop_descendants(exclude: set[int] | frozenset[int] = frozenset(), timeout: float = 10.0) -> int:
    """SIGTERM every descendant of this process (outside ``exclude``), SIGKILL what is left after ``timeout``.

    Returns:
        How many processes were signalled. On return none of them is alive.
    """
    me = os.getpid()
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    killing = False
    while True:
        current = descendants(me, exclude)
        if not current:
            break
        fresh = [p for p in current if p not in seen]  # e.g. a rank started while we were stopping
        seen.update(current)
        if killing:
            _signal_all(current, signal.SIGKILL)
        else:
            _signal_all(fresh, signal.SIGTERM)
            if time.monotonic() > deadline:
                log.warning("%d process(es) did not stop within %.0f s of SIGTERM; sending SIGKILL",
                            len(current), timeout)
                killing = True
                continue
        time.sleep(0.05)
        _reap(seen)
    _reap(seen)
    return len(seen)


@dataclass
class Interrupt:
    """What the guard saw: the signal that stopped the run and how many processes it stopped."""

    signum: int | None = None
    stopped: int = 0
    pids: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "interrupt"


@contextlib.contextmanager
def stop_tree_on_signal(timeout: float = 10.0) -> Iterator[Interrupt]:
    """Turn SIGINT / SIGTERM into KeyboardInterrupt, and stop every process started inside before it propagates.

    Processes that were already children of this one when the block started (e.g. a server a test runs)
    are left alone. Outside the main thread signals cannot be caught: the block then runs unguarded.
    """
    state = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    before = {c for c in children_map().get(os.getpid(), [])}

    def on_signal(signum: int, _frame: object) -> None:
        if state.signum is None:
            state.signum = signum
            # KeyboardInterrupt exactly: subprocess.Popen.__exit__ (kfp.local's step runner) then waits only
            # briefly for its child instead of forever.
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    adopted = set_subreaper(True)
    try:
        yield state
    except KeyboardInterrupt:
        if state.signum is None:
            state.signum = signal.SIGINT
        for s in STOP_SIGNALS:  # a second Ctrl-C must not abandon the clean-up half way
            signal.signal(s, lambda *_: None)
        state.pids = descendants(os.getpid(), before)
        log.warning("%s: stopping %d process(es) of this run", state.name, len(state.pids))
        state.stopped = stop_descendants(before, timeout)
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if adopted:
            set_subreaper(False)
