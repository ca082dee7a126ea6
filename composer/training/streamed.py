"""Feeding Keras from a streamed dataset (``composer.data.streaming``), on every Keras backend.

``StreamBatches`` is a ``keras.utils.PyDataset``: a background thread reads one split's cached
rows a batch of the file at a time, packs them with the run's ``Preprocessor`` (the in-memory
path's ``Experiment.arrays_of``), mixes them in a shuffle buffer of ``training.shuffle_buffer``
rows and queues batches; Keras takes them in order. The buffer is refilled as it empties: when it
holds ``shuffle_buffer`` rows, it is permuted and all but half of it leaves as batches, the rest
mixing with the next rows; at the end of the split the remainder leaves in a last permutation.
Every row leaves exactly once per epoch, so an epoch has ``ceil(rows / batch_size)`` batches like
the in-memory path; with the same seed the order is the same on every run.

``InputStats`` puts ``rows_per_s`` and ``input_wait`` on the progress line and in the history:
rows trained per second of the epoch so far, and the share of that time spent inside
``StreamBatches.__getitem__`` waiting for the next batch. Under JAX Keras calls it from the
training loop, so this is the loop's own wait. Under TensorFlow Keras wraps a PyDataset in
``tf.data.Dataset.from_generator`` with a prefetch, so it is the wait of that prefetch thread: it
still shows when input is the bottleneck, but it also counts waits that the prefetch buffer hid
from the training loop.
Neither counts the CPU the reading thread takes from the model's own ops on a small machine
(``bench/input_pipeline.py`` measures that for the in-memory path).
"""
from __future__ import annotations

import math
import queue
import threading
import time

import keras
import numpy as np

from .feeds import Feed

_END = object()
PREFETCH_ROWS = 65536


def _length(item) -> int:
    return len(next(iter(item[0].values())))


