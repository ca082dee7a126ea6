"""Composer's own trainer against today's path and against a bare scanned loop (issue 16).

``composer train`` under ``KERAS_BACKEND=jax`` trains with ``composer.training.jax_loop.ScanLoop``
(the training rows on the device once, a device-side permutation per epoch, a jitted
``lax.scan`` of the trainer's Keras ``train_step(state, batch)``); before it, and under
TensorFlow and torch still, it trained with Keras ``fit``. This script times them side by side,
in parts; each part runs in one process with its own Keras backend:

- ``cpu-jax`` (JAX; the default run on a CPU): MMoE-8 (``bench/mmoe8.yaml``) at batch 1024 on
  the same random rows, four contenders alternating (ABCD DCBA ...):
  **composer train (ScanLoop)**; **Keras fit (today)**, the same ``PlanTrainer`` under ``fit``
  as ``composer train`` ran it on JAX before the ScanLoop (``KerasFeed``: the rows permuted on the
  host per epoch, ``fit(..., shuffle=False)``); **bare scan (ceiling)**, see below; **ScanLoop,
  streamed**: the ScanLoop with ``budget_bytes`` a quarter of the data's bytes, so that the rows
  stream to the device in chunks (``ScanLoop.describe()`` is printed).
- ``cpu-tf`` (TensorFlow; the default run): the same ``PlanTrainer`` on MMoE-8 at batch 1024 fed
  by ``composer train``'s tf.data pipeline (``composer.data.tf_pipeline.make_dataset``, as
  ``KerasFeed`` does), compiled with ``steps_per_execution`` 1, 8, 32 and ``jit_compile`` off and
  on: six contenders; ratios to steps_per_execution 1 without XLA (Keras's ``jit_compile="auto"``
  on a CPU, today's default).
- ``mmoe8`` (JAX; GPU run): MMoE-8 at batch 8192, 1024 and 32768 (8192 first: the goal's
  batch), ScanLoop, bare scan and Keras fit; every repetition is ``--examples`` rows (2^20 by
  default, the same rows at every batch size).
- ``torch`` (``KERAS_BACKEND=torch``; GPU run): the same network hand-written in PyTorch under
  ``torch.compile`` (``bench/torch_mmoe8.py``) on the same rows, batches and steps; "not run"
  without torch. Its own process (JAX and torch bring their own CUDA libraries), so its ratio to
  the ScanLoop is of medians, not paired.
- ``blueprints`` (JAX; GPU run): PLE, STAR, PEPNet, APG (``blueprints/*.yaml`` on their bundled
  data, the train rows tiled to steps x batch) through ``start_training`` + ``ScanLoop``, each
  beside its own bare scan.

The bare scan (the ceiling) is the same compiled Keras model (``exp.model``, the network the
trainer wraps) trained by one jitted function per epoch: ``jax.random.permutation`` of the
resident rows, then ``lax.scan`` over the steps, each step gathering its batch and running
``model.stateless_call`` + ``jax.value_and_grad`` + ``optimizer.stateless_apply`` (Adam with the
blueprint's learning rate), the loss written inline (per task the masked mean binary
cross-entropy times the blueprint's fixed weight, plus the model's own losses): the math of
``PlanTrainer``'s fixed fusion without its loss plan, trackers or metrics state. It draws the
ScanLoop's permutation (``fold_in(PRNGKey(seed), epoch)``), so the two report the same epoch loss:
the "last loss" column checks that they compute the same thing.

Timing (bench/README.md's method): every contender gets one untimed warm-up (the ScanLoop and
the bare scan: one whole epoch, which compiles the scan for the epoch's step count; fit: a fit of
two batches under JAX, one whole epoch under TensorFlow, where an execution can be 32 steps),
then the contenders alternate, the order flipped every repetition. Every repetition trains the
same rows (steps x batch) for every contender. The ScanLoop is timed around ``train_epoch(epoch)``
plus ``jax.block_until_ready(loop.state)`` (the whole call: permutation,
dispatches, the logs read back); the bare scan around its call until its loss is read back; fit
by ``bench/_timing.py``'s clock (first step to epoch end, which leaves out fit's per-call set-up
and so favours fit); the ``cpu-jax`` part also gives fit's whole call. Each ratio is given paired
(median over repetitions of the back-to-back ratio, with min..max), of medians, and paired by the
process's CPU seconds over the same span (on a shared machine the wall clock also counts waits for
a core; where the two agree, trust them). Prints numbers; asserts nothing about time.

    python bench/trainer_speed.py                         # CPU: cpu-jax and cpu-tf (2.5 min on 2 cores)
    python bench/trainer_speed.py --parts cpu-jax --reps 9
    bash bench/gpu_run.sh                                 # the GPU parts (mmoe8, torch, blueprints)
    bash bench/gpu_run.sh --cpu-smoke                     # the same script end to end on a CPU, tiny sizes

``--part NAME`` runs one part in this process (``KERAS_BACKEND`` must be the part's) and
``--json FILE`` writes its result; ``--report FILE...`` prints the tables and the goals of
results written before (gpu_run.sh runs each part under its own time limit, then reports).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BACKEND_OF = {"cpu-jax": "jax", "cpu-tf": "tensorflow", "mmoe8": "jax", "torch": "torch",
              "blueprints": "jax"}
SCAN, FIT, BARE, STREAMED = ("composer train (ScanLoop)", "Keras fit (today)", "bare scan (ceiling)",
                             "ScanLoop, streamed")
COMPILED = "torch.compile"
GOALS = {"ceiling": 0.9, "torch": 3.0, "blueprints": 0.9, "batch": 8192}
# --smoke: every part end to end in seconds (a check of the script, not a measurement)
SMOKE = {"batch": 256, "steps": 3, "reps": 2, "tf_steps": 4, "batch_sizes": "256,128",
         "examples": 1024, "blueprint_batches": "128", "blueprint_steps": 3, "rows": 2000}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="cpu-jax,cpu-tf",
                   help="parts to run, each in its own subprocess: " + ", ".join(BACKEND_OF))
    p.add_argument("--part", choices=list(BACKEND_OF), help="run one part in this process")
    p.add_argument("--json", help="with --part: write its result to this file")
    p.add_argument("--report", nargs="+", metavar="FILE", help="print results written by --json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, measures nothing")
    p.add_argument("--batch", type=int, default=1024, help="cpu-jax and cpu-tf batch size")
    p.add_argument("--steps", type=int, default=20, help="cpu-jax steps per repetition")
    p.add_argument("--tf-steps", type=int, default=32, help="cpu-tf steps per repetition (a multiple of 32)")
    p.add_argument("--reps", type=int, default=None,
                   help="timed repetitions per contender (11 cpu-jax, 9 cpu-tf, 5 else)")
    p.add_argument("--batch-sizes", default="8192,1024,32768", help="mmoe8 and torch batch sizes")
    p.add_argument("--examples", type=int, default=2**20,
                   help="mmoe8 and torch rows per repetition (steps = examples // batch)")
    p.add_argument("--blueprints", default="ple,star,pepnet,apg")
    p.add_argument("--blueprint-batches", default="8192")
    p.add_argument("--blueprint-steps", type=int, default=128)
    p.add_argument("--rows", type=int, default=20_000, help="rows of each blueprint's bundled data")
    p.add_argument("--seed", type=int, default=2018)
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--smoke" in argv:  # tiny defaults; flags given explicitly still win
        p.set_defaults(**SMOKE)
    return p.parse_args(argv)


# -- contenders ---------------------------------------------------------------------------------

class Contender:
    """Wall seconds and last loss per timed repetition of ``examples`` rows; ``warm_up()`` once,
    then ``epoch(epoch) -> (wall seconds, loss, CPU seconds)``."""

    def __init__(self, name, examples):
        self.name, self.examples = name, examples
        self.seconds, self.losses, self.whole, self.cpu, self.warmup_s, self.note = [], [], [], [], 0.0, ""

    def result(self) -> dict:
        return {"name": self.name, "rates": [self.examples / s for s in self.seconds],
                "whole": [self.examples / s for s in self.whole],
                "cpu": [self.examples / max(s, 1e-9) for s in self.cpu],
                "loss": self.losses[-1] if self.losses else None, "warmup_s": self.warmup_s, "note": self.note}


class ScanRun(Contender):
    """``composer train``'s JAX path: ``ScanLoop.train_epoch``, timed until the state is ready."""

    def __init__(self, name, trainer, data, batch, seed, budget_bytes=None):
        from composer.training.jax_loop import ScanLoop

        super().__init__(name, len(next(iter(data[1].values()))))
        self.loop = ScanLoop(trainer, *data, batch_size=batch, seed=seed, budget_bytes=budget_bytes)
        self.note = self.loop.describe()

    def warm_up(self):
        self.epoch(10_000)  # one whole epoch compiles the scan for the epoch's step count

    def epoch(self, epoch):
        import jax

        start, cpu = time.perf_counter(), time.process_time()
        logs = self.loop.train_epoch(epoch)
        jax.block_until_ready(self.loop.state)
        return time.perf_counter() - start, logs["loss"], time.process_time() - cpu


