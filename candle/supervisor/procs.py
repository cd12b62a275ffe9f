"""Process plumbing: children that die with their supervisor."""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies.

    Called between fork and exec (Popen's preexec_fn), so there is no window in which a
    SIGKILLed supervisor leaves an orphan that later writes into a job directory that a
    resumed supervisor has handed to a new attempt. Survives exec, covers mpirun too.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except OSError:  # not Linux: resume still works, orphans are just possible
        pass
