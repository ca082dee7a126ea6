"""Training an experiment: Keras ``fit`` on TensorFlow and torch, Composer's scanned loop on JAX
(composer/training/jax_loop.py), the streamed path (composer/training/streamed.py); exact-AUC
validation every epoch, early stopping on the chosen metric with the best weights kept, and the
task weights and timings of a finished run.
"""
from __future__ import annotations

import time

import numpy as np

from .experiment import Experiment

def _optimizer(training):
    import keras

    cls = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
           "adagrad": keras.optimizers.Adagrad, "sgd": keras.optimizers.SGD,
           "rmsprop": keras.optimizers.RMSprop}[training.optimizer]
    return cls(learning_rate=training.learning_rate)


def _batches(x, y, w, batch_size, shuffle, seed, parallel=None):
    import keras

    if parallel is not None and parallel.shards_data:  # this process's part of each global batch
        return parallel.batches(x, y, w, batch_size, shuffle, seed), {"shuffle": False}
    if keras.backend.backend() == "tensorflow":
        from ..data.tf_pipeline import make_dataset

        return make_dataset(x, y, w, batch_size, shuffle, seed), {"shuffle": False}  # tf.data shuffles
    return (x, y, w), {"batch_size": batch_size, "shuffle": shuffle}


def _callbacks(exp: Experiment, x_valid, y_valid, w_valid):
    import keras

    from ..metrics import auc

    class ExactValidationAUC(keras.callbacks.Callback):
        """Exact AUC per task on the valid split (keras.metrics.AUC is a 200-threshold
        approximation), logged as val_auc_<task> and their mean val_auc; and, from the same
        predictions, the valid loss (val_loss, val_loss_<task>) whatever the monitor."""

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            pred = exp.parallel.predict(exp.model, x_valid)  # on this process alone
            values = []
            for task in exp.tasks:
                keep = w_valid[task] > 0
                value = auc(y_valid[task][keep, 0], np.asarray(pred[task])[keep, 0])
                values.append(float("nan") if value is None else value)
            losses = valid_loss(exp, y_valid, w_valid, pred)
            agreed = exp.parallel.agree(values + list(losses.values()))  # every process stops at the same epoch
            values = agreed[:len(values)]
            for task, value in zip(exp.tasks, values):
                logs[f"val_auc_{task}"] = value
            known = [v for v in values if not np.isnan(v)]
            logs["val_auc"] = float(np.mean(known)) if known else float("nan")
            logs.update(zip(losses, agreed[len(values):]))

    monitor = exp.bp.training.monitor
    return [ExactValidationAUC(),
            keras.callbacks.EarlyStopping(monitor=f"val_{monitor}", mode="min" if monitor == "loss" else "max",
                                          patience=exp.bp.training.patience, restore_best_weights=True,
                                          verbose=0)]


def valid_loss(exp: Experiment, y, w, pred) -> dict[str, float]:
    """The training loss on the valid rows, from predictions already made (no second pass, and
    no per-replica split of the valid rows, which MirroredStrategy cannot do for an odd count):
    {"val_loss": fused total, "val_loss_<task>": masked mean BCE of each trained task}, by the
    trainer's own ``plan_loss`` (the fusion's current weights or log-variances and the model's
    regularization terms count as in training); the means are over the whole split."""
    import keras

    trainer = exp.trainer
    total, losses = trainer.plan_loss(y, {t: np.asarray(pred[t], dtype="float32") for t in trainer.tasks}, w)
    per_task = {f"val_loss_{t}": float(keras.ops.convert_to_numpy(v)) for t, v in zip(trainer.tasks, losses)}
    return {"val_loss": float(keras.ops.convert_to_numpy(total)), **per_task}


