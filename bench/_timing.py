"""What both benchmarks share: timing ``model.fit`` runs side by side, and the summary numbers.

Keras is imported inside functions only, so a benchmark sets ``TF_CPP_MIN_LOG_LEVEL`` first.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Timed:
    """What every contender records: its repetitions' wall seconds and losses over ``examples``
    examples each. A contender adds ``warm_up(steps, batch_size)`` and
    ``epoch(batch_size) -> (seconds, loss)``; ``warm_up`` and ``alternate`` below drive them."""

    name: str
    examples: int
    seconds: list[float] = field(default_factory=list, kw_only=True)
    losses: list[float] = field(default_factory=list, kw_only=True)

    @property
    def rates(self) -> list[float]:
        return [self.examples / s for s in self.seconds]

    @property
    def median_rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def spread(self) -> str:
        return f"{rate(min(self.rates))}..{rate(max(self.rates))}"


class Run(Timed):
    """One Keras contender: a compiled model and the arrays it trains on."""

    def __init__(self, name, model, x, y, examples):
        super().__init__(name, examples)
        self.model, self.x, self.y = model, x, y

    def warm_up(self, steps: int, batch_size: int) -> None:
        """One untimed ``fit`` of ``steps`` steps: traces (with XLA, compiles) the train function,
        which later ``fit`` calls reuse."""
        import keras

        def head(a):
            return a[:steps * batch_size]

        fit_once(self.model, keras.tree.map_structure(head, self.x),
                 keras.tree.map_structure(head, self.y), batch_size)

    def epoch(self, batch_size: int) -> tuple[float, float]:
        return fit_once(self.model, self.x, self.y, batch_size)


def fit_once(model, x, y, batch_size: int, sample_weight=None) -> tuple[float, float]:
    """One ``fit`` epoch over ``x``: wall seconds from the start of its first step to the end
    of the epoch, and the epoch's mean training loss.

    The clock leaves out what ``fit`` does once per call before its first step (wrapping the
    arrays in a dataset): a real epoch amortises that over thousands of steps, a timed one over a
    few dozen. It stops at ``on_epoch_end``, not at the last ``on_train_batch_end``: on a GPU
    the steps are dispatched asynchronously (and Keras may run batch-end callbacks on a thread),
    so the last step has surely run only once ``fit`` has read the epoch's metrics back.
    """
    import keras

    class Steps(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.end = time.perf_counter()

    steps = Steps()
    history = model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, callbacks=[steps],
                        sample_weight=sample_weight)
    return steps.end - steps.start, float(history.history["loss"][-1])


def paired_ratio(a: Run, b: Run) -> float:
    """Median over repetitions of a's rate over b's in the same repetition: the two ran back to
    back, so a slow spell of the machine mostly cancels out."""
    return statistics.median(ra / rb for ra, rb in zip(a.rates, b.rates))


def warm_up(runs: list[Timed], steps: int, batch_size: int) -> dict[str, float]:
    """Each run's untimed warm-up, in turn; returns the wall seconds each took."""
    seconds = {}
    for run in runs:
        start = time.perf_counter()
        run.warm_up(steps, batch_size)
        seconds[run.name] = time.perf_counter() - start
    return seconds


def alternate(runs: list[Timed], reps: int, batch_size: int) -> None:
    """Times ``reps`` epochs of every run, interleaved so drift of the machine (thermal state,
    other processes) hits all of them alike; the order flips every repetition (ABBA...)."""
    for rep in range(reps):
        for run in (runs if rep % 2 == 0 else runs[::-1]):
            seconds, loss = run.epoch(batch_size)
            run.seconds.append(seconds)
            run.losses.append(loss)


def param_counts(model) -> tuple[int, int]:
    """(trainable, non-trainable) scalar counts."""
    return (sum(math.prod(w.shape) for w in model.trainable_weights),
            sum(math.prod(w.shape) for w in model.non_trainable_weights))


def rate(value: float) -> str:
    """Examples per second, as a short human number (``12.3k``)."""
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"
