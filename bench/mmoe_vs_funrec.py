"""Training throughput: Composer's MMoE against the same network written in FunRec's style.

Composer compiles ``bench/mmoe8.yaml`` (8 experts, census-shaped: 35 categorical fields of width
8, 7 numerics, 2 tasks) into a model on packed inputs: one id matrix, one stacked table and one
gather; the experts as one batched matmul per layer. The baseline is the same network as the
FunRec book's Keras models write it: one ``keras.Input`` and one ``Embedding`` per feature,
concatenated, one Dense stack per expert, gates as Dense + softmax, the mixture in ``Lambda``
layers, one tower per task. Both train with Adam on the same random data (labels from a planted
logistic rule), at the same batch size, for the same number of steps, with ``model.fit``; the
repetitions alternate between the two and the table reports the medians.

    python bench/mmoe_vs_funrec.py            # experts [256, 128]
    python bench/mmoe_vs_funrec.py --small    # experts [64, 32]
    python bench/mmoe_vs_funrec.py --jit      # both with jit_compile=True (XLA)

Prints numbers; asserts nothing about time.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # so a clone runs it without installing the package

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402
from tabulate import tabulate  # noqa: E402

from _timing import Run, alternate, paired_ratio, param_counts, rate, warm_up  # noqa: E402
from composer.blueprint import load_blueprint  # noqa: E402
from composer.compiler import compile_graph  # noqa: E402
from composer.graph import build_graph  # noqa: E402

BLUEPRINT = HERE / "mmoe8.yaml"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blueprint", default=str(BLUEPRINT),
                   help="MMoE blueprint (default: %(default)s)")
    p.add_argument("--small", action="store_true", help="experts [64, 32] instead of [256, 128]")
    p.add_argument("--units",
                   help="expert widths, e.g. 512,256 (overrides the blueprint and --small)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=20, help="training steps per timed repetition")
    p.add_argument("--reps", type=int, default=9, help="timed repetitions of each model")
    p.add_argument("--warmup-steps", type=int, default=10,
                   help="untimed steps first (tracing included)")
    p.add_argument("--jit", action="store_true", help="compile both with jit_compile=True")
    p.add_argument("--seed", type=int, default=2018)
    return p.parse_args(argv)


def composer_graph(file: str, units: list[int] | None):
    """The blueprint's block graph, with the MMoE's expert widths replaced when asked."""
    bp, doc = load_blueprint(file)
    if units:
        blocks = {name: block.model_copy(update={"units": units}) if block.type == "mmoe" else block
                  for name, block in bp.blocks.items()}
        bp, doc = bp.model_copy(update={"blocks": blocks}), None
    return build_graph(bp, doc)


def mmoe_settings(graph) -> dict:
    """Experts, expert widths and tower widths, read from the graph so both models agree."""
    (mmoe,) = [b for b in graph.blueprint.blocks.values() if b.type == "mmoe"]
    towers = [b for b in graph.blueprint.blocks.values() if b.type == "tower"]
    return {"experts": mmoe.experts, "units": list(mmoe.units), "tower": list(towers[0].units)}


def synthetic(layout, tasks: list[str], n: int, seed: int):
    """Uniform ids, standard-normal numerics, and per-task labels drawn from a logistic rule:
    a random effect per (field, id) (half shared by the tasks, half the task's own) plus a linear
    term in the numerics. Returns (packed inputs, per-feature inputs, labels by task)."""
    rng = np.random.default_rng(seed)
    packed, per_feature = {}, {}
    fields = []
    for dim, names in layout.categorical_by_dim.items():
        cols = [rng.integers(0, layout.vocab_sizes[name], n, dtype=np.int32) for name in names]
        packed[layout.input_name(dim)] = np.stack(cols, axis=1)
        for name, col in zip(names, cols):
            per_feature[name] = col[:, None]
            fields.append((layout.vocab_sizes[name], col))
    numeric = rng.standard_normal((n, len(layout.numeric)), dtype=np.float32)
    if layout.numeric:
        packed["numeric"] = numeric
        for j, name in enumerate(layout.numeric):
            per_feature[name] = numeric[:, j:j + 1]
    scale = 1.2 / np.sqrt(max(len(fields), 1))
    shared = [rng.standard_normal(v) for v, _ in fields]
    labels = {}
    for t, task in enumerate(tasks):
        own = [rng.standard_normal(v) for v, _ in fields]
        logit = sum((s[col] + o[col]) * scale for s, o, (_, col) in zip(shared, own, fields))
        logit = logit + numeric @ rng.normal(0, 0.5, numeric.shape[1]) + (-1.5 if t == 0 else 0.0)
        labels[task] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)[:, None]
    return packed, per_feature, labels


def funrec_mmoe(layout, tasks: list[str], experts: int, units: list[int], tower: list[int]):
    """The network as FunRec writes it (``src/funrec/models/mmoe.py``): deliberately not
    Composer's style, since it is the baseline being measured."""
    inputs, embedded, dense = {}, [], []
    for dim, names in layout.categorical_by_dim.items():
        for name in names:
            inputs[name] = keras.Input(shape=(1,), name=name, dtype="int32")
            embedded.append(keras.layers.Embedding(layout.vocab_sizes[name], dim,
                                                   name=f"emb_{name}")(inputs[name]))
    for name in layout.numeric:
        inputs[name] = keras.Input(shape=(1,), name=name, dtype="float32")
        dense.append(inputs[name])
    x = keras.layers.Flatten()(keras.layers.Concatenate(axis=1)(embedded))
    x = keras.layers.Concatenate(axis=-1)([x, *dense])

    expert_outputs = []
    for k in range(experts):
        h = x
        for i, width in enumerate(units):
            h = keras.layers.Dense(width, activation="relu", name=f"expert_{k}_{i}")(h)
        expert_outputs.append(h)
    expert_concat = keras.layers.Lambda(lambda t: ops.stack(t, axis=1))(expert_outputs)

    outputs = []
    for task in tasks:
        gate = keras.layers.Dense(experts, activation="softmax", name=f"gate_{task}")(x)
        gate = keras.layers.Lambda(lambda g: ops.expand_dims(g, axis=-1))(gate)
        mixed = keras.layers.Lambda(lambda t: ops.sum(ops.multiply(t[0], t[1]), axis=1))(
            [gate, expert_concat])
        h = mixed
        for i, width in enumerate(tower):
            h = keras.layers.Dense(width, activation="relu", name=f"tower_{task}_{i}")(h)
        outputs.append(keras.layers.Dense(1, activation="sigmoid", name=task)(h))
    return keras.Model(inputs=inputs, outputs=outputs, name="funrec_mmoe")


def main(argv=None) -> None:
    args = parse_args(argv)
    units = ([int(u) for u in args.units.split(",")] if args.units
             else [64, 32] if args.small else None)
    graph = composer_graph(args.blueprint, units)
    settings = mmoe_settings(graph)
    tasks = graph.blueprint.task_names
    lr = graph.blueprint.training.learning_rate
    n = args.steps * args.batch_size
    packed, per_feature, labels = synthetic(graph.layout, tasks, n, args.seed)

    keras.utils.set_random_seed(args.seed)
    composer_model = compile_graph(graph)
    keras.utils.set_random_seed(args.seed)
    funrec_model = funrec_mmoe(graph.layout, tasks, **settings)
    composer_model.compile(optimizer=keras.optimizers.Adam(lr), jit_compile=args.jit,
                     loss={t: "binary_crossentropy" for t in tasks})
    funrec_model.compile(optimizer=keras.optimizers.Adam(lr), jit_compile=args.jit,
                   loss=["binary_crossentropy"] * len(tasks))

    runs = [Run("composer", composer_model, packed, labels, n),
            Run("funrec-style", funrec_model, per_feature, [labels[t] for t in tasks], n)]
    warm_up(runs, args.warmup_steps, args.batch_size)
    alternate(runs, args.reps, args.batch_size)

    counts = {run.name: param_counts(run.model) for run in runs}
    print(f"MMoE, {settings['experts']} experts {settings['units']}, towers {settings['tower']}, "
          f"{len(tasks)} tasks; {sum(len(v) for v in graph.layout.categorical_by_dim.values())} "
          f"categorical + {len(graph.layout.numeric)} numeric features")
    print(f"batch {args.batch_size}, {args.steps} steps x {args.reps} repetitions after "
          f"{args.warmup_steps} warm-up steps, adam, jit_compile={args.jit}, "
          f"keras {keras.__version__} / {keras.backend.backend()}")
    rows = [[run.name, len(run.model.inputs), f"{counts[run.name][0]:,}",
             f"{counts[run.name][1]:,}", rate(run.median_rate), run.spread,
             f"{run.losses[-1]:.4f}"] for run in runs]
    print(tabulate(rows, headers=["model", "inputs", "trainable params", "non-trainable",
                                  "median examples/s", "min..max", "last loss"],
                   colalign=("left", *["right"] * 6), disable_numparse=True))
    composer_run, funrec_run = runs
    print(f"ratio composer/funrec-style: {composer_run.median_rate / funrec_run.median_rate:.2f}x "
          f"(medians), {paired_ratio(composer_run, funrec_run):.2f}x (paired, median over "
          "repetitions)")
    same = counts["composer"][0] == counts["funrec-style"][0]
    print(f"trainable parameters: composer {counts['composer'][0]:,}, funrec-style "
          f"{counts['funrec-style'][0]:,}, Composer's own count {graph.total_params:,}: "
          + ("same network" if same else "DIFFERENT networks, the ratio compares unlike models"))
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