class BareScan(Contender):
    """The ceiling: the same Keras model, one jitted permutation + ``lax.scan`` per epoch over
    resident rows; ``stateless_call``, ``value_and_grad``, ``optimizer.stateless_apply``."""

    def __init__(self, name, model, task_weights: dict, learning_rate, data, batch, seed):
        import jax
        import jax.numpy as jnp
        import keras

        x, y, w = data
        super().__init__(name, len(next(iter(y.values()))))
        steps = self.examples // batch
        optimizer = keras.optimizers.Adam(learning_rate)
        optimizer.build(model.trainable_variables)
        # copies: the jitted epoch donates its state, and the Keras variables keep theirs
        self.state = ([jnp.copy(v.value) for v in model.trainable_variables],
                      [jnp.copy(v.value) for v in model.non_trainable_variables],
                      [jnp.copy(v.value) for v in optimizer.variables])
        self.data = jax.device_put((x, y, w))
        self.key = jax.random.PRNGKey(seed)

        def loss_fn(trainable, non_trainable, xb, yb, wb):
            pred, non_trainable, extra = model.stateless_call(trainable, non_trainable, xb, training=True,
                                                              return_losses=True)
            total = 0.0
            for task, weight in task_weights.items():
                prob = jnp.clip(jnp.reshape(pred[task], (-1,)).astype("float32"), 1e-7, 1 - 1e-7)
                label = jnp.reshape(yb[task], (-1,))
                bce = -(label * jnp.log(prob) + (1 - label) * jnp.log(1 - prob))
                total = total + weight * jnp.sum(bce * wb[task]) / jnp.maximum(jnp.sum(wb[task]), 1.0)
            for value in extra:
                total = total + value
            return total, non_trainable

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def one_epoch(state, data, key):
            order = jax.random.permutation(key, self.examples)[: steps * batch].reshape(steps, batch)

            def step(state, index):
                trainable, non_trainable, opt = state
                xb, yb, wb = jax.tree.map(lambda a: jnp.take(a, index, axis=0), data)
                (loss, non_trainable), grads = grad_fn(trainable, non_trainable, xb, yb, wb)
                trainable, opt = optimizer.stateless_apply(opt, grads, trainable)
                return (trainable, non_trainable, opt), loss

            state, losses = jax.lax.scan(step, state, order)
            return state, jnp.mean(losses)

        self._epoch = jax.jit(one_epoch, donate_argnums=0)

    def warm_up(self):
        self.epoch(10_000)

    def epoch(self, epoch):
        import jax

        start, cpu = time.perf_counter(), time.process_time()
        self.state, loss = self._epoch(self.state, self.data, jax.random.fold_in(self.key, epoch))
        loss = float(loss)  # waits for the last step
        jax.block_until_ready(self.state)
        return time.perf_counter() - start, loss, time.process_time() - cpu


