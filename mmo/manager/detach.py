"""
How the manager starts each process it runs: in a session of its own, so
that the signals a terminal sends to its foreground process group (SIGINT
on Ctrl-C, SIGQUIT, SIGTSTP, SIGHUP when it closes) reach the manager
alone, which then stops its processes in order.  Twisted's C{spawnProcess}
has no hook to run code in the child before C{exec} (only C{usePTY}, which
would also give each process a terminal of its own), so the manager runs
this module, which calls C{setsid()} and then C{exec}s the process::

    python -m mmo.manager.detach [--umask MODE] PROGRAM [ARGUMENT...]

With C{--umask} (octal) the process creates its files with that umask (the
local Redis: its append-only files are for the manager's user only).

On Linux the process is also sent SIGTERM when the manager dies (even by
SIGKILL), as the terminal's SIGHUP would have: a process of a dead manager
would otherwise run on unsupervised, holding its ports.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

#: prctl(2)'s option: the signal the calling process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """SIGTERM when C{parent} ends (Linux only); leave now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        # The manager ended before prctl: nobody would supervise this process.
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    """Detach, then C{exec} the program of C{argv} (default: C{sys.argv[1:]})."""
    args = list(sys.argv[1:] if argv is None else argv)
    parent = os.getppid()
    if args[:1] == ["--umask"] and len(args) > 1:
        os.umask(int(args[1], 8))
        args = args[2:]
    if not args:
        raise SystemExit("usage: python -m mmo.manager.detach [--umask MODE] PROGRAM [ARG...]")
    os.setsid()
    _die_with_parent(parent)
    try:
        os.execvp(args[0], args)
    except OSError as e:
        raise SystemExit(f"mmo.manager.detach: cannot run {args[0]}: {e.strerror or e}") from None


if __name__ == "__main__":
    main()
