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


def valid_loss(exp: Experiment, y, w, pred) -> dict[str, float]:
    """The training loss on the valid rows, from predictions already made (no second pass, and
    no per-replica split of the valid rows, which MirroredStrategy cannot do for an odd count):
    {"val_loss": fused total, "val_loss_<task>": masked mean BCE of each trained task}, by the
    trainer's own ``plan_loss`` (the fusion's current weights or log-variances and the model's
    regularization terms count as in training); the means are over the whole split."""
    import keras

    trainer = exp.trainer
    total, losses = trainer.plan_loss(y, {t: np.asarray(pred[t], dtype="float32") for t in trainer.outputs_read}, w)
    per_task = {f"val_loss_{t}": float(keras.ops.convert_to_numpy(v)) for t, v in zip(trainer.tasks, losses)}
    return {"val_loss": float(keras.ops.convert_to_numpy(total)), **per_task}


def fit(exp: Experiment, verbose: int = 1, epochs: int | None = None, batch_size: int | None = None, *,
        checkpoint_dir=None, resume=None):
    """Train in place and return the history (``.history``: one list per logged value).

    ``checkpoint_dir``: where ``checkpoint.npz`` is written at the end of every epoch;
    ``resume``: a ``composer.training.checkpoint.Checkpoint`` to continue from. A SIGINT or
    SIGTERM stops at the next dispatch and raises ``Interrupted`` (the last finished epoch is in
    the checkpoint; the model holds the best weights so far)."""
    from .epochs import run_epochs
    from .feeds import feed_for

    training = exp.bp.training
    batch_size = batch_size or training.batch_size
    trainer = start_training(exp)
    counts = exp.dataset.counts()
    exp.parallel.check_batch_size(batch_size, rows=counts["train"])
    for part in ("train", "valid"):
        if counts[part] == 0:
            from ..data.errors import DataError

            raise DataError(f"the {part} split of {exp.data_name} has no rows ({counts['train']:,} train, "
                            f"{counts['valid']:,} valid, {counts['test']:,} test)", key="data",
                            hint="read more rows (--rows), or check the data's split rule: early stopping "
                            "needs valid rows")
    feed = feed_for(exp, trainer, batch_size)
    t0 = time.perf_counter()
    try:
        history = run_epochs(exp, trainer, feed, epochs or training.epochs, batch_size, verbose=verbose,
                             checkpoint_dir=checkpoint_dir, resume=resume)
    finally:
        feed.close()
    finish_training(exp, history, time.perf_counter() - t0, counts["train"])
    exp.timings["feed"] = feed.describe()
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
    ran = history.history.get("time_train_s") or []
    exp.timings["epochs_run"] = len(history.history.get("loss", []))
    exp.timings["train_examples_per_s"] = (train_rows * len(ran) / sum(ran) if ran and sum(ran) > 0 else
                                           train_rows * exp.timings["epochs_run"] / max(seconds, 1e-9))
    valid = history.history.get("time_valid_s") or []
    if valid and ran:
        exp.timings["valid_share"] = sum(valid) / (sum(valid) + sum(ran))
    exp.task_weights = exp.trainer.task_weight_values()
    exp.model = exp.parallel.host_model(exp.model)  # predict, report and save on this process alone


def _shared_layers(exp):
    """The Keras layers a gradient strategy differentiates: GradNorm's last shared layer W, or
    PE-LTR's shared parameters theta (every shared block)."""
    plan, graph = exp.plan, exp.graph
    tasks = [t.task for t in plan.trained]
    if plan.fusion in ("gradnorm", "mgda"):  # MGDA-UB: the shared representation is this block's output
        nid = plan.params.get("shared_layer") or graph.last_shared_layer(tasks)
        nids = [nid] if nid else []
    elif plan.fusion in ("pareto", "pcgrad", "cagrad", "nash_mtl", "aligned_mtl", "metabalance"):
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