def fit(exp: Experiment, verbose: int = 1, epochs: int | None = None, batch_size: int | None = None):
    """Train in place; returns the Keras History."""
    if getattr(exp.dataset, "streaming", False):
        from .streamed import fit_streaming

        return fit_streaming(exp, verbose, epochs, batch_size)
    training = exp.bp.training
    batch_size = batch_size or training.batch_size
    trainer = start_training(exp)
    parallel = exp.parallel
    counts = exp.dataset.counts()
    parallel.check_batch_size(batch_size, rows=counts["train"])
    for part in ("train", "valid"):
        if counts[part] == 0:
            from ..data.errors import DataError

            raise DataError(f"the {part} split of {exp.data_name} has no rows ({counts['train']:,} train, "
                            f"{counts['valid']:,} valid, {counts['test']:,} test)", key="data",
                            hint="read more rows (--rows), or check the data's split rule: early stopping "
                            "needs valid rows")
    x, y, w = exp.arrays("train")
    xv, yv, wv = exp.arrays("valid")
    data, kwargs = _batches(x, y, w, batch_size, True, training.seed, parallel)
    if isinstance(data, tuple):
        kwargs.update(x=data[0], y=data[1], sample_weight=data[2])
    else:
        kwargs["x"] = data
    t0 = time.perf_counter()
    with parallel.scope():
        history = trainer.fit(epochs=epochs or training.epochs, verbose=verbose,
                              callbacks=_callbacks(exp, xv, yv, wv), **kwargs)
    finish_training(exp, history, time.perf_counter() - t0, len(next(iter(x.values()))))
    return history


def start_training(exp: Experiment):
    """The seeded trainer (``PlanTrainer``), compiled with the blueprint's optimizer in the
    distribution's scope; shared by in-memory and streamed ``fit``. Sets ``exp.parallel`` (one
    device when ``prepare`` did not set it) and ``exp.trainer``."""
    import keras

    from ..distributed import Parallel
    from .plan_trainer import PlanTrainer

    keras.utils.set_random_seed(exp.bp.training.seed)
    if exp.parallel is None:
        exp.parallel = Parallel()
    trainer = exp.parallel.trainer(PlanTrainer, exp.model, exp.plan, shared_layers=_shared_layers(exp))
    with exp.parallel.scope():
        trainer.compile(optimizer=_optimizer(exp.bp.training))
    exp.trainer = trainer
    return trainer


def finish_training(exp: Experiment, history, seconds: float, train_rows: int) -> None:
    """Timings and task weights of a finished ``fit``; the model made local to this process."""
    exp.timings["train_s"] = seconds
    exp.timings["epochs_run"] = len(history.history.get("loss", []))
    exp.timings["train_examples_per_s"] = train_rows * exp.timings["epochs_run"] / seconds
    exp.task_weights = exp.trainer.task_weight_values()
    exp.model = exp.parallel.host_model(exp.model)  # predict, report and save on this process alone


def _shared_layers(exp):
    """The Keras layers a gradient strategy differentiates: GradNorm's last shared layer W, or
    PE-LTR's shared parameters theta (every shared block)."""
    plan, graph = exp.plan, exp.graph
    tasks = [t.task for t in plan.trained]
    if plan.fusion == "gradnorm":
        nid = plan.params.get("shared_layer") or graph.last_shared_layer(tasks)
        nids = [nid] if nid else []
    elif plan.fusion == "pareto":
        nids = [n for n in graph.shared_nodes(tasks) if graph.nodes[n].params]
    else:
        return []
    if not nids:
        from ..blueprint.errors import BlueprintError

        raise BlueprintError(f"{plan.fusion} needs a block with weights shared by every task",
                             key="loss", hint="this blueprint shares only the embeddings")
    layers = []
    for nid in nids:
        from ..compiler import BuildContext

        name = BuildContext.layer_name_of(nid)
        try:
            layers.append(exp.model.get_layer(name))
        except ValueError:
            from ..blueprint.errors import BlueprintError, did_you_mean

            raise BlueprintError(f"no block '{nid}' with weights", key="loss.shared_layer",
                                 hint=did_you_mean(nid, list(graph.nodes), what="blocks")) from None
    return layers


def predict(exp: Experiment, part: str) -> dict[str, np.ndarray]:
    if getattr(exp.dataset, "streaming", False):
        from .streamed import predict_streaming

        return predict_streaming(exp, part)
    x, _, _ = exp.arrays(part)
    out = exp.model.predict(x, batch_size=8192, verbose=0)
    return {t: np.asarray(out[t]).reshape(-1) for t in exp.tasks}


