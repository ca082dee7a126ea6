"""Is the input pipeline the bottleneck? Preprocessing, tf.data and training throughput, side by side.

For one blueprint on one dataset, in one run, this measures the three stages of Composer's
training path (``composer.training.prepare`` / ``fit``):

1. **preprocessing**: rows/s of ``Preprocessor.pack`` on the train frame (raw columns -> the
   packed id and numeric matrices). It runs once per run, before training, so it is also shown
   as a share of a whole training run (the blueprint's ``epochs`` at the measured rate).
2. **pipeline alone**: examples/s that ``composer.data.tf_pipeline.make_dataset`` (the
   blueprint's batch size, shuffle on, as ``fit`` builds it) delivers to a Python loop with no
   model. Each repetition is one full epoch from a fresh iterator, as ``fit`` makes one per
   epoch. The shuffle buffer holds the whole train split, so the first batch of every epoch
   waits for the buffer to fill; the table shows that fill, the rate after it ("steady") and
   the rate over the whole epoch ("epoch"). The epoch rate is the one compared with training.
3. **training**: examples/s of ``model.fit`` for one epoch on that pipeline, compiled as
   ``composer.training.fit`` compiles (the blueprint's optimizer, binary cross-entropy per task
   output, the loss plan's weights, sample weights masking missing labels).
4. **input wait**: the share of a training epoch spent waiting for input. Method: the same
   model also trains on the same batches replayed from memory: the pipeline with ``.cache()``
   appended, filled by one untimed pass, so every epoch replays the first pass's batches (same
   shapes, dtypes, batch count, in one order) and does no shuffling or batching. The only
   difference between the two fits is the input work, so
   ``wait = 1 - t(cached) / t(pipeline)``, taken per repetition (the two fits ran back to back)
   and reported as the median. Timing ``iterator.get_next`` inside a custom loop was rejected:
   with ``prefetch`` it shows only the stalls, not the CPU the producer threads take from the
   model's own ops while they run alongside it (2 cores here), and it needs a hand-written step
   loop instead of ``fit``. (A check with such a loop on the synthetic data found the train step
   itself 1.3-1.6x slower beside the pipeline than beside cached batches: time get_next misses.)
   The difference of two fits counts both, and the shuffle fill too. A small negative wait is
   measurement noise.

The verdict rests on the wait, and on the pipeline's rate against training from memory. The
pipeline's rate against training on the pipeline (asked for as the headline ratio, and printed)
cannot show a bottleneck by itself: when input is the limit, training runs at about the
pipeline's pace, so that ratio stays at or above 1 whatever happens.

Every timed ``fit`` is clocked as ``bench/_timing.py`` does: from the start of its first step
to the end of its last. Keras fetches each batch inside the step, so the shuffle fill falls
inside the clock. The repetitions alternate between the three contenders (pipeline alone,
train on pipeline, train on cached), in reversed order every other repetition, after one
untimed warm-up of each (which traces the train function).

    python bench/input_pipeline.py                    # blueprints/mmoe.yaml on synthetic
    python bench/input_pipeline.py --data census-mtl

Prints numbers and a conclusion computed from them; asserts nothing about time.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # so a clone runs it without installing the package

from tabulate import tabulate  # noqa: E402

from _timing import Run, paired_ratio, rate  # noqa: E402

BLUEPRINT = HERE.parent / "blueprints" / "mmoe.yaml"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blueprint", default=str(BLUEPRINT), help="blueprint (default: %(default)s)")
    p.add_argument("--data", default=None,
                   help="dataset name or data YAML (default: the blueprint's own, e.g. synthetic)")
    p.add_argument("--rows", type=int, default=None,
                   help="read at most this many rows per data file (default: all)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch size (default: the blueprint's training.batch_size)")
    p.add_argument("--reps", type=int, default=5, help="timed epochs of each contender")
    p.add_argument("--pack-reps", type=int, default=5, help="timed Preprocessor.pack calls")
    p.add_argument("--material", type=float, default=0.10,
                   help="input-wait share from which the pipeline counts as a cost (default 0.10)")
    return p.parse_args(argv)


def time_pack(exp, reps: int) -> list[float]:
    """Seconds of ``Preprocessor.pack`` on the whole train frame, ``reps`` times."""
    frame = exp.dataset.part("train").frame
    seconds = []
    for _ in range(reps):
        t0 = time.perf_counter()
        exp.pre.pack(frame, exp.graph.layout)
        seconds.append(time.perf_counter() - t0)
    return seconds


def batch_size_of(batch) -> int:
    x = batch[0]
    return int(next(iter(x.values())).shape[0])


def iterate_epoch(ds) -> tuple[float, float, int, int]:
    """One epoch of ``ds`` from a fresh iterator, no model: (seconds to the first batch, seconds
    for the rest, examples in the first batch, examples in all)."""
    t0 = time.perf_counter()
    it = iter(ds)
    first = next(it)
    t1 = time.perf_counter()
    n_first = batch_size_of(first)
    n = n_first
    for batch in it:
        n += batch_size_of(batch)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, n_first, n


def fit_epoch(model, ds) -> tuple[float, float]:
    """One ``fit`` epoch on a dataset: wall seconds from the start of its first step to the end
    of its last (each step fetches its batch), and the epoch's mean loss."""
    import keras

    class Steps(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.end = time.perf_counter()

    steps = Steps()
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False, callbacks=[steps])
    return steps.end - steps.start, float(history.history["loss"][-1])


