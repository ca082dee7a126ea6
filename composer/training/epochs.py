"""The epoch loop every backend shares: train one epoch through a feed (composer/training/feeds.py),
validate with exact AUC, log, stop early, checkpoint, and stop cleanly on a signal.

Early stopping follows ``keras.callbacks.EarlyStopping`` (monitor ``val_<metric>``, ``patience``,
``restore_best_weights``) but lives here, because its state (best value, best epoch, wait, best
weights) must go into the checkpoint and come back on ``--resume``. Each epoch's history row also
says how long training and validation took (``time_train_s``, ``time_valid_s``, ``valid_share``).
"""
from __future__ import annotations

import math
import time

import numpy as np

from . import checkpoint as ckpt_io
from .interrupt import Interrupted, watch


class History:
    """What ``fit`` returns: ``history[name]`` is one value per finished epoch (as Keras's)."""

    def __init__(self, history: dict | None = None):
        self.history = {k: list(v) for k, v in (history or {}).items()}

    @property
    def epoch(self) -> list[int]:
        return list(range(len(next(iter(self.history.values()), []))))

    def append(self, logs: dict) -> None:
        done = len(self.epoch)
        for key, value in logs.items():
            self.history.setdefault(key, [float("nan")] * done).append(float(value))
        for key, values in self.history.items():
            if len(values) <= done:
                values.append(float("nan"))


class EarlyStopping:
    """Keras's rule: the best epoch by ``val_<monitor>``; stop after ``patience`` epochs without
    improvement (never after the first); the best weights restored at the end."""

    def __init__(self, monitor: str, patience: int, state: dict | None = None, best_weights=None):
        self.key = f"val_{monitor}"
        self.lower_is_better = monitor == "loss"
        self.patience = int(patience)
        state = state or {}
        self.best = state.get("best")
        self.best_epoch = int(state.get("best_epoch", 0))
        self.wait = int(state.get("wait", 0))
        self.best_weights = best_weights

    def state(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def _improves(self, value) -> bool:
        if self.best is None:
            return not math.isnan(value)
        return value < self.best if self.lower_is_better else value > self.best

    def update(self, epoch: int, logs: dict, weights) -> bool:
        """After an epoch: True to stop. ``weights()`` copies the current weights."""
        value = logs.get(self.key)
        if value is None:
            return False
        if self.best_weights is None:
            self.best_weights, self.best_epoch = weights(), epoch
        self.wait += 1
        if self._improves(value):
            self.best, self.best_epoch, self.best_weights, self.wait = float(value), epoch, weights(), 0
            return False
        return self.wait >= self.patience and epoch > 0


def validation_logs(exp, feed, y_valid, w_valid) -> dict[str, float]:
    """Exact AUC per task on the valid split (``val_auc_<task>``, their mean ``val_auc``) and,
    from the same predictions, the valid loss (``val_loss``, ``val_loss_<task>``); process 0's
    values on every process, so that all stop at the same epoch."""
    from ..metrics import auc
    from .loop import valid_loss

    pred = feed.predict_valid()
    values = []
    for task in exp.tasks:
        keep = w_valid[task] > 0
        value = auc(y_valid[task][keep, 0], np.asarray(pred[task]).reshape(-1)[keep])
        values.append(float("nan") if value is None else value)
    losses = valid_loss(exp, y_valid, w_valid, {t: np.asarray(p).reshape(-1, 1) for t, p in pred.items()})
    agreed = exp.parallel.agree(values + list(losses.values()))
    values = agreed[:len(values)]
    logs = {f"val_auc_{task}": value for task, value in zip(exp.tasks, values)}
    known = [v for v in values if not np.isnan(v)]
    logs["val_auc"] = float(np.mean(known)) if known else float("nan")
    logs.update(zip(losses, agreed[len(values):]))
    return logs


def run_epochs(exp, trainer, feed, epochs: int, batch_size: int, *, verbose: int = 1, checkpoint_dir=None,
               resume=None) -> History:
    training = exp.bp.training
    expected = ckpt_io.fingerprint(exp, batch_size)
    history, start, elapsed = History(), 0, 0.0
    stopper = EarlyStopping(training.monitor, training.patience)
    if resume is not None:
        ckpt_io.check_matches(resume, trainer, expected, checkpoint_dir or "checkpoint")
        ckpt_io.load_into(resume, trainer)
        feed.reload()
        history, start, elapsed = History(resume.history), resume.epochs_done, resume.elapsed_s
        stopper = EarlyStopping(training.monitor, training.patience, resume.early_stopping, resume.best)
    y_valid, w_valid = feed.valid_targets()
    if verbose and feed.describe():
        print(feed.describe(), flush=True)
    stopped = start >= epochs
    with watch() as signal_flag:
        epoch = start
        while not stopped and epoch < epochs:
            t0 = time.perf_counter()
            logs = feed.train_epoch(epoch, signal_flag.requested)
            t1 = time.perf_counter()
            if signal_flag.requested():  # the unfinished epoch is dropped: resume reruns it
                _keep_best(feed, stopper)
                raise Interrupted(signal_flag.signal_name, epoch, epochs, history)
            feed.sync()
            if trainer.end_epoch(logs):  # a loss strategy's epoch-boundary state (DWA), before the checkpoint
                feed.reload()
            logs.update(validation_logs(exp, feed, y_valid, w_valid))
            t2 = time.perf_counter()
            logs.update(time_train_s=t1 - t0, time_valid_s=t2 - t1, valid_share=(t2 - t1) / max(t2 - t0, 1e-9))
            history.append(logs)
            stopped = stopper.update(epoch, logs, feed.weights)
            elapsed += t2 - t0
            if checkpoint_dir is not None:
                trainable, non_trainable, optimizer = feed.state_arrays()
                ckpt_io.write(checkpoint_dir, ckpt_io.Checkpoint(
                    epochs_done=epoch + 1, history=history.history, early_stopping=stopper.state(),
                    fingerprint=expected, trainable=trainable, non_trainable=non_trainable, optimizer=optimizer,
                    best=None if stopper.best_weights is None else [np.asarray(v) for v in stopper.best_weights],
                    elapsed_s=elapsed))
            if verbose:
                print(_epoch_line(epoch, epochs, logs, exp.tasks), flush=True)
            epoch += 1
            if signal_flag.requested():
                _keep_best(feed, stopper)
                raise Interrupted(signal_flag.signal_name, epoch, epochs, history)
    _keep_best(feed, stopper)
    return history


def _keep_best(feed, stopper) -> None:
    """The model ends with early stopping's best weights (Keras's restore_best_weights)."""
    if stopper.best_weights is not None:
        feed.set_weights(stopper.best_weights)
    feed.sync()


def _epoch_line(epoch: int, epochs: int, logs: dict, tasks) -> str:
    parts = [f"epoch {epoch + 1}/{epochs}", f"{logs['time_train_s'] + logs['time_valid_s']:.1f}s "
             f"(valid {100 * logs['valid_share']:.0f}%)", f"loss: {logs.get('loss', float('nan')):.4f}"]
    parts += [f"val_auc_{t}: {logs[f'val_auc_{t}']:.4f}" for t in tasks if f"val_auc_{t}" in logs]
    parts.append(f"val_loss: {logs.get('val_loss', float('nan')):.4f}")
    if "rows_per_s" in logs:  # a streamed epoch: how fast rows came and how long training waited
        parts += [f"rows_per_s: {logs['rows_per_s']:,.0f}", f"input_wait: {logs['input_wait']:.3f}"]
    return " - ".join(parts)
