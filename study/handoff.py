"""The study's inputs, handed from a thread to the trials: imported, checked and built while the
main thread starts Ray and the trials (the engine's `SharedInputs` receives them).

A module of its own, light to import: the launch imports it before anything heavy, since the
thread must be the first to import the training stack (two threads importing one package at once
can deadlock), while `study.engine` imports Ray Tune and the training stack at its top.
"""

from __future__ import annotations

import _thread
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from trainables.core.config import FinetuneConfig

if TYPE_CHECKING:
    from study.trials import SharedInputs


def import_training_stack() -> None:
    """torch, mace and this project's modules built on them (seconds, no Ray), imported once the
    command line is known to be valid (an unknown space or optimizer fails without waiting for
    them), by the inputs thread while the main thread starts Ray."""
    import trainables.stages.finetune  # noqa: F401
    import trainables.stages.inputs  # noqa: F401
    import trainables.stages.refine  # noqa: F401


def timed(seconds: dict[str, float], key: str, fn, *args):
    """fn(*args), its wall seconds stored under `key`."""
    start = time.perf_counter()
    try:
        return fn(*args)
    finally:
        seconds[key] = round(time.perf_counter() - start, 2)


class InputsHandoff:
    """The study's inputs, imported, checked and built in a thread while the main thread starts Ray
    and then the trials, whose workers start their own processes and imports (seconds) meanwhile;
    the thread puts the inputs into the trials' `SharedInputs` once both exist.

    The thread imports the training stack at once (`wait_imported`: the main thread imports
    nothing heavy before, as two threads importing one package at once can deadlock), then waits
    for `start_checking` (the embedded default's first build runs in the main thread, so that
    Ctrl-C stops it at once), checks the data and builds the inputs.

    An error of the thread (an input error, or a failed build or hand-over: a bug, no memory) is
    raised by `hand_over_to` if it came before it. After it, the error interrupts the main thread:
    Tune stops its waiting trials as after Ctrl-C (they have no inputs, so nothing is recorded),
    and `raise_if_failed` raises the thread's error. A new study whose data fails its check is
    then removed (`discard_unstarted_study`).

    `setup_s` holds the wall seconds of the study's parts before its trials: the thread's, and those
    the main thread adds (`timed`); Ray's start overlaps the thread's parts."""

    def __init__(self, config: FinetuneConfig):
        self.setup_s: dict[str, float] = {}
        self._shared: SharedInputs | None = None
        self._imported, self._checked = Future(), Future()
        self._go, self._receiver_known, self._closed = threading.Event(), threading.Event(), False
        self._lock, self._failed = threading.Lock(), False  # the thread's error goes to hand_over_to or interrupts
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="build-inputs")
        self._building = self._pool.submit(self._import_check_build_and_hand_over, config, self.setup_s)
        self._building.add_done_callback(self._interrupt_main_on_error)

    def _import_check_build_and_hand_over(self, config: FinetuneConfig, seconds: dict[str, float]) -> None:
        try:
            timed(seconds, "imports", import_training_stack)
        except BaseException as error:
            self._imported.set_exception(error)
            raise
        self._imported.set_result(None)
        from trainables.stages.inputs import build_inputs, check_data

        self._go.wait()
        if self._closed:
            return
        try:
            checked = timed(seconds, "check_data", check_data, config)
        except BaseException as error:
            self._checked.set_exception(error)
            raise
        self._checked.set_result(checked)
        inputs = timed(seconds, "build_inputs", build_inputs, checked)
        self._receiver_known.wait()
        if self._shared is not None:
            self._shared.put(inputs)

    def _interrupt_main_on_error(self, building: Future) -> None:
        if building.exception() is None:
            return
        with self._lock:
            self._failed = True
            if self._shared is not None and not self._closed:
                _thread.interrupt_main()

    def wait_imported(self) -> None:
        """Until the thread has imported the training stack; raises its import error."""
        self._imported.result()

    def start_checking(self) -> None:
        """Let the thread check the data (the embedded default, if used, is built by now)."""
        self._go.set()

    def check_failed(self) -> bool:
        """Whether the data check ended with an error."""
        return self._checked.done() and self._checked.exception() is not None

    def hand_over_to(self, shared: SharedInputs) -> None:
        """Put the inputs into `shared` as soon as they are built; from now on an error of the thread
        interrupts the main thread. An input error found before is raised here."""
        with self._lock:
            self._shared = shared
            failed = self._failed
        self._receiver_known.set()
        if failed:
            self.raise_if_failed()

    def failed(self) -> bool:
        """Whether the thread has ended with an error (without waiting for it)."""
        return self._building.done() and self._building.exception() is not None

    def raise_if_failed(self) -> None:
        """Wait for the build and the hand-over; raise the error if either failed."""
        self._building.result()

    def close(self) -> None:
        """No check or hand-over any more (the study ended or failed first); the thread finishes on
        its own."""
        with self._lock:
            self._closed = True
        self._go.set()
        self._receiver_known.set()
        self._pool.shutdown(wait=False)