def compile_like_fit(exp) -> None:
    """Compile exactly as ``composer.training.fit`` does."""
    import keras

    from composer.training.loop import _optimizer

    training = exp.bp.training
    keras.utils.set_random_seed(training.seed)
    plan = exp.plan
    exp.model.compile(optimizer=_optimizer(training),
                      loss={t.output: "binary_crossentropy" for t in plan.terms},
                      loss_weights={t.output: t.weight for t in plan.terms})


def conclusion(ratio: float, headroom: float, wait: float, material: float) -> str:
    """The verdict rests on the measured wait. ``ratio`` (pipeline over training on it) alone
    cannot show a bottleneck: when input is the limit, training on the pipeline runs at about the
    pipeline's pace, so the ratio stays near or above 1. ``headroom`` compares the pipeline with
    what the model consumes when input costs nothing (training on cached batches)."""
    feeds = (f"pipeline alone feeds {ratio:.1f}x what training on it consumes, "
             f"{headroom:.1f}x what the model consumes from memory")
    waits = f"training waits for input {wait:.0%} of an epoch"
    if wait >= 0.5 or (wait >= material and headroom < 1.0):
        return f"{feeds}; {waits}: the input pipeline IS the bottleneck"
    if wait >= material:
        return f"{feeds}; {waits}: not the main limit, but a material cost (>= {material:.0%})"
    return f"{feeds}; {waits}: not the bottleneck"