class FitRun(Contender):
    """Keras ``fit``, one epoch per repetition, clocked from the first step to the epoch's end
    (bench/_timing.py); ``whole`` also keeps the wall seconds of the whole ``fit`` call.
    ``fit_args(epoch)`` gives the epoch's ``fit`` arguments."""

    def __init__(self, name, trainer, examples, fit_args, warmup_args):
        super().__init__(name, examples)
        self.trainer, self.fit_args, self.warmup_args = trainer, fit_args, warmup_args

    def _fit(self, kwargs):
        import keras

        class Clock(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if batch == 0:
                    self.start, self.cpu = time.perf_counter(), time.process_time()

            def on_epoch_end(self, epoch, logs=None):
                self.end, self.cpu = time.perf_counter(), time.process_time() - self.cpu

        clock = Clock()
        history = self.trainer.fit(epochs=1, verbose=0, callbacks=[clock], **kwargs)
        return clock.end - clock.start, float(history.history["loss"][-1]), clock.cpu

    def warm_up(self):
        self._fit(self.warmup_args)

    def epoch(self, epoch):
        start = time.perf_counter()
        kwargs = self.fit_args(epoch)  # the host permutation, as KerasFeed does it before fit
        seconds, loss, cpu = self._fit(kwargs)
        self.whole.append(time.perf_counter() - start)
        return seconds, loss, cpu


def permuted_fit_args(data, batch, seed):
    """KerasFeed's JAX/torch path: the rows permuted on the host per (seed, epoch), no shuffle."""
    import numpy as np

    x, y, w = data
    n = len(next(iter(y.values())))

    def args(epoch):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        take = lambda d: {k: v[order] for k, v in d.items()}  # noqa: E731
        return {"x": take(x), "y": take(y), "sample_weight": take(w), "batch_size": batch, "shuffle": False}

    return args


def head(data, rows):
    import keras

    return keras.tree.map_structure(lambda a: a[:rows], data)


def warm_and_alternate(runs, reps):
    for run in runs:
        start = time.perf_counter()
        run.warm_up()
        run.warmup_s = time.perf_counter() - start
    for rep in range(reps):
        for run in (runs if rep % 2 == 0 else runs[::-1]):
            seconds, loss, cpu = run.epoch(rep)
            run.seconds.append(seconds)
            run.losses.append(loss)
            run.cpu.append(cpu)


# -- models and data -----------------------------------------------------------------------------

def mmoe8_trainer(seed):
    """MMoE-8 as ``composer train`` trains it: compiled from bench/mmoe8.yaml, wrapped and compiled
    by ``composer.training.start_training`` (PlanTrainer, the blueprint's Adam). A fresh model per
    call, the same initial weights for the same seed."""
    import keras

    from composer.compiler import compile_graph
    from composer.losses import LossPlan
    from composer.training import Experiment, start_training
    from mmoe_vs_funrec import composer_graph

    graph = composer_graph(str(HERE / "mmoe8.yaml"), None)
    bp = graph.blueprint.model_copy(update={"training": graph.blueprint.training.model_copy(
        update={"seed": seed})})
    keras.utils.set_random_seed(seed)
    model = compile_graph(graph)
    exp = Experiment(bp, graph, None, None, model, LossPlan.from_blueprint(bp), "synthetic (mmoe8)")
    return exp, start_training(exp)


def mmoe8_data(n, seed):
    """The random rows of bench/mmoe_vs_funrec.py in the packed layout, all-ones sample weights."""
    import numpy as np

    from mmoe_vs_funrec import composer_graph, synthetic

    graph = composer_graph(str(HERE / "mmoe8.yaml"), None)
    tasks = graph.blueprint.task_names
    packed, _, labels = synthetic(graph.layout, tasks, n, seed)
    return packed, labels, {t: np.ones(n, dtype="float32") for t in tasks}


def fixed_weights(exp):
    return {t.task: t.weight for t in exp.plan.trained}


def device():
    from backends_mmoe8 import device_name

    return device_name()


def group(part, label, runs, baseline, ratios, **extra):
    return {"part": part, "label": label, "baseline": baseline, "ratios": ratios,
            "contenders": [run.result() for run in runs], **extra}


# -- parts -----------------------------------------------------------------------------------------

def part_cpu_jax(args):
    from composer.training.jax_loop import tree_bytes

    batch, reps = args.batch, args.reps or 11
    n = args.steps * batch
    data = mmoe8_data(n, args.seed)
    exp, trainer = mmoe8_trainer(args.seed)
    runs = [ScanRun(SCAN, trainer, data, batch, args.seed)]
    exp, trainer = mmoe8_trainer(args.seed)
    runs.append(FitRun(FIT, trainer, n, permuted_fit_args(data, batch, args.seed),
                       {"x": head(data[0], 2 * batch), "y": head(data[1], 2 * batch),
                        "sample_weight": head(data[2], 2 * batch), "batch_size": batch}))
    exp, _ = mmoe8_trainer(args.seed)
    runs.append(BareScan(BARE, exp.model, fixed_weights(exp), exp.bp.training.learning_rate, data, batch,
                         args.seed))
    exp, trainer = mmoe8_trainer(args.seed)
    runs.append(ScanRun(STREAMED, trainer, data, batch, args.seed, budget_bytes=tree_bytes(data) // 4))
    warm_and_alternate(runs, reps)
    return [group("cpu-jax", f"MMoE-8 batch {batch}", runs, FIT,
                  [[SCAN, FIT], [SCAN, BARE], [STREAMED, SCAN]], batch=batch, steps=args.steps, reps=reps,
                  device=device(), whole_ratio=[SCAN, FIT])]


def part_cpu_tf(args):
    from composer.data.tf_pipeline import make_dataset, to_tensors

    batch, reps, steps = args.batch, args.reps or 9, args.tf_steps
    n = steps * batch
    data = mmoe8_data(n, args.seed)
    tensors = to_tensors(data)
    runs = []
    for jit in (False, True):
        for spe in (1, 8, 32):
            _, trainer = mmoe8_trainer(args.seed)
            trainer.compile(optimizer=trainer.optimizer, steps_per_execution=spe, jit_compile=jit)

            def fit_args(epoch):
                return {"x": make_dataset(*data, batch, True, args.seed, epoch=epoch, tensors=tensors),
                        "shuffle": False}

            # warm-up: one whole epoch each (an execution of 32 steps needs 32 batches), so that all
            # six start the timed epochs from the same weights
            runs.append(FitRun(f"steps_per_execution {spe}, jit_compile {'on' if jit else 'off'}", trainer, n,
                               fit_args, fit_args(10_000)))
    warm_and_alternate(runs, reps)
    base = runs[0].name
    return [group("cpu-tf", f"MMoE-8 batch {batch}", runs, base, [[r.name, base] for r in runs[1:]],
                  batch=batch, steps=steps, reps=reps, device=device())]


def part_mmoe8(args):
    reps = args.reps or 5
    data = mmoe8_data(args.examples, args.seed)
    out = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        steps = args.examples // batch
        rows = head(data, steps * batch)
        exp, trainer = mmoe8_trainer(args.seed)
        runs = [ScanRun(SCAN, trainer, rows, batch, args.seed)]
        exp, _ = mmoe8_trainer(args.seed)
        runs.append(BareScan(BARE, exp.model, fixed_weights(exp), exp.bp.training.learning_rate, rows, batch,
                             args.seed))
        exp, trainer = mmoe8_trainer(args.seed)
        runs.append(FitRun(FIT, trainer, steps * batch, permuted_fit_args(rows, batch, args.seed),
                           {"x": head(rows[0], 2 * batch), "y": head(rows[1], 2 * batch),
                            "sample_weight": head(rows[2], 2 * batch), "batch_size": batch}))
        warm_and_alternate(runs, reps)
        out.append(group("mmoe8", f"MMoE-8 batch {batch}", runs, BARE, [[SCAN, BARE], [FIT, BARE], [SCAN, FIT]],
                         batch=batch, steps=steps, reps=reps, device=device()))
        progress(out[-1])
    return out


def part_torch(args):
    reps = args.reps or 5
    try:
        import torch
        import torch_mmoe8 as tm
    except Exception as e:  # noqa: BLE001 -- torch absent (this CPU machine), or broken
        return [{"part": "torch", "label": "MMoE-8", "missing": f"{type(e).__name__}: {e}"}]
    import numpy as np

    from mmoe_vs_funrec import composer_graph, mmoe_settings

    graph = composer_graph(str(HERE / "mmoe8.yaml"), None)
    layout, tasks = graph.layout, graph.blueprint.task_names
    packed, labels, _ = mmoe8_data(args.examples, args.seed)
    (dim, names), = layout.categorical_by_dim.items()
    ids = torch.from_numpy(packed[layout.input_name(dim)]).long().to(tm.DEVICE)
    numeric = torch.from_numpy(packed["numeric"]).to(tm.DEVICE)
    y = torch.from_numpy(np.concatenate([labels[t] for t in tasks], 1)).to(tm.DEVICE)
    out = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        steps = args.examples // batch
        n = steps * batch
        torch._dynamo.reset()  # a fresh compile per batch size, static shapes
        torch.manual_seed(args.seed)
        model = tm.HandwrittenMMoE([layout.vocab_sizes[m] for m in names], dim, numeric.shape[1], len(tasks),
                                   **mmoe_settings(graph)).to(tm.DEVICE)
        run = tm.LoopRun(COMPILED, torch.compile(tm.HandwrittenLoss(model)),
                         torch.optim.Adam(model.parameters(), lr=tm.LEARNING_RATE),
                         lambda idx: (ids[idx], numeric[idx], y[idx]), n, tm.trainable(model))
        start = time.perf_counter()
        run.warm_up(min(5, steps), batch)  # compiles forward and backward; Adam's first steps
        warmup = time.perf_counter() - start
        for _ in range(reps):
            seconds, loss = run.epoch(batch)
            run.seconds.append(seconds)
            run.losses.append(loss)
        out.append({"part": "torch", "label": f"MMoE-8 batch {batch}", "batch": batch, "steps": steps,
                    "reps": reps, "device": f"torch {torch.__version__} on {tm.DEVICE}", "baseline": COMPILED,
                    "ratios": [], "contenders": [{"name": COMPILED, "rates": run.rates, "whole": [],
                                                  "loss": run.losses[-1], "warmup_s": warmup, "note": ""}]})
        progress(out[-1])
    return out


def part_blueprints(args):
    import numpy as np

    from composer.training import prepare, start_training

    reps = args.reps or 5
    out = []
    for name in args.blueprints.split(","):
        file = str(ROOT / "blueprints" / f"{name}.yaml")
        exp = prepare(file, rows=args.rows)
        x, y, w = exp.arrays("train")
        rows = len(next(iter(y.values())))
        for i, batch in enumerate(int(b) for b in args.blueprint_batches.split(",")):
            n = args.blueprint_steps * batch
            index = np.arange(n) % rows  # the train rows, tiled to steps x batch
            data = tuple({k: v[index] for k, v in d.items()} for d in (x, y, w))
            if i:
                exp = prepare(file, rows=args.rows)  # fresh weights for the next batch size
            bare = BareScan(BARE, exp.model, fixed_weights(exp), exp.bp.training.learning_rate, data, batch,
                            exp.bp.training.seed)  # copies the weights before the ScanLoop takes them
            runs = [ScanRun(SCAN, start_training(exp), data, batch, exp.bp.training.seed), bare]
            warm_and_alternate(runs, reps)
            out.append(group("blueprints", f"{name} batch {batch}", runs, BARE, [[SCAN, BARE]], batch=batch,
                             steps=args.blueprint_steps, reps=reps, device=device(), blueprint=name))
            progress(out[-1])
    return out


PARTS = {"cpu-jax": part_cpu_jax, "cpu-tf": part_cpu_tf, "mmoe8": part_mmoe8, "torch": part_torch,
         "blueprints": part_blueprints}


# -- report ----------------------------------------------------------------------------------------

def rate(value):
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"


def by_name(g):
    return {c["name"]: c for c in g["contenders"]}


def paired(g, a, b, key="rates"):
    """Median, min and max over repetitions of a's rate over b's in the same repetition."""
    c = by_name(g)
    ratios = [ra / rb for ra, rb in zip(c[a][key], c[b][key])]
    return statistics.median(ratios), min(ratios), max(ratios)


def medians(g, a, b):
    c = by_name(g)
    return statistics.median(c[a]["rates"]) / statistics.median(c[b]["rates"])


SAVE = {"path": None, "groups": []}  # --json: rewritten after every group, so a part cut off keeps them


def progress(g):
    """One line per contender as soon as a group is done, and the --json file rewritten: a part cut
    off by its time limit keeps what it finished."""
    SAVE["groups"].append(g)
    if SAVE["path"]:
        Path(SAVE["path"]).write_text(json.dumps(SAVE["groups"]))
    for c in g["contenders"]:
        print(f"  {g['part']} | {g['label']} | {c['name']} | {rate(statistics.median(c['rates']))} "
              f"({rate(min(c['rates']))}..{rate(max(c['rates']))}) | warm-up {c['warmup_s']:.1f}s", flush=True)


def report(groups, smoke=False) -> None:
    from tabulate import tabulate

    parts = []
    for g in groups:
        if g["part"] not in parts:
            parts.append(g["part"])
    for part in parts:
        mine = [g for g in groups if g["part"] == part]
        if all("missing" in g for g in mine):
            print(f"\n[{part}] not run: {mine[0]['missing']}")
            continue
        rows, lines = [], []
        for g in mine:
            for c in g["contenders"]:
                ratio = "" if c["name"] == g["baseline"] else f"{paired(g, c['name'], g['baseline'])[0]:.2f}x"
                loss = "" if c["loss"] is None else f"{c['loss']:.4f}"
                rows.append([g["label"], c["name"], rate(statistics.median(c["rates"])),
                             f"{rate(min(c['rates']))}..{rate(max(c['rates']))}", ratio or "1.00x", loss,
                             f"{c['warmup_s']:.1f}"])
            for a, b in g["ratios"]:
                r, lo, hi = paired(g, a, b)
                line = (f"  {g['label']}: {a} / {b}: paired {r:.2f}x ({lo:.2f}..{hi:.2f}), medians "
                        f"{medians(g, a, b):.2f}x")
                if by_name(g)[a].get("cpu") and by_name(g)[b].get("cpu"):
                    line += ", paired by CPU time {:.2f}x ({:.2f}..{:.2f})".format(*paired(g, a, b, "cpu"))
                lines.append(line)
            if g.get("whole_ratio"):
                a, b = g["whole_ratio"]
                c = by_name(g)
                whole = [ra / rb for ra, rb in zip(c[a]["rates"], c[b]["whole"])]
                lines.append(f"  {g['label']}: {a} / {b}, fit timed over its whole call: paired "
                             f"{statistics.median(whole):.2f}x ({min(whole):.2f}..{max(whole):.2f})")
            notes = [f"{c['name']}: {c['note']}" for c in g["contenders"] if c.get("note")]
            lines += [f"  {g['label']}: {note}" for note in dict.fromkeys(notes)]
        first = next(g for g in mine if "missing" not in g)
        what = (f"{first['steps'] * first['batch']:,} rows per repetition at every batch size"
                if part in ("mmoe8", "torch") else f"{first['steps']} steps per repetition")
        print(f"\n[{part}] {what}, median of {first['reps']} repetitions after a warm-up; "
              f"{os.cpu_count()} CPU cores; {first['device']}" + ("  (SMOKE: sizes too small to "
                                                                           "mean anything)" if smoke else ""))
        print(tabulate(rows, headers=["what", "contender", "median ex/s", "min..max", "vs " + first["baseline"]
                                      + " (paired)", "last loss", "warm-up s"],
                       colalign=("left", "left", "right", "right", "right", "right", "right"), disable_numparse=True))
        for line in lines:
            print(line)
    goals(groups, smoke)


def goals(groups, smoke=False) -> None:
    """The issue's GPU goals, from whatever parts are there."""
    lines = []
    at = {(g["part"], g.get("batch")): g for g in groups if "missing" not in g}
    mm = at.get(("mmoe8", GOALS["batch"])) or next((g for g in groups if g["part"] == "mmoe8"), None)
    if mm is not None:
        r, lo, hi = paired(mm, SCAN, BARE)
        lines.append(f"MMoE-8 batch {mm['batch']}: composer train / bare scan = {r:.2f}x paired ({lo:.2f}..{hi:.2f})"
                     f" (goal >= {GOALS['ceiling']}x): {'met' if r >= GOALS['ceiling'] else 'NOT met'}")
        tc = at.get(("torch", mm["batch"]))
        if tc is not None:
            ours = statistics.median(by_name(mm)[SCAN]["rates"])
            theirs = statistics.median(tc["contenders"][0]["rates"])
            lines.append(f"MMoE-8 batch {mm['batch']}: composer train / torch.compile = {ours / theirs:.2f}x "
                         f"(medians of two processes; {rate(ours)} vs {rate(theirs)}) (goal >= {GOALS['torch']}x): "
                         f"{'met' if ours / theirs >= GOALS['torch'] else 'NOT met'}")
        elif any(g["part"] == "torch" for g in groups):
            lines.append(f"MMoE-8 batch {mm['batch']}: no torch.compile figure (torch not installed or cut off)")
    for g in groups:
        if g["part"] == "blueprints":
            r, lo, hi = paired(g, SCAN, BARE)
            lines.append(f"{g['label']}: composer train / bare scan = {r:.2f}x paired ({lo:.2f}..{hi:.2f}) "
                         f"(goal >= {GOALS['blueprints']}x): {'met' if r >= GOALS['blueprints'] else 'NOT met'}")
    if lines:
        print("\nGoals (issue 16)" + (", SMOKE sizes: not a measurement:" if smoke else ":"))
        for line in lines:
            print("  " + line)


# -- driver ----------------------------------------------------------------------------------------

def run_part(args) -> list:
    import importlib.util

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    if args.part == "torch" and importlib.util.find_spec("torch") is None:
        groups = [{"part": "torch", "label": "MMoE-8", "missing": "no module named torch"}]  # Keras needs it too
    else:
        import keras

        want = BACKEND_OF[args.part]
        if keras.backend.backend() != want:
            sys.exit(f"part {args.part} needs KERAS_BACKEND={want} (now {keras.backend.backend()})")
        SAVE["path"] = args.json
        groups = PARTS[args.part](args)
    if args.json:
        Path(args.json).write_text(json.dumps(groups))
    return groups


def main(argv=None):
    args = parse_args(argv)
    if args.report:
        groups = [g for f in args.report if Path(f).exists() for g in json.loads(Path(f).read_text())]
        return report(groups, args.smoke)
    if args.part:
        groups = run_part(args)
        print("RESULT " + json.dumps(groups), flush=True)
        return report(groups, args.smoke)
    groups = []
    for part in args.parts.split(","):
        env = {**os.environ, "KERAS_BACKEND": BACKEND_OF[part], "TF_CPP_MIN_LOG_LEVEL": "3"}
        cmd = [sys.executable, __file__, "--part", part, *argv_without_parts(argv)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"part {part} failed:\n" + "\n".join(proc.stderr.strip().splitlines()[-15:]), flush=True)
            continue
        groups += json.loads(lines[-1][7:])
    report(groups, args.smoke)


def argv_without_parts(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--parts":
            skip = True
            continue
        if not a.startswith("--parts="):
            out.append(a)
    return out


if __name__ == "__main__":
    main()
