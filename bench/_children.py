"""Child processes of a benchmark: started in their own process group, all stopped on exit.

Shared by the benchmarks so that none leaves a SIPp, a B2BUA or a relay running after it ends,
is interrupted or is killed with SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

STOP_TIMEOUT_S = 5.0  # SIGTERM, then SIGKILL for a child still there after this

_children: list[subprocess.Popen[bytes]] = []


def spawn(
    argv: list[str],
    log: Path,
    *,
    cwd: Path | None = None,
    stdout: int | IO[bytes] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group, stderr (and stdout unless given) appended to
    `log`, remembered for cleanup."""
    with log.open("ab") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=err if stdout is None else stdout,
            stderr=err,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a child's process group, then kill it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)
    if proc.stdout is not None:
        proc.stdout.close()
    if proc in _children:
        _children.remove(proc)


def stop_all() -> None:
    for proc in list(_children):
        stop(proc)


def _on_signal(signum: int, _frame: object) -> None:
    stop_all()
    sys.exit(128 + signum)


def stop_children_on_exit() -> None:
    """Stop every child at exit, on Ctrl-C and on SIGTERM."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    atexit.register(stop_all)
