"""Composer's training loop under ``KERAS_BACKEND=jax``: the data on the device, many steps per
dispatch.

Keras ``fit`` slices every batch from NumPy on the host and copies it to the device, one
dispatch per step (or an unrolled Python loop of ``steps_per_execution`` steps); on an H200 that
left MMoE-8 at a quarter of what the same compiled model trains at in a scanned loop (issue 16).
This loop keeps Keras's own pieces -- the trainer's ``train_step(state, batch)``, the same
stateless step ``fit`` jits (``stateless_call``, the optimizer's ``stateless_apply``; GradNorm and
PE-LTR's own JAX step in composer/training/jax_steps.py) -- so layers stay Keras layers and the
model saves and reloads as before; only the feed and the dispatch change:

- the training rows (packed inputs, labels, per-task weights) go to the device once when they fit
  the device-memory budget (``budget_bytes``; default a share of the free memory);
- each epoch draws a permutation on the device (``jax.random.permutation`` of
  ``fold_in(PRNGKey(seed), epoch)``: the order depends on the seed and the epoch only, so a resumed
  run sees the same batches);
- one jitted ``lax.scan`` runs up to ``max_scan_steps`` steps per dispatch, gathering each batch
  from the device arrays by the permutation; the last partial batch is one more step, so every row
  trains once per epoch as in ``fit``;
- rows that do not fit the budget stream in chunks: the host gathers the next chunk by the same
  permutation and ``device_put``s it on a background thread while the current chunk trains, into
  the same scanned step;
- prediction (validation every epoch) runs in large fixed-size batches on the device;
- under ``distribution: data_parallel`` on one process the rows are replicated and every batch is
  sharded over the devices' ``batch`` axis (a sharding constraint inside the step), so XLA
  all-reduces the gradients as under Keras's own DataParallel;
- under ``distribution: model_parallel`` the same, on the mesh's batch axis; every variable keeps
  the layout Keras gave it (a large table's rows split over the model axis, its optimizer slots
  alike): the jitted steps return the state with the shardings it came in with.
"""
from __future__ import annotations

import math
import os
import threading

import jax
import jax.numpy as jnp
import keras
import numpy as np

BUDGET_SHARE = 0.5  # of the device's free memory (of the available host memory on a CPU device)
MAX_SCAN_STEPS = 1024  # steps per dispatch: long enough to hide dispatch, short enough to stop soon
PREDICT_BATCH = 32768  # rows per prediction dispatch


def tree_bytes(tree) -> int:
    return int(sum(np.asarray(a).nbytes for a in jax.tree.leaves(tree)))


def free_device_bytes() -> int:
    """Free memory of the first device: the allocator's figures on a GPU or TPU, the host's
    available memory on a CPU device (which reports none)."""
    stats = None
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 -- some PJRT plugins raise instead of returning None
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def default_budget() -> int:
    return int(free_device_bytes() * BUDGET_SHARE)


