"""SIGINT and SIGTERM during training: finish the current dispatch, then stop cleanly.

``watch()`` installs handlers that only raise a flag; the epoch loop asks ``requested()`` between
dispatches (a Keras ``fit`` asks after every batch) and raises ``Interrupted``, which the command
line turns into a run folder marked interrupted, one sentence and exit status 130. A second signal
stops at once (``KeyboardInterrupt``), for a step that does not return. Handlers are installed
only in the main thread (Python allows no other) and are restored afterwards.
"""
from __future__ import annotations

import contextlib
import signal
import threading


class Interrupted(Exception):
    """Training stopped by a signal after ``epochs_done`` finished epochs."""

    def __init__(self, signal_name: str, epochs_done: int, epochs: int, history=None):
        super().__init__(f"{signal_name} after {epochs_done} of {epochs} epochs")
        self.signal_name, self.epochs_done, self.epochs = signal_name, epochs_done, epochs
        self.history = history  # the finished epochs' (composer.training.epochs.History)


class _Flag:
    def __init__(self):
        self.signal_name = None

    def requested(self) -> bool:
        return self.signal_name is not None


@contextlib.contextmanager
def watch():
    flag = _Flag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.signal_name is not None:
            raise KeyboardInterrupt
        flag.signal_name = signal.Signals(signum).name

    saved = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