def main(argv=None) -> None:
    args = parse_args(argv)
    import keras
    import tensorflow as tf

    from composer.data.tf_pipeline import make_dataset
    from composer.training import prepare

    if keras.backend.backend() != "tensorflow":
        sys.exit(f"this benchmark measures the tf.data pipeline: run it with KERAS_BACKEND=tensorflow "
                 f"(now {keras.backend.backend()})")

    exp = prepare(args.blueprint, data=args.data, rows=args.rows)
    training = exp.bp.training
    batch_size = args.batch_size or training.batch_size
    compile_like_fit(exp)

    # 1. preprocessing: raw train frame -> packed inputs, once per run
    pack_seconds = time_pack(exp, args.pack_reps)
    x, y, w = exp.arrays("train")
    n = len(next(iter(x.values())))

    # 2.-4. the pipeline fit builds, the same with its first pass cached
    pipe = make_dataset(x, y, w, batch_size, True, training.seed)
    cached = make_dataset(x, y, w, batch_size, True, training.seed).cache()
    iterate_epoch(cached)  # fills the cache (untimed)

    alone = Run("pipeline alone", None, pipe, None, n)
    trained = Run("train on pipeline", exp.model, pipe, None, n)
    replayed = Run("train on cached batches", exp.model, cached, None, n)
    fills, steadies, cached_alone = [], [], []

    def measure(run: Run, timed: bool = True) -> None:
        if run is alone:
            fill, rest, n_first, count = iterate_epoch(pipe)
            assert count == n, (count, n)
            if timed:
                run.seconds.append(fill + rest)
                fills.append(fill)
                steadies.append((count - n_first) / rest)
        else:
            seconds, loss = fit_epoch(run.model, run.x)
            if timed:
                run.seconds.append(seconds)
                run.losses.append(loss)

    t_start = time.perf_counter()
    for run in (alone, trained, replayed):  # warm-up: traces the train function, warms tf.data
        measure(run, timed=False)
    order = [alone, trained, replayed]
    for rep in range(args.reps):
        for run in (order if rep % 2 == 0 else order[::-1]):
            measure(run)
        fill, rest, _, _ = iterate_epoch(cached)  # a check that the cache replays without work
        cached_alone.append(n / (fill + rest))
    bench_s = time.perf_counter() - t_start

    pack_rate = [n / s for s in pack_seconds]
    pack_s = statistics.median(pack_seconds)
    epoch_s = statistics.median(trained.seconds)
    ratio = paired_ratio(alone, trained)
    steady_ratio = statistics.median(s / r for s, r in zip(steadies, trained.rates))
    headroom = paired_ratio(alone, replayed)
    compute_over_pipe = paired_ratio(replayed, trained)  # t(pipeline) / t(cached), per rep
    wait = 1 - 1 / compute_over_pipe
    run_s = training.epochs * epoch_s

    def spread(values):
        return f"{rate(min(values))}..{rate(max(values))}"

    rows = [
        ["1 preprocess", "Preprocessor.pack, train frame (once per run)", rate(statistics.median(pack_rate)),
         spread(pack_rate), f"{pack_s:.3f}", ""],
        ["2 pipeline alone", "epoch from a fresh iterator, shuffle fill included", rate(alone.median_rate),
         alone.spread, f"{statistics.median(alone.seconds):.3f}",
         f"first batch (shuffle fill) {statistics.median(fills):.3f} s"],
        ["", "steady: batches after the first", rate(statistics.median(steadies)), spread(steadies),
         "", ""],
        ["", "cached batches, replayed (check)", rate(statistics.median(cached_alone)),
         spread(cached_alone), "", ""],
        ["3 train on pipeline", "model.fit, one epoch", rate(trained.median_rate), trained.spread,
         f"{epoch_s:.3f}", f"last loss {trained.losses[-1]:.4f}"],
        ["4 train on cached", "model.fit, same batches from memory", rate(replayed.median_rate),
         replayed.spread, f"{statistics.median(replayed.seconds):.3f}",
         f"last loss {replayed.losses[-1]:.4f}"],
    ]
    print(f"{exp.bp.name} on {exp.data_name}: {n:,} train rows, batch {batch_size}, "
          f"{-(-n // batch_size)} steps per epoch, shuffle buffer {min(n, 1_000_000):,}; "
          f"timed epochs: {args.reps} of each ({bench_s:.0f} s), "
          f"Keras {keras.__version__}, TensorFlow {tf.__version__}, {os.cpu_count()} CPUs")
    print(tabulate(rows, headers=["stage", "what", "median ex/s", "min..max", "median s",
                                  "note"], disable_numparse=True))
    print(f"pipeline ex/s / training ex/s: {ratio:.2f} (paired, whole epochs; "
          f"medians {alone.median_rate / trained.median_rate:.2f}; steady state {steady_ratio:.2f})")
    print(f"pipeline ex/s / training-from-memory ex/s: {headroom:.2f} (paired; "
          f"medians {alone.median_rate / replayed.median_rate:.2f})")
    print(f"input wait: {wait:.1%} of a training epoch (paired: 1 - t(cached) / t(pipeline); "
          f"medians {1 - trained.median_rate / replayed.median_rate:.1%}); the shuffle fill alone "
          f"is {statistics.median(fills) / epoch_s:.1%} of it")
    print(f"preprocessing: pack {pack_s:.2f} s once per run = "
          f"{pack_s / (pack_s + run_s):.1%} of pack + {training.epochs} training epochs")
    print(conclusion(ratio, headroom, wait, args.material))


if __name__ == "__main__":
    main()
