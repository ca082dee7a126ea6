"""Feeds: how one epoch of training rows reaches the trainer, per backend and data source.

Every feed trains exactly one epoch per ``train_epoch(epoch, should_stop)``, in an order that
depends only on (seed, epoch), so a resumed run sees the batches an uninterrupted one would:

- ``ScanFeed`` (JAX, one process): Composer's scanned loop with the data on the device
  (composer/training/jax_loop.py);
- ``KerasFeed`` (TensorFlow, torch, JAX across processes): one Keras ``fit`` epoch per call, on a
  tf.data pipeline (TensorFlow), permuted arrays (torch) or this process's part of every global
  batch (``distribution: data_parallel`` over several processes);
- ``StreamFeed``: a dataset read from disk in chunks (composer/training/streamed.py).

Each also predicts the valid split and reads and writes the training state (for early stopping's
best weights and the checkpoint).
"""
from __future__ import annotations

import numpy as np


def feed_for(exp, trainer, batch_size: int):
    import keras

    if getattr(exp.dataset, "streaming", False):
        from .streamed import StreamFeed

        return StreamFeed(exp, trainer, batch_size)
    x, y, w = exp.arrays("train")
    if (keras.backend.backend() == "jax" and not exp.parallel.cluster.multi_process
            and exp.bp.training.loop == "auto"):
        return ScanFeed(exp, trainer, x, y, w, batch_size)
    return KerasFeed(exp, trainer, x, y, w, batch_size)


class Feed:
    """What every feed shares: the valid split, and the state kept in the Keras variables."""

    def __init__(self, exp, trainer):
        self.exp, self.trainer = exp, trainer
        self._valid = None

    def valid_arrays(self):
        if self._valid is None:
            self._valid = self.exp.arrays("valid")
        return self._valid

    def valid_targets(self):
        _, y, w = self.valid_arrays()
        return y, w

    def predict_valid(self) -> dict[str, np.ndarray]:
        x, _, _ = self.valid_arrays()
        out = self.exp.parallel.predict(self.exp.model, x)  # on this process alone
        return {t: np.asarray(v).reshape(-1) for t, v in out.items()}  # tasks, and a risk's imputation

    def _variables(self):
        return self.trainer.trainable_variables + self.trainer.non_trainable_variables

    def weights(self):
        from ..distributed import host_array

        return [host_array(v.value) for v in self._variables()]

    def set_weights(self, values) -> None:
        for ref, value in zip(self._variables(), values):
            ref.assign(value)

    def state_arrays(self):
        import keras

        t = self.trainer
        as_np = keras.ops.convert_to_numpy
        return ([as_np(v) for v in t.trainable_variables], [as_np(v) for v in t.non_trainable_variables],
                [as_np(v) for v in t.optimizer.variables])

    def sync(self) -> None:
        """Nothing to do where the state lives in the Keras variables."""

    def reload(self) -> None:
        """Nothing to do where the state lives in the Keras variables."""

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return ""


class ScanFeed(Feed):
    def __init__(self, exp, trainer, x, y, w, batch_size: int):
        from .jax_loop import ScanLoop

        super().__init__(exp, trainer)
        training = exp.bp.training
        budget = getattr(training, "device_budget_mb", None)
        self.loop = ScanLoop(trainer, x, y, w, batch_size=batch_size, seed=training.seed,
                             budget_bytes=budget * 2**20 if budget else None)

    def train_epoch(self, epoch, should_stop):
        with self.exp.parallel.scope():  # traced as Keras fit traces (random ops follow the distribution)
            return self.loop.train_epoch(epoch, should_stop)

    def predict_valid(self):
        x, _, _ = self.valid_arrays()
        return self.loop.predict(x, keep="valid")

    def weights(self):
        return self.loop.weights()

    def set_weights(self, values) -> None:
        self.loop.set_weights(values)

    def state_arrays(self):
        t, n, o, _ = self.loop.state
        return [np.asarray(v) for v in t], [np.asarray(v) for v in n], [np.asarray(v) for v in o]

    def sync(self) -> None:
        self.loop.sync()

    def reload(self) -> None:
        self.loop.reload()

    def describe(self) -> str:
        return self.loop.describe()


class KerasFeed(Feed):
    def __init__(self, exp, trainer, x, y, w, batch_size: int):
        import keras

        super().__init__(exp, trainer)
        self.data, self.batch_size, self.seed = (x, y, w), batch_size, exp.bp.training.seed
        self.backend = keras.backend.backend()
        self.sharded = exp.parallel.batches(x, y, w, batch_size, True, self.seed) if exp.parallel.shards_data else None
        self._tensors = None
        with exp.parallel.scope():  # the optimizer's slots exist before a checkpoint loads into them
            trainer.optimizer.build(trainer.trainable_variables)

    def _fit_args(self, epoch: int) -> dict:
        if self.sharded is not None:  # this process's part of every global batch
            self.sharded.epochs_begun = epoch  # whether or not Keras calls its on_epoch_begin
            self.sharded.order = self.sharded._order(epoch)
            return {"x": self.sharded, "shuffle": False}
        if self.backend == "tensorflow":
            from ..data.tf_pipeline import make_dataset, to_tensors

            if self._tensors is None:
                self._tensors = to_tensors(self.data)
            return {"x": make_dataset(*self.data, self.batch_size, True, self.seed, epoch=epoch,
                                      tensors=self._tensors), "shuffle": False}
        x, y, w = self.data
        rows = len(next(iter(x.values())))
        if self.backend == "jax":  # the scanned loop's order
            from ..distributed import epoch_permutation

            order = np.asarray(epoch_permutation(self.seed, epoch, rows))
        else:
            order = np.random.default_rng([self.seed, epoch]).permutation(rows)
        take = lambda d: {k: v[order] for k, v in d.items()}  # noqa: E731
        return {"x": take(x), "y": take(y), "sample_weight": take(w), "batch_size": self.batch_size,
                "shuffle": False}

    def train_epoch(self, epoch, should_stop):
        with self.exp.parallel.scope():
            history = self.trainer.fit(epochs=1, verbose=0, callbacks=[stop_callback(should_stop)],
                                       **self._fit_args(epoch))
        return {k: float(v[-1]) for k, v in history.history.items() if v}


def stop_callback(should_stop):
    """A Keras callback ending ``fit`` after the batch during which a signal came."""
    import keras

    class StopOnSignal(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if should_stop():
                self.model.stop_training = True

    return StopOnSignal()
