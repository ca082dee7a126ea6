"""DIN into MMoE at KuaiRand-Pure's shapes: the Composer blueprint against the same network
hand-written in Keras, training examples/s side by side, per Keras backend.

The blueprint is ``bench/din_mmoe.yaml``: candidate video_id (6,400 rows) and author_id (5,700),
user_id (25,000), 30 small side fields and tag (multi-valued, up to 4, mean-pooled), all 8 wide;
10 numerics; a 50-long history hist_video + hist_author reading the candidate's tables; DIN's
activation unit [80, 40] (sigmoid) with the candidate as query; MMoE 4 experts [64, 32]; towers
[32]; 3 tasks. Every vocabulary is set in the file, so it compiles without data.

All contenders train on the same random rows in the packed format the compiled model takes
(``graph.layout.inputs()``: ``ids_d8`` (B, 33), ``seq_tag`` (B, 4) and ``seq_hist_video`` /
``seq_hist_author`` (B, 50) with -1 padding, history lengths uniform 0..50, ``numeric``
(B, 10)), with the same batch, Adam (learning rate 0.001), all-ones per-task sample weights and
one Keras ``fit`` epoch per repetition:

- **composer**: ``composer.compiler.compile_blueprint``, then ``composer.training.start_training``
  as ``composer train`` does: ``PlanTrainer`` (fixed fusion: the sum of the tasks' masked mean
  binary cross-entropies) compiled with the blueprint's optimizer. One difference from
  ``composer train``: under TensorFlow it is fed the NumPy arrays, not ``composer train``'s
  tf.data pipeline, so its input path is the hand-written models'.
- **hand-written (per-table)**: what a user writes in plain Keras (``keras.layers`` and
  ``keras.ops``, no Composer layer): one ``Embedding`` per table (video, author, user, tag and
  each side field; the histories call the candidate's layers), each field a column slice of the
  packed ids; padding replaced by id 0 and masked where it matters (the DIN scores, the tag's
  mean); DIN's unit over [h, c, h - c, h * c]; 4 expert Dense stacks, softmax gates, towers;
  ``model.compile(Adam, loss={task: "binary_crossentropy"})``.
- **hand-written (one-table)**: the same with one stacked ``Embedding`` and per-column offsets,
  one gather per input (flat ids, tag, hist_video, hist_author), groups of fields as slices: a
  careful engineer's version.

``--ablations`` adds contenders that locate a gap:

- **composer net + Keras loss**: Composer's network trained like the hand-written models, so
  the trainer's share shows against **composer**;
- **one-table + Composer's input stage**: the one-table model with the four pieces of
  ``INPUT_PIECES`` done Composer's way (one concatenated gather, the mask multiply, ``take``
  to select fields, the second clean of the history in the DIN unit);
- **composer + <change>**: Composer's own network with one proposed change of ``CHANGES``
  (layer classes swapped by ``keras.models.clone_model``; checked to compute Composer's function
  with its weights), then all three together.

The hand-written models must have Composer's trainable parameters, and Composer's forward pass
must be finite: both are printed, and the script exits with status 1 when one fails. Each
backend runs in its own subprocess (a Keras backend is fixed per process), which builds every
contender once; at each batch size every contender gets an untimed warm-up ``fit`` of two
batches, then the contenders alternate (ABC CBA ...). Timing is ``bench/_timing.py``'s (first
step to epoch end), plus the process's CPU seconds over the same span. Columns: median
examples/s and min..max over the repetitions; the paired ratio composer / contender (median
over repetitions of the two back-to-back rates, with its min and max); the same ratio by CPU
seconds (on a machine other processes keep busy, the wall clock counts waits for a core and CPU
time mostly does not: when the two ratios agree, trust them); CPU seconds per wall second (2.0
= both of 2 cores busy; lower: the process waited). Prints numbers; asserts nothing about time.

    python bench/din_mmoe.py                                    # tensorflow and jax, 1024 and 4096
    python bench/din_mmoe.py --backends tensorflow --batch 1024 --reps 7 --ablations
    python bench/din_mmoe.py --backends jax --batch 1024,8192 --rows 65536 --reps 3   # a GPU (gpu_run.sh)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BLUEPRINT = HERE / "din_mmoe.yaml"
HANDWRITTEN = ("per-table", "one-table")
# Composer's input stage, piece by piece (PackedEmbedding, SelectFields, TargetAttention), as the
# hand-written one-table model can do it (``handwritten(..., pieces)``)
INPUT_PIECES = {
    "one_gather": "one gather of the flat ids and every list input concatenated, then a split "
                  "(else one gather per input)",
    "mask_multiply": "the gathered rows times the 0/1 padding mask (else the history is masked only "
                     "where it matters: the DIN scores, the tag's mean)",
    "take": "each group's fields selected with take() on axis 1 (else a slice: they are contiguous)",
    "clean": "the history's padded rows set to zero again (ops.where) in the DIN unit",
}
# --ablations: extra contenders that tell where a gap comes from
ABLATIONS = {
    "composer net + Keras loss": "Composer's compiled model trained like the hand-written ones "
                                 "(model.compile with one binary_crossentropy per task): the trainer's share",
    "one-table + Composer's input stage": "the one-table model with Composer's input stage, the four "
                                          "pieces of INPUT_PIECES: " + "; ".join(INPUT_PIECES.values()),
}
# --ablations also measures product changes: Composer's own network with layer classes swapped for
# the proposed versions (``proposed_net``), trained by PlanTrainer as "composer" is
CHANGES = {
    "trust": "TargetAttention without its own ops.where over the history: every sequence a Composer "
             "block hands on already has zero rows at padding (PackedEmbedding multiplies the rows by "
             "the mask, SequenceAttention cleans its output); the scores are still masked",
    "slices": "SelectFields takes a contiguous run of columns with a slice, not take() (a gather, "
              "and a scatter in the gradient)",
    "gathers": "PackedEmbedding gathers each input on its own (the flat ids, then each list) instead of "
               "concatenating the ids, gathering once and splitting the rows, and multiplies only the "
               "lists' rows by their mask (not the flat rows by ones)",
}
PROPOSALS = {f"composer + {change}": (change,) for change in CHANGES}
PROPOSALS["composer + all three"] = tuple(CHANGES)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Backends: each name in --backends runs in its own subprocess with KERAS_BACKEND set to "
               "it, whatever KERAS_BACKEND the command itself has; a name that fails to run gives a "
               "'failed' row. Without TensorFlow (the GPU machine of bench/gpu_run.sh) pass --backends jax.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="tensorflow,jax",
                   help="Keras backends, each in its own subprocess (default tensorflow,jax)")
    p.add_argument("--batch", default="1024,4096", help="batch sizes, comma-separated (default 1024,4096)")
    p.add_argument("--rows", type=int, default=24_576,
                   help="random rows; one timed repetition is one fit epoch over the largest multiple of "
                        "the batch size in them (default 24576 = 24 x 1024 = 6 x 4096)")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per contender (default 5)")
    p.add_argument("--warmup-rows", type=int, default=None,
                   help="rows of the untimed warm-up fit of each contender (default 2 batches)")
    p.add_argument("--hand", default=",".join(HANDWRITTEN),
                   help="hand-written contenders: per-table, one-table or both (default both)")
    p.add_argument("--ablations", action="store_true",
                   help="add contenders that locate a gap: Composer's network trained with Keras's loss, the "
                        "one-table model with Composer's input stage, and Composer with each proposed change ("
                        + ", ".join(CHANGES) + ") and with all three (about 3x the time)")
    p.add_argument("--seed", type=int, default=2018, help="seed of the random data and the hand-written "
                   "models' weights")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- data -------------------------------------------------------------------------------------

def synthetic(layout, tasks, n: int, seed: int, aligned: dict | None = None):
    """Random packed inputs with the compiled model's layout: uniform ids, history lengths
    uniform 0..max_len right-aligned (padding -1 first, newest last; the author history has the
    video history's length), tag lengths uniform 0..max_len left-aligned, standard-normal
    numerics. Labels from a logistic rule (a random effect per video and per user, the overlap of
    the candidate's author with the author history, a numeric term) with base rates of a click,
    a long view and a like; sample weights all one, as ``composer train`` gives rows with labels.
    Returns (x, y, w)."""
    rng = np.random.default_rng(seed)
    x = {}
    (dim, names), = layout.categorical_by_dim.items()
    x[layout.input_name(dim)] = np.stack(
        [rng.integers(0, layout.vocab_sizes[name], n, dtype=np.int32) for name in names], axis=1)
    lengths = {}
    for name, lf in layout.lists.items():
        vocab = layout.vocab_sizes[lf.table]
        ids = rng.integers(0, vocab, (n, lf.max_len), dtype=np.int32)
        first = (aligned or {}).get(name)
        length = lengths[first] if first else rng.integers(0, lf.max_len + 1, n)
        lengths[name] = length
        pos = np.arange(lf.max_len)[None, :]
        pad = pos < (lf.max_len - length)[:, None] if lf.ordered else pos >= length[:, None]
        ids[pad] = -1
        x[layout.list_input(name)] = ids
    x["numeric"] = rng.standard_normal((n, len(layout.numeric)), dtype=np.float32)
    flat = x[layout.input_name(dim)]
    video, author, user = (flat[:, names.index(c)] for c in ("video_id", "author_id", "user_id"))
    overlap = (x[layout.list_input("hist_author")] == author[:, None]).sum(1)
    y, w = {}, {}
    for task, base in zip(tasks, (-1.0, -1.5, -3.5)):
        logit = (base + 0.8 * rng.standard_normal(layout.vocab_sizes["video_id"])[video]
                 + 0.8 * rng.standard_normal(layout.vocab_sizes["user_id"])[user] + 0.5 * overlap
                 + x["numeric"] @ rng.normal(0, 0.3, x["numeric"].shape[1]))
        y[task] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)[:, None]
        w[task] = np.ones(n, np.float32)
    return x, y, w


# -- the hand-written models --------------------------------------------------------------------

def settings(graph) -> dict:
    """Widths read from the blueprint, so the hand-written models follow any edit of the file."""
    blocks = {b.type: b for b in graph.blueprint.blocks.values()}
    return {"din": list(blocks["target_attention"].units), "experts": blocks["mmoe"].experts,
            "units": list(blocks["mmoe"].units), "tower": list(blocks["tower"].units)}


def handwritten(layout, tasks, cfg, tables: str, pieces=frozenset()):
    """DIN into MMoE in plain Keras, reading the packed inputs.

    ``tables``: ``per-table`` (one Embedding per table) or ``one-table`` (one stacked Embedding
    with offsets, a gather per input). ``pieces`` (one-table only, the ablations): which parts
    of Composer's input stage to do Composer's way, from ``INPUT_PIECES``."""
    import keras
    from keras import ops

    (dim, flat_names), = layout.categorical_by_dim.items()
    col = {name: i for i, name in enumerate(flat_names)}
    cand_cols = [col["video_id"], col["author_id"]]
    other_cols = [i for i in range(len(flat_names)) if i not in cand_cols]
    owners = layout.tables_by_dim[dim]
    sizes = {name: layout.vocab_sizes[name] for name in owners}
    inputs = {name: keras.Input(shape=shape, dtype=dtype, name=name)
              for name, (shape, dtype) in layout.inputs().items()}
    ids = inputs[layout.input_name(dim)]
    tag, hv, ha = (inputs[layout.list_input(n)] for n in ("tag", "hist_video", "hist_author"))
    hist_valid = ops.greater_equal(hv, 0)

    def no_pad(seq):
        return ops.where(ops.greater_equal(seq, 0), seq, ops.zeros_like(seq))

    if tables == "per-table":
        emb = {name: keras.layers.Embedding(sizes[name], dim, name=f"emb_{name}") for name in owners}
        fields = [emb[name](ids[:, i]) for i, name in enumerate(flat_names)]  # (B, dim) each
        cand = ops.concatenate([fields[i] for i in cand_cols], axis=-1)
        other = ops.concatenate([fields[i] for i in other_cols], axis=-1)
        tag_rows = emb["tag"](no_pad(tag))
        hist = ops.concatenate([emb["video_id"](no_pad(hv)), emb["author_id"](no_pad(ha))], axis=-1)
    else:
        start, offset = 0, {}
        for name in owners:
            offset[name] = start
            start += sizes[name]
        table = keras.layers.Embedding(start, dim, name="embeddings")
        col_offsets = ops.convert_to_tensor([offset[layout.table_of[n]] for n in flat_names], dtype="int32")
        seqs = [(tag, offset[layout.table_of["tag"]]), (hv, offset[layout.table_of["hist_video"]]),
                (ha, offset[layout.table_of["hist_author"]])]
        if "one_gather" in pieces:  # PackedEmbedding: one gather of every input, then split
            shifted = [ids + col_offsets] + [no_pad(s) + off for s, off in seqs]
            rows = table(ops.concatenate(shifted, axis=1))
            if "mask_multiply" in pieces:
                valid = [ops.ones_like(ids, dtype="float32")] + \
                    [ops.cast(ops.greater_equal(s, 0), "float32") for s, _ in seqs]
                rows = rows * ops.expand_dims(ops.concatenate(valid, axis=1), -1)
            cuts = [int(c) for c in np.cumsum([ids.shape[1]] + [s.shape[1] for s, _ in seqs[:-1]])]
            flat_rows, tag_rows, hv_rows, ha_rows = ops.split(rows, cuts, axis=1)
        else:
            flat_rows = table(ids + col_offsets)  # (B, 33, dim)
            tag_rows, hv_rows, ha_rows = (table(no_pad(s) + off) for s, off in seqs)
            if "mask_multiply" in pieces:
                tag_rows, hv_rows, ha_rows = (
                    r * ops.expand_dims(ops.cast(ops.greater_equal(s, 0), "float32"), -1)
                    for r, (s, _) in zip((tag_rows, hv_rows, ha_rows), seqs))
        if "take" in pieces:  # SelectFields: take() the columns of each group
            cand = ops.reshape(ops.take(flat_rows, cand_cols, axis=1), (-1, len(cand_cols) * dim))
            other = ops.reshape(ops.take(flat_rows, other_cols, axis=1), (-1, len(other_cols) * dim))
        else:  # the columns of each group are contiguous: slices
            cand = ops.reshape(flat_rows[:, cand_cols[0]:cand_cols[-1] + 1], (-1, len(cand_cols) * dim))
            other = ops.reshape(flat_rows[:, other_cols[0]:], (-1, len(other_cols) * dim))
        hist = ops.concatenate([hv_rows, ha_rows], axis=-1)
        if "clean" in pieces:  # TargetAttention's _clean: padded rows set to zero again
            hist = ops.where(ops.expand_dims(hist_valid, -1), hist, ops.zeros_like(hist))
    # the tag: masked mean over its ids
    tag_mask = ops.cast(ops.greater_equal(tag, 0), "float32")
    tag_vec = ops.sum(tag_rows * ops.expand_dims(tag_mask, -1), axis=1) / \
        ops.maximum(ops.sum(tag_mask, axis=1, keepdims=True), 1.0)
    numeric = keras.layers.Normalization(mean=[0.0] * len(layout.numeric), variance=[1.0] * len(layout.numeric),
                                         name="numeric_norm")(inputs["numeric"])
    # DIN's activation unit: score each position from [h, c, h - c, h * c]; padding scores 0
    length = hv.shape[1]
    c = ops.repeat(ops.expand_dims(cand, 1), length, axis=1)
    a = ops.concatenate([hist, c, hist - c, hist * c], axis=-1)
    for i, width in enumerate(cfg["din"]):
        a = keras.layers.Dense(width, activation="sigmoid", name=f"din_{i}")(a)
    scores = ops.squeeze(keras.layers.Dense(1, name="din_score")(a), -1)
    scores = ops.where(hist_valid, scores, ops.zeros_like(scores))
    interest = ops.squeeze(ops.matmul(ops.expand_dims(scores, 1), hist), 1)  # (B, 2 dim)
    joined = ops.concatenate([other, tag_vec, numeric, cand, interest], axis=-1)
    # MMoE: K expert stacks, a softmax gate per task, a tower per task
    experts = []
    for k in range(cfg["experts"]):
        h = joined
        for i, width in enumerate(cfg["units"]):
            h = keras.layers.Dense(width, activation="relu", name=f"expert_{k}_{i}")(h)
        experts.append(h)
    experts = ops.stack(experts, axis=1)
    outputs = {}
    for task in tasks:
        gate = keras.layers.Dense(cfg["experts"], activation="softmax", name=f"gate_{task}")(joined)
        z = ops.einsum("bk,bku->bu", gate, experts)
        for i, width in enumerate(cfg["tower"]):
            z = keras.layers.Dense(width, activation="relu", name=f"tower_{task}_{i}")(z)
        outputs[task] = keras.layers.Dense(1, activation="sigmoid", name=task)(z)
    name = "_".join(["handwritten", tables.replace("-", "_"), *sorted(pieces)])
    return keras.Model(inputs, outputs, name=name)


# -- the run of one backend ---------------------------------------------------------------------

def proposed_net(changes):
    """Composer's compiled network with the layer classes that ``changes`` (keys of CHANGES)
    touch swapped for the proposed versions, by ``keras.models.clone_model`` (fresh weights; the
    same function as Composer's network once given its weights)."""
    import keras
    from keras import ops

    from composer.compiler import compile_blueprint
    from composer.layers.features import PackedEmbedding, SelectFields
    from composer.layers.sequence import TargetAttention, _valid

    class TrustingTargetAttention(TargetAttention):
        def call(self, inputs):  # TargetAttention.call without ``seq = _clean(seq, valid)``
            query, seq, mask = inputs
            return self._attend(query, seq, _valid(mask))

    class SlicingSelectFields(SelectFields):
        def call(self, x):
            first, count = self.indices[0], len(self.indices)
            if self.indices == list(range(first, first + count)):
                x = x[:, first:first + count]
            else:
                x = ops.take(x, ops.convert_to_tensor(self.indices, dtype="int32"), axis=1)
            if self.flatten:
                x = ops.reshape(x, (-1, int(np.prod(x.shape[1:]))))
            return x

    class GatherEachEmbedding(PackedEmbedding):
        def call(self, ids):
            if not self.sequences:
                return super().call(ids)
            inputs, out = list(ids), []
            if self.flat:
                flat = ops.cast(inputs.pop(0), "int32")
                rows = ops.take(self.embeddings, flat + self._flat_offsets(flat.shape[-1]), axis=0)
                out.append(ops.cast(rows, self.compute_dtype))
            for table, seq in zip(self.sequences, inputs):
                seq = ops.cast(seq, "int32")
                keep = seq >= 0
                rows = ops.take(self.embeddings, ops.where(keep, seq, 0) + self._offsets[table], axis=0)
                out.append(ops.cast(rows, self.compute_dtype) * ops.expand_dims(ops.cast(keep, self.compute_dtype), -1))
            return out

    swap = {}
    for change in changes:
        swap.update({"trust": {TargetAttention: TrustingTargetAttention},
                     "slices": {SelectFields: SlicingSelectFields},
                     "gathers": {PackedEmbedding: GatherEachEmbedding}}[change])
    net, _ = compile_blueprint(str(BLUEPRINT))

    def clone(layer):
        return swap.get(type(layer), type(layer)).from_config(layer.get_config())

    return keras.models.clone_model(net, clone_function=clone)


def fit_timed(model, x, y, w, batch_size: int) -> tuple[float, float, float]:
    """``_timing.fit_once`` (wall seconds from the first step to the epoch's end, and the epoch's
    loss) that also reads the process's CPU seconds over the same span (every thread: the
    framework's and the input's). On a machine that other processes keep busy, wall time
    counts the waits for a core and CPU time mostly does not, so the two ratios together tell a
    slow spell from a real difference."""
    import time

    import keras

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.end, self.cpu_end = time.perf_counter(), time.process_time()

    clock = Clock()
    history = model.fit(x, y, sample_weight=w, batch_size=batch_size, epochs=1, verbose=0, callbacks=[clock])
    return clock.end - clock.start, clock.cpu_end - clock.cpu_start, float(history.history["loss"][-1])


def child(args):
    import keras

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    from _timing import Timed, alternate, paired_ratio, param_counts, warm_up
    from backends_mmoe8 import device_name
    from composer.compiler import compile_blueprint
    from composer.losses import LossPlan
    from composer.training import Experiment, start_training

    class Run(Timed):
        """A compiled Keras model (or trainer) and the arrays and sample weights it trains on.
        ``net`` is the network whose parameters are counted (the trainer wraps it)."""

        def __init__(self, name, model, net):
            super().__init__(name, 0)
            self.model, self.net = model, net

            self.cpu = []  # process CPU seconds of each repetition

        def warm_up(self, steps, batch_size):
            def head(a):
                return a[:steps * batch_size]

            x, y, w = (keras.tree.map_structure(head, t) for t in data)
            fit_timed(self.model, x, y, w, batch_size)

        def epoch(self, batch_size):
            x, y, w = (keras.tree.map_structure(lambda a: a[:self.examples], t) for t in data)
            seconds, cpu, loss = fit_timed(self.model, x, y, w, batch_size)
            self.cpu.append(cpu)
            return seconds, loss

    def keras_compiled(name, model):
        """The hand-written models' training: Keras compile, one binary cross-entropy per task."""
        model.compile(optimizer=keras.optimizers.Adam(lr), loss={t: "binary_crossentropy" for t in tasks})
        return Run(name, model, model)

    def composer_run(name="composer", model=None):
        """compile_blueprint, then start_training: the PlanTrainer ``composer train`` fits
        (fixed fusion), compiled with the blueprint's optimizer. ``model``: another network
        in its place (the PROPOSALS)."""
        net, graph = compile_blueprint(str(BLUEPRINT))
        net = model or net
        plan = LossPlan.from_blueprint(graph.blueprint)
        exp = Experiment(graph.blueprint, graph, None, None, net, plan, "random")
        return Run(name, start_training(exp), net)

    def one_table(pieces):
        keras.utils.set_random_seed(args.seed)
        return handwritten(layout, tasks, cfg, "one-table", frozenset(pieces))

    _, graph = compile_blueprint(str(BLUEPRINT))
    layout, tasks, cfg = graph.layout, graph.blueprint.task_names, settings(graph)
    lr = graph.blueprint.training.learning_rate
    assert graph.blueprint.training.optimizer == "adam", "the hand-written models train with Adam"
    aligned = {f.name: f.aligned_with for f in graph.blueprint.features if getattr(f, "aligned_with", None)}
    data = synthetic(layout, tasks, args.rows, args.seed, aligned)

    runs, same = [composer_run()], {}
    for tables in args.hand.split(","):
        keras.utils.set_random_seed(args.seed)
        runs.append(keras_compiled(f"hand-written ({tables})", handwritten(layout, tasks, cfg, tables)))
    if args.ablations:
        net = compile_blueprint(str(BLUEPRINT))[0]
        runs.append(keras_compiled("composer net + Keras loss", net))
        runs.append(keras_compiled("one-table + Composer's input stage", one_table(INPUT_PIECES)))
        for proposal, changes in PROPOSALS.items():
            runs.append(composer_run(proposal, proposed_net(changes)))
            runs[-1].net.set_weights(runs[0].net.get_weights())  # then it computes Composer's function
            a, b = (r.net(keras.tree.map_structure(lambda v: v[:512], data[0])) for r in (runs[0], runs[-1]))
            same[proposal] = max(float(np.abs(keras.ops.convert_to_numpy(a[t]) - keras.ops.convert_to_numpy(b[t])).max())
                                 for t in tasks)
    ours = runs[0]
    probe = ours.net(keras.tree.map_structure(lambda a: a[:512], data[0]), training=False)
    finite = bool(all(np.isfinite(keras.ops.convert_to_numpy(p)).all() for p in probe.values()))
    params = {run.name: param_counts(run.net)[0] for run in runs}

    results = []
    for batch in [int(b) for b in args.batch.split(",")]:
        n = (args.rows // batch) * batch
        for run in runs:
            run.examples, run.seconds, run.losses, run.cpu = n, [], [], []
        warm_rows = args.warmup_rows or 2 * batch
        warmup = warm_up(runs, max(1, warm_rows // batch), batch)
        alternate(runs, args.reps, batch)  # every contender in turn, the order flipped every repetition
        results.append({
            "backend": keras.backend.backend(), "device": device_name(), "batch": batch, "rows": n,
            "finite": finite, "graph_params": graph.total_params, "same": same,
            "models": [{"name": run.name, "rates": run.rates, "median": run.median_rate,
                        "loss": run.losses[-1], "params": params[run.name], "warmup": warmup[run.name],
                        "ratio": None if run is ours else paired_ratio(ours, run),
                        "ratios": None if run is ours else [a / b for a, b in zip(ours.rates, run.rates)],
                        "cpu_ratios": None if run is ours else [b / a for a, b in zip(ours.cpu, run.cpu)],
                        "cpu_share": statistics.median(c / s for c, s in zip(run.cpu, run.seconds))}
                       for run in runs]})
        print(f"batch {batch} done", file=sys.stderr, flush=True)
    print("RESULT " + json.dumps(results))


# -- the parent: one subprocess per backend, one table ---------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    batches = [int(b) for b in args.batch.split(",")]
    if max(batches) > args.rows:
        sys.exit(f"--rows {args.rows} is smaller than the batch size {max(batches)}")
    if args.child:
        return child(args)
    from tabulate import tabulate

    sys.path.insert(0, str(HERE))
    from _timing import rate

    rows, summary, notes, devices, problems, rows_of = [], [], [], {}, [], {}
    for backend in args.backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        cmd = [sys.executable, __file__, "--child", "--batch", args.batch, "--rows", str(args.rows),
               "--reps", str(args.reps), "--hand", args.hand, "--seed", str(args.seed)] \
            + (["--warmup-rows", str(args.warmup_rows)] if args.warmup_rows else []) \
            + (["--ablations"] if args.ablations else [])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            why = (proc.stderr.strip().splitlines() or ["?"])[-1][:120]
            rows.append([backend, "-", "failed: " + why] + [""] * 8)
            problems.append(f"{backend}: the run failed ({why})")
            continue
        for r in json.loads(lines[-1][7:]):
            devices[backend] = r["device"]
            ours = r["models"][0]
            for m in r["models"]:
                same = "" if m["params"] == ours["params"] else " (differs)"
                wall = cpu = ""
                if m["ratios"] is not None:
                    wall = f"{m['ratio']:.2f}x [{min(m['ratios']):.2f}, {max(m['ratios']):.2f}]"
                    cpu = f"{statistics.median(m['cpu_ratios']):.2f}x [{min(m['cpu_ratios']):.2f}, " \
                          f"{max(m['cpu_ratios']):.2f}]"
                rows.append([backend, r["batch"], m["name"], rate(m["median"]),
                             f"{rate(min(m['rates']))}..{rate(max(m['rates']))}", wall, cpu,
                             f"{m['cpu_share']:.2f}", f"{m['params']:,}{same}", f"{m['loss']:.4f}",
                             f"{m['warmup']:.1f}"])
                if m["ratios"] is not None and m["name"].startswith("hand-written"):
                    summary.append([backend, r["batch"], m["name"], rate(ours["median"]), rate(m["median"]),
                                    f"{m['ratio']:.2f}x [{min(m['ratios']):.2f}, {max(m['ratios']):.2f}]",
                                    f"{statistics.median(m['cpu_ratios']):.2f}x [{min(m['cpu_ratios']):.2f}, "
                                    f"{max(m['cpu_ratios']):.2f}]"])
            rows_of[backend, r["batch"]] = r["rows"]
        r = json.loads(lines[-1][7:])[0]  # built once per backend: the same models at every batch size
        ours = r["models"][0]
        problems += [f"{backend}: Composer's forward pass is not finite"] * (not r["finite"])
        problems += [f"{backend}: {m['name']} has {m['params']:,} trainable parameters, Composer {ours['params']:,}"
                     for m in r["models"] if m["params"] != ours["params"]]
        problems += [f"{backend}: '{k}' does not compute Composer's function (max difference {v:.1e})"
                     for k, v in r["same"].items() if not v <= 1e-5]
        notes.append(f"{backend}: Composer's forward pass finite: {r['finite']}; trainable parameters: composer "
                     f"{ours['params']:,} (its block graph: {r['graph_params']:,}), "
                     + ", ".join(f"{m['name']} {m['params']:,}" for m in r["models"][1:]
                                 if m["name"].startswith("hand-written"))
                     + (f"; the proposed changes compute Composer's function (outputs with its weights differ by "
                        f"at most {max(r['same'].values()):.1e})" if r["same"] else ""))
    where = ", ".join(f"{b} on {d}" for b, d in devices.items())
    epochs = ", ".join(f"{n:,} rows at batch {b}" for b, n in sorted({b: n for (_, b), n in rows_of.items()}.items()))
    print(f"DIN into MMoE (bench/din_mmoe.yaml), Adam 0.001; one fit epoch per repetition ({epochs}); "
          f"{args.reps} repetitions per contender after an untimed warm-up; {os.cpu_count()} CPU cores; {where}")
    print(tabulate(rows, headers=["backend", "batch", "model", "median ex/s", "min..max",
                                  "composer/this, paired [min, max]", "same, by CPU time",
                                  "CPU/wall", "trainable params", "last loss", "warm-up s"],
                   colalign=("left", "right", "left", *["right"] * 8), disable_numparse=True))
    print()
    print(tabulate(summary, headers=["backend", "batch", "against", "composer ex/s", "hand-written ex/s",
                                     "composer/hand-written, paired median [min, max]", "by CPU time"],
                   colalign=("left", "right", "left", "right", "right", "right", "right"),
                   disable_numparse=True))
    for line in notes:
        print(line)
    for line in problems:
        print("CHECK FAILED: " + line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