class StreamBatches(keras.utils.PyDataset):
    """Batches of packed chunks, in order (``shuffle_rows=0``) or through a shuffle buffer.

    Args:
        chunks: a function returning an iterator of chunks, each a tuple of dicts of arrays with
            one row per example (``(x, y, w)`` for training, ``(x,)`` for prediction).
        rows: rows in one pass over ``chunks()`` (the split's row count).
        batch_size: rows per batch; the last batch of a pass holds the remainder.
        shuffle_rows: the shuffle buffer's size in rows (0: file order).
        seed: the buffer's permutations come from ``(seed, pass number)``.
    """

    def __init__(self, chunks, rows: int, batch_size: int, *, shuffle_rows: int = 0, seed: int = 0):
        super().__init__(workers=1, use_multiprocessing=False)
        self.chunks = chunks
        self.rows = int(rows)
        self.batch_size = int(batch_size)
        self.shuffle_rows = int(shuffle_rows)
        self.seed = int(seed)
        # batches queued ahead: about PREFETCH_ROWS rows (a chunk's worth), at least 2 batches
        self.capacity = max(2, math.ceil(PREFETCH_ROWS / self.batch_size))
        self.wait_s = 0.0  # time spent in __getitem__ waiting for the queue, since creation
        self.passes = 0  # passes started
        self.rows_per_pass: list[int] = []  # rows served by each completed pass
        self._rows_now = 0
        self._next = 0
        self._thread = self._stop = self._queue = None

    @property
    def num_batches(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index):
        if index == 0:
            self._start()
        elif index != self._next:
            raise IndexError(f"a stream is read in order: batch {index} asked for, {self._next} is next")
        stop, waiting = self._stop, self._queue
        t0 = time.perf_counter()
        while True:  # a closed stream ends a waiting reader (a tf.data thread may be one)
            try:
                item = waiting.get(timeout=0.1)
                break
            except queue.Empty:
                if stop.is_set():
                    raise RuntimeError("the stream was closed") from None
        self.wait_s += time.perf_counter() - t0
        if isinstance(item, BaseException):
            raise item
        if item is _END:
            raise RuntimeError(f"the stream ended after {self._rows_now} of {self.rows} rows")
        self._next = index + 1
        self._rows_now += _length(item)
        if self._next == self.num_batches:
            self.rows_per_pass.append(self._rows_now)
        return item

    # -- the producer thread -----------------------------------------------------------------------
    def _start(self) -> None:
        self.close()
        self.passes += 1
        rng = np.random.default_rng([self.seed, self.passes]) if self.shuffle_rows else None
        self._stop, self._queue = threading.Event(), queue.Queue(maxsize=self.capacity)
        self._rows_now, self._next = 0, 0
        self._thread = threading.Thread(target=self._produce, args=(self._stop, self._queue, rng),
                                        name="composer-stream", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the producer thread, if one runs."""
        if self._thread is None:
            return
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread = None

    def _produce(self, stop, out, rng) -> None:
        def put(item) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            buffer = RowBuffer()
            for chunk in self.chunks():
                if stop.is_set():
                    return
                buffer.add(chunk)
                if self.shuffle_rows:
                    if len(buffer) >= max(self.shuffle_rows, self.batch_size):
                        keep = self.shuffle_rows // 2
                        cut = (len(buffer) - keep) // self.batch_size * self.batch_size
                    else:
                        cut = 0
                else:
                    cut = len(buffer) // self.batch_size * self.batch_size
                for batch in buffer.take(cut, self.batch_size, rng):
                    if not put(batch):
                        return
            for batch in buffer.take(len(buffer), self.batch_size, rng):
                if not put(batch):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)


class RowBuffer:
    """Rows waiting to be batched, in preallocated slots: a chunk is written into free slots and
    a batch is gathered from used ones, so memory stays at the largest number of rows held,
    without the copies that concatenating chunks would make."""

    def __init__(self):
        self.slots = None  # tuple of dicts of arrays, one row per slot
        self.used = np.zeros(0, dtype=np.int64)  # slots holding rows, oldest first
        self.free = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.used)

    def add(self, chunk) -> None:
        k = _length(chunk)
        if self.slots is None:
            self.slots = tuple({key: np.empty((0, *v.shape[1:]), dtype=v.dtype) for key, v in part.items()}
                               for part in chunk)
        if len(self.free) < k:
            self._grow(len(self.used) + k)
        where, self.free = self.free[:k], self.free[k:]
        for part, new in zip(self.slots, chunk):
            for key, values in new.items():
                part[key][where] = values
        self.used = np.concatenate([self.used, where])

    def _grow(self, capacity: int) -> None:
        size = len(next(iter(self.slots[0].values())))
        grown = tuple({k: np.empty((capacity, *v.shape[1:]), dtype=v.dtype) for k, v in part.items()}
                      for part in self.slots)
        for old, new in zip(self.slots, grown):
            for key in old:
                new[key][:size] = old[key]
        self.slots = grown
        self.free = np.concatenate([self.free, np.arange(size, capacity)])

    def take(self, rows: int, batch_size: int, rng):
        """Batches of ``rows`` rows: a random draw when ``rng`` is given, else the oldest rows."""
        if rows <= 0:
            return
        order = self.used[rng.permutation(len(self.used))] if rng is not None else self.used
        for start in range(0, rows, batch_size):
            index = order[start:min(start + batch_size, rows)]
            yield tuple({k: v[index] for k, v in part.items()} for part in self.slots)
        self.free = np.concatenate([self.free, order[:rows]])
        self.used = order[rows:]


class InputStats(keras.callbacks.Callback):
    """``rows_per_s`` and ``input_wait`` (share of the epoch so far spent waiting for input) in
    each batch's logs (the progress line) and each epoch's (the history)."""

    def __init__(self, feed: StreamBatches):
        super().__init__()
        self.feed = feed
        self.last: dict = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()
        self.w0 = self.feed.wait_s

    def on_train_batch_end(self, batch, logs=None):
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rows = min((batch + 1) * self.feed.batch_size, self.feed.rows)
        self.last = {"rows_per_s": rows / elapsed, "input_wait": (self.feed.wait_s - self.w0) / elapsed}
        if logs is not None:
            logs.update(self.last)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.last)


# -- training, prediction and reports on a streamed dataset ---------------------------------------
def packed(exp, split: str, targets: bool = True):
    """The packed chunks of one split: ``(x, y, w)`` per cached batch, or ``(x,)``."""
    for frame in exp.dataset.frames(split):
        if targets:
            yield exp.arrays_of(frame)
        else:
            yield (exp.pre.pack(frame, exp.graph.layout),)


def targets(exp, split: str):
    """Labels and per-task sample weights of a split, as ``Experiment.arrays`` gives them."""
    columns = list(dict.fromkeys(c for task in exp.bp.tasks for c in task.columns()))
    ys, ws = {t: [] for t in exp.tasks}, {t: [] for t in exp.tasks}
    for frame in exp.dataset.frames(split, columns=columns):
        labels, masks = exp.labels(frame)
        for t in exp.tasks:
            ys[t].append(np.where(labels[t] < 0, 0, labels[t]).astype("float32").reshape(-1, 1))
            ws[t].append(masks[t].astype("float32"))
    return ({t: np.concatenate(v) if v else np.zeros((0, 1), "float32") for t, v in ys.items()},
            {t: np.concatenate(v) if v else np.zeros((0,), "float32") for t, v in ws.items()})


class StreamFeed(Feed):
    """The epoch feed (composer/training/feeds.py) of a streamed dataset: one Keras ``fit`` epoch
    per call on ``StreamBatches``, whose pass ``epoch + 1`` shuffles by (seed, epoch + 1) whatever
    came before, so a resumed run reads the batches an uninterrupted one would."""

    def __init__(self, exp, trainer, batch_size: int):
        from ..blueprint.errors import BlueprintError

        training = exp.bp.training
        if getattr(training, "distribution", "none") != "none":
            raise BlueprintError("streaming trains on one device", key="training.distribution",
                                 hint="set distribution: none, or train in memory")
        super().__init__(exp, trainer)
        counts = exp.dataset.counts()
        self.train = StreamBatches(lambda: packed(exp, "train"), counts["train"], batch_size,
                                   shuffle_rows=training.shuffle_buffer, seed=training.seed)
        self.x_valid = StreamBatches(lambda: packed(exp, "valid", targets=False), counts["valid"], 8192)
        self.stats = InputStats(self.train)
        trainer.optimizer.build(trainer.trainable_variables)

    def train_epoch(self, epoch, should_stop):
        from .feeds import stop_callback

        self.train.passes = epoch
        history = self.trainer.fit(self.train, epochs=1, verbose=0, shuffle=False,
                                   callbacks=[self.stats, stop_callback(should_stop)])
        self.exp.timings.setdefault("stream_rows_per_epoch", []).extend(self.train.rows_per_pass[-1:])
        return {k: float(v[-1]) for k, v in history.history.items() if v}

    def valid_targets(self):
        return targets(self.exp, "valid")

    def predict_valid(self):
        out = self.exp.model.predict(self.x_valid, verbose=0)
        return {t: np.asarray(v).reshape(-1) for t, v in out.items()}  # tasks, and a risk's imputation

    def close(self):
        for feed in (self.train, self.x_valid):
            feed.close()


def predict_streaming(exp, split: str) -> dict[str, np.ndarray]:
    """``training.predict`` on a streamed split: one probability per row and task, in file order."""
    rows = exp.dataset.counts()[split]
    if rows == 0:
        return {t: np.zeros((0,), "float32") for t in exp.tasks}
    feed = StreamBatches(lambda: packed(exp, split, targets=False), rows, 8192)
    try:
        out = exp.model.predict(feed, verbose=0)
    finally:
        feed.close()
    return {t: np.asarray(out[t]).reshape(-1) for t in exp.tasks}


def report_rows(exp, split: str):
    """The columns a report reads (labels, scenario, group) of a streamed split, in file order."""
    import pandas as pd

    spec = exp.dataset.spec
    wanted = [c for task in exp.bp.tasks for c in task.columns()]
    wanted += [c for c in (exp.bp.scenarios.feature if exp.bp.scenarios else spec.scenario, spec.group) if c]
    frames = list(exp.dataset.frames(split, columns=list(dict.fromkeys(wanted))))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(dict.fromkeys(wanted)))
