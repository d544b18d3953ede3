"""Tying a process's life to its parent's, so no orphan outlives the appliance."""

import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Ask Linux to send `signum` to this process when its parent dies.

    It survives exec, so a program that replaces itself (the bundled Redis) keeps it.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum)
    except OSError:
        pass  # not Linux: a parent killed with -9 leaves its children running
