"""A command run in a child process under a small parent that outlives it: the parent passes the
signals a scheduler or `kill` sends on to the child, ends with the child's exit status, and may
watch other processes for the child (`hand_over`), ending the command with one line of its own
when one of them dies first.

Why a parent: a study's driver can be ended by Ray's core worker at once, with no word, when the
local Ray it started dies under it (its raylet connection fails: `QuickExit`); a thread of the
driver that watches Ray cannot be sure to print before that. The parent can. It imports nothing
of its own beyond the standard library and forks before the child starts any thread or Ray.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import sys
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Callable, Protocol

# Passed on to the child: a scheduler's stop (SIGTERM: preemption, `scancel`, the time limit;
# SIGUSR1/SIGUSR2: `sbatch --signal`) and a closed terminal's SIGHUP. Ctrl-C is not: a terminal
# sends it to the whole process group, the child included, which would see it twice.
FORWARDED = (signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
PR_SET_PDEATHSIG = 1  # linux/prctl.h

# In a supervised child: the end of the pipe to its parent (fork shares this module's state), and
# the parent's pid.
_to_parent: Connection | None = None
_parent: int | None = None


class Watch(Protocol):
    """Processes the parent watches for the child, from the moment the child hands them over
    (pickled) until it takes them back (`Handover.stop`)."""

    say: Callable[[list[str]], None]  # the one line that names what died under the child

    def pidfds(self) -> tuple[list[int], float | None]:
        """The pidfds to wait on, and the seconds after which to ask again (None: no need)."""

    def died(self, ready: list[int]) -> list[str]:
        """What has ended, by name, given the pidfds found readable (may be empty)."""

    def kill_what_is_left(self) -> None:
        """The child is gone: end the watched processes that would outlive it."""

    def close(self) -> None:
        """Stop watching (the pidfds closed)."""


class Handover:
    """A watch handed to the parent; `stop()` takes it back (before the child ends what it watches)."""

    def __init__(self, to_parent: Connection):
        self._to_parent = to_parent

    def stop(self) -> None:
        self._to_parent.send_bytes(b"")


def supervise(run: Callable[[], int]) -> int:
    """`run()`'s result, returned in a child process forked here, while this process waits for
    it and ends (`os._exit`) with the child's exit status (128 + N where signal N ended it), or
    with 1 where a process the child handed over (`hand_over`) ended first. Where the system
    cannot wait on a process it did not start (Linux's pidfd, kernel 5.3), `run()` here.

    Call it first thing in a command's entry point: the caller's code after it runs in the child
    only, as if unsupervised (never call it inside a test session: its child would run the rest of
    the session), and forking is safe only before threads start."""
    if not waits_on_processes():
        return run()
    global _to_parent, _parent
    from_child, to_parent = Pipe(duplex=False)
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)  # held until the parent passes them on
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        from_child.close()
        _to_parent, _parent = to_parent, parent
        _die_with(parent)
        return run()
    to_parent.close()
    waiting = Parent(child, from_child)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    code = waiting.wait()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def command_pid() -> int:
    """The pid of the command as started (what `ps` shows a user, and what `kill` should be sent
    to): the supervising parent's in a supervised child, else this process's."""
    return _parent if _parent is not None else os.getpid()


def hand_over(watch: bytes) -> Handover | None:
    """Have the supervising parent watch `watch` (a pickled `Watch`, whose code the parent
    imported before the fork); None where this process is not a supervised child."""
    if _to_parent is None:
        return None
    _to_parent.send_bytes(watch)
    return Handover(_to_parent)


def _die_with(parent: int) -> None:
    """SIGKILL to this child when its parent dies (the parent killed: the command is gone)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


class Parent:
    """The waiting side: passes on the `FORWARDED` signals, reads the child's watches and
    watches them, and answers the child's end."""

    def __init__(self, child: int, from_child: Connection):
        self.child, self.child_fd, self.from_child = child, os.pidfd_open(child), from_child
        self.watch: Watch | None = None
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for signum in FORWARDED:
            signal.signal(signum, self._forward)

    def _forward(self, signum, frame) -> None:
        self._signal_child(signum)

    def _signal_child(self, signum: int) -> None:
        try:
            signal.pidfd_send_signal(self.child_fd, signum)
        except ProcessLookupError:  # it has ended: waitpid tells how
            pass

    def wait(self) -> int:
        """The command's exit status, once the child ended or was ended."""
        while True:
            watched, rescan_s = self.watch.pidfds() if self.watch else ([], None)
            listened = [self.child_fd, *watched, *([self.from_child] if not self.from_child.closed else [])]
            ready = select.select(listened, [], [], rescan_s)[0]
            self._read_messages()  # first: a watch taken back before what it watched ended
            died = self.watch.died(ready) if self.watch else []
            if died:
                self._signal_child(signal.SIGKILL)
                os.waitpid(self.child, 0)
                self.watch.kill_what_is_left()
                self.watch.say(died)
                return 1
            if self.child_fd in ready:
                status = os.waitpid(self.child, 0)[1]
                if self.watch:  # it ended without stopping the watch (killed)
                    self.watch.kill_what_is_left()
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code

    def _read_messages(self) -> None:
        while not self.from_child.closed and self.from_child.poll():
            try:
                message = self.from_child.recv_bytes()
            except (EOFError, OSError):  # the child ended (OSError: in the middle of a message)
                self.from_child.close()
                return
            if self.watch:
                self.watch.close()
            self.watch = pickle.loads(message) if message else None


def waits_on_processes() -> bool:
    """Whether this system has pidfds (a process's end as a readable file descriptor)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
        return True
    except (AttributeError, OSError):
        return False