def _batch_sharding():
    """(replicated, batch-sharded) NamedShardings of the current keras.distribution's mesh; None
    without a distribution."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return None
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = distribution.device_mesh.backend_mesh
    axis = distribution.batch_dim_name
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec(axis))


class ScanLoop:
    """Trains ``trainer`` (a compiled PlanTrainer) on ``(x, y, w)``, one epoch per ``train_epoch``.

    The training state (trainable, non-trainable, optimizer and metric variables' values) lives
    in ``self.state`` between epochs; ``sync()`` writes it back into the Keras variables.
    """

    def __init__(self, trainer, x, y, w, *, batch_size: int, seed: int, budget_bytes: int | None = None,
                 max_scan_steps: int = MAX_SCAN_STEPS):
        self.trainer = trainer
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rows = int(len(next(iter(x.values()))))
        self.host = (x, y, w)
        self.max_scan_steps = int(max_scan_steps)
        self.shardings = _batch_sharding()
        self.budget = int(budget_bytes) if budget_bytes else default_budget()
        row_bytes = max(1, tree_bytes(self.host) // max(self.rows, 1))
        self.resident = tree_bytes(self.host) <= self.budget
        # streamed: two chunks (the one training, the one arriving) within the budget
        chunk = max(self.batch_size, (self.budget // 2 // row_bytes) // self.batch_size * self.batch_size)
        self.chunk_rows = self.rows if self.resident else chunk
        first = jax.tree.map(lambda a: a[: min(self.batch_size, self.rows)], self.host)
        trainer._symbolic_build(data_batch=first)  # the optimizer's slots, as fit builds them
        self.state = self._read_state()
        self.state_shardings = self._state_shardings(self.state)
        self.state = self._place(self.state)
        self.device = self._put(self.host) if self.resident else None
        self._scan = jax.jit(self._scan_steps, static_argnums=3, donate_argnums=0, out_shardings=self.state_shardings)
        self._step = jax.jit(self._one_step, donate_argnums=0, out_shardings=self.state_shardings)
        self._permutation = jax.jit(self._draw_permutation, static_argnums=1)
        self._predict = jax.jit(self._predict_batch, static_argnums=4)
        self._kept = {}
        self._logs = jax.jit(self._metrics_result)
        trainer.reset_metrics()
        self._metric_zeros = [np.asarray(v.value) for v in trainer.metrics_variables]

    # -- state ---------------------------------------------------------------------------
    def _state_shardings(self, state):
        """Under a distribution, each state array's sharding on the mesh (a variable made outside
        the distribution's scope, e.g. the optimizer's step counter, replicated); None without."""
        if self.shardings is None:
            return None
        from jax.sharding import NamedSharding

        mesh = self.shardings[0].mesh
        return jax.tree.map(lambda a: a.sharding if isinstance(a.sharding, NamedSharding) and a.sharding.mesh == mesh
                            else self.shardings[0], state)

    def _place(self, state):
        return state if self.state_shardings is None else jax.device_put(state, self.state_shardings)

    def _read_state(self):
        t = self.trainer
        return ([v.value for v in t.trainable_variables], [v.value for v in t.non_trainable_variables],
                [v.value for v in t.optimizer.variables], [v.value for v in t.metrics_variables])

    def sync(self) -> None:
        """Write the state into the Keras variables (for saving, predicting, checkpoints)."""
        t = self.trainer
        for refs, values in zip((t.trainable_variables, t.non_trainable_variables, t.optimizer.variables,
                                 t.metrics_variables), self.state):
            for ref, value in zip(refs, values):
                ref.assign(value)

    def reload(self) -> None:
        """Read the state back from the Keras variables (after a checkpoint was loaded into them)."""
        self.state = self._place(self._read_state())

    def weights(self):
        """A copy of the model's weights (trainable and non-trainable): early stopping's best."""
        return [jnp.copy(v) for v in self.state[0] + self.state[1]]

    def set_weights(self, values) -> None:
        n = len(self.state[0])
        self.state = self._place(([jnp.asarray(v) for v in values[:n]], [jnp.asarray(v) for v in values[n:]],
                                  self.state[2], self.state[3]))

    # -- the jitted pieces ---------------------------------------------------------------
    def _put(self, tree):
        if self.shardings is None:
            return jax.device_put(tree)
        return jax.device_put(tree, self.shardings[0])

    def _gather(self, data, index):
        batch = jax.tree.map(lambda a: jnp.take(a, index, axis=0), data)
        if self.shardings is not None:
            batch = jax.lax.with_sharding_constraint(batch, self.shardings[1])
        return batch

    def _scan_steps(self, state, data, perm_and_start, steps: int):
        perm, start = perm_and_start

        def body(state, i):
            index = jax.lax.dynamic_slice_in_dim(perm, (start + i) * self.batch_size, self.batch_size)
            _, state = self.trainer.train_step(state, self._gather(data, index))
            return state, None

        state, _ = jax.lax.scan(body, state, jnp.arange(steps))
        return state

    def _one_step(self, state, batch):
        return self.trainer.train_step(state, batch)[1]

    def _draw_permutation(self, epoch, rows: int):
        from ..distributed import epoch_permutation

        return epoch_permutation(self.seed, epoch, rows)

    def _metrics_result(self, metrics_values):
        with keras.StatelessScope(state_mapping=list(zip(self.trainer.metrics_variables, metrics_values))):
            return self.trainer.get_metrics_result()

    def _predict_batch(self, trainable, non_trainable, data, start, size: int):
        rows = jax.tree.leaves(data)[0].shape[0]
        index = jnp.minimum(start + jnp.arange(size), rows - 1)
        y_pred, _ = self.trainer.stateless_call(trainable, non_trainable, self._gather(data, index), training=False)
        return y_pred

    # -- one epoch -----------------------------------------------------------------------
    def permutation(self, epoch: int):
        return self._permutation(jnp.asarray(epoch, dtype="int32"), self.rows)

    def train_epoch(self, epoch: int, should_stop=lambda: False) -> dict[str, float]:
        """Train one epoch in place; returns the epoch's logs (mean loss, per-task losses and
        weights, as Keras fit logs them). ``should_stop()`` is asked between dispatches."""
        t, o = self.state[:2], self.state[2]
        self.state = self._place((*t, o, [jnp.asarray(z) for z in self._metric_zeros]))
        perm = self.permutation(epoch)
        if self.resident:
            self._train_rows(self.device, perm, self.rows, should_stop)
        else:
            self._train_chunks(np.asarray(perm), should_stop)
        return {k: float(v) for k, v in self._logs(self.state[3]).items()}

    def _train_rows(self, data, perm, rows: int, should_stop) -> None:
        """Every row of ``data`` once, in ``perm`` order: scans of full batches, then the rest."""
        full = rows // self.batch_size
        done = 0
        while done < full and not should_stop():
            steps = min(self.max_scan_steps, full - done)
            self.state = self._scan(self.state, data, (perm, jnp.asarray(done, dtype="int32")), steps)
            done += steps
        if rows % self.batch_size and not should_stop():
            batch = self._gather(data, perm[full * self.batch_size: rows])
            self.state = self._step(self.state, batch)

    def _train_chunks(self, perm: np.ndarray, should_stop) -> None:
        """Streamed: chunk k+1 is gathered on the host and copied while chunk k trains."""
        bounds = [(a, min(a + self.chunk_rows, self.rows)) for a in range(0, self.rows, self.chunk_rows)]

        def fetch(a, b, out):
            out.append(self._put(jax.tree.map(lambda v: v[perm[a:b]], self.host)))

        pending = []
        fetch(*bounds[0], pending)
        for k, (a, b) in enumerate(bounds):
            chunk = pending.pop()
            worker = None
            if k + 1 < len(bounds):
                worker = threading.Thread(target=fetch, args=(*bounds[k + 1], pending), daemon=True)
                worker.start()
            self._train_rows(chunk, jnp.arange(b - a, dtype="int32"), b - a, should_stop)
            if worker is not None:
                worker.join()
            if should_stop():
                return

    # -- prediction ----------------------------------------------------------------------
    def predict(self, x, keep: str | None = None) -> dict[str, np.ndarray]:
        """Probabilities per task for host arrays ``x``, in fixed-size batches gathered on the
        device (the last one padded by repeating the final row, so one compiled shape serves every
        batch). ``keep``: a name under which ``x`` stays on the device for the next call (the
        valid split, predicted every epoch), when it fits the budget."""
        rows = int(len(next(iter(x.values()))))
        data = self._kept.get(keep) if keep else None
        if data is None:
            data = self._put(x)
            if keep and tree_bytes(x) <= self.budget - (tree_bytes(self.host) if self.resident else 0):
                self._kept[keep] = data
        size = min(PREDICT_BATCH, max(rows, 1))
        out = {}
        for a in range(0, rows, size):
            pred = self._predict(self.state[0], self.state[1], data, jnp.asarray(a, dtype="int32"), size)
            for task, p in pred.items():
                out.setdefault(task, []).append(np.asarray(p).reshape(-1)[: min(size, rows - a)])
        return {t: np.concatenate(parts) for t, parts in out.items()}

    def describe(self) -> str:
        mib = tree_bytes(self.host) / 2**20
        where = ("on the device" if self.resident else
                 f"streamed to the device in {math.ceil(self.rows / self.chunk_rows)} chunks of "
                 f"{self.chunk_rows:,} rows")
        return (f"{self.rows:,} training rows ({mib:,.1f} MiB) {where} (budget {self.budget / 2**20:,.0f} MiB); "
                f"up to {self.max_scan_steps} steps per dispatch")
