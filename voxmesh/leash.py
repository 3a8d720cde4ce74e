"""``python -m voxmesh.leash MODULE [ARGS...]``: run MODULE as ``__main__`` and stop it
when the process that started it dies.

The launcher starts every Python part of the stack through this module. Without it, a
launcher killed with SIGKILL (or a test run killed mid-way) leaves services running and
holding their ports. PR_SET_PDEATHSIG would need ``preexec_fn``, which is unsafe in the
threaded launcher, so a daemon thread here watches the parent pid instead: when the
process is re-parented, it gets SIGTERM (its graceful drain), and exits hard if that has
not finished after ``_GRACE_S``. Same process, same pid: the launcher's signals reach the
service itself.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time

_POLL_S = 0.5
_GRACE_S = 15.0


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(_GRACE_S)
    os._exit(1)


def main() -> None:
    """Start the watchdog, then run the module named by the first argument."""
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m voxmesh.leash MODULE [ARGS...]")
    module = sys.argv[1]
    threading.Thread(target=_watch, args=(os.getppid(),), name="leash", daemon=True).start()
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
