"""Embedding tables split by rows over a device mesh (distribution: model_parallel, issue 21),
on 8 virtual CPU devices (the script re-runs itself with KERAS_BACKEND=jax and
XLA_FLAGS=--xla_force_host_platform_device_count=8 unless they are set).

Three parts, each through Composer's own path (``prepare`` -> ``start_training`` -> the feed
``composer train`` uses, i.e. the scanned loop, epochs timed without validation):

1. **Too large for one device**: a hashed user table of ``--big-rows`` x 32 under Adam, with a
   stated per-device budget ``--budget-mb``: replicated (data_parallel) it is refused by the
   memory plan (the exit-2 message is printed), sharded over 8 it trains (losses printed).
2. **Throughput**: a table small enough for both layouts (``--small-rows``): data_parallel
   (replicated) against model_parallel (split over 8), alternated ABBA... in one process, the
   ratio of each pair's examples/s and their median.
3. **Memory plan against measured**: per device, the plan's bytes against the sum of
   ``addressable_shards`` nbytes on device 0 of every trainer and optimizer variable; and the
   compiled step's temporaries per device (XLA's ``memory_analysis``), which would show a
   sharded table being gathered whole.

CPU devices share one host's memory and cores: the throughput ratio measures the partitioned
program's overhead (collectives, the masked local gathers), not what 8 accelerators gain.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

BLUEPRINT = """
name: sharded_bench
data: synthetic
features:
  - {{name: user_id, kind: categorical, dim: 32, hash_buckets: {rows}}}
  - {{name: item_id, kind: categorical, dim: 32}}
  - {{name: item_category, kind: categorical, dim: 8}}
  - {{name: user_segment, kind: categorical, dim: 8}}
  - {{name: price, kind: numeric}}
  - {{name: user_activity, kind: numeric}}
groups: {{all: ["*"]}}
tasks: from_data
blocks:
  x: {{type: embed, group: all}}
  bottom: {{type: shared_bottom, input: x, units: [64]}}
  tower: {{type: tower, for_each: task, input: "bottom.{{task}}", units: [16]}}
outputs: "tower.{{task}}"
training: {{optimizer: adam, batch_size: {batch}, epochs: 1, shard_min_rows: 10000}}
"""


def _reexec():
    if os.environ.get("KERAS_BACKEND") == "jax" and "device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def _blueprint(folder, rows, batch):
    path = os.path.join(folder, f"bench_{rows}.yaml")
    with open(path, "w") as fh:
        fh.write(BLUEPRINT.format(rows=rows, batch=batch))
    return path


def _experiment(path, data, **training):
    from composer import training as tr

    return tr.prepare(path, data=data, training=training)


def _feed(exp):
    from composer.training import start_training
    from composer.training.feeds import feed_for

    trainer = start_training(exp)
    return feed_for(exp, trainer, exp.bp.training.batch_size)


def _epoch(feed, epoch):
    t0 = time.perf_counter()
    logs = feed.train_epoch(epoch, lambda: False)
    return time.perf_counter() - t0, logs["loss"]


def _measured_bytes(feed, device):
    """Bytes on ``device`` of the training state's weights and optimizer variables (the scanned
    loop's arrays: the Keras variables' own were donated to its first step)."""
    import jax

    weights_and_slots = feed.loop.state[:3]
    return sum(s.data.nbytes for a in jax.tree.leaves(weights_and_slots) for s in a.addressable_shards
               if s.device == device)


def _step_temp_bytes(feed):
    """XLA's temporaries of one compiled training step (per device)."""
    import jax

    loop = feed.loop
    batch = jax.tree.map(lambda a: a[: loop.batch_size], loop.device)
    compiled = loop._step.lower(loop.state, batch).compile()
    stats = compiled.memory_analysis()
    return getattr(stats, "temp_size_in_bytes", None)


def part_too_large(folder, args):
    from composer.blueprint.errors import BlueprintError
    from composer.memory_plan import MIB

    print(f"\n1. a {args.big_rows:,} x 32 user table under Adam, budget {args.budget_mb} MiB per device")
    path = _blueprint(folder, args.big_rows, args.batch)
    data = f"synthetic:rows={args.rows}"
    try:
        _experiment(path, data, distribution="data_parallel", device_memory_mb=args.budget_mb)
        print("   replicated: accepted (unexpected: raise --big-rows)")
    except BlueprintError as exc:
        print(f"   replicated (data_parallel over 8): refused, exit 2: {exc}")
    exp = _experiment(path, data, distribution="model_parallel", device_memory_mb=args.budget_mb)
    feed = _feed(exp)
    losses = [_epoch(feed, e)[1] for e in range(2)]
    import jax

    measured = _measured_bytes(feed, jax.devices()[0])
    print(f"   sharded (model_parallel, {exp.parallel.describe(args.batch)}): trained 2 epochs, losses "
          f"{', '.join(f'{x:.4f}' for x in losses)}; device 0 holds {measured / MIB:,.1f} MiB of variables")
    feed.close()


def part_throughput(folder, args):
    print(f"\n2. throughput, a {args.small_rows:,} x 32 user table (both layouts fit), batch {args.batch}, "
          f"{args.rows:,} rows, {args.pairs} pairs ABBA")
    path = _blueprint(folder, args.small_rows, args.batch)
    data = f"synthetic:rows={args.rows}"
    feeds, train_rows = {}, None
    for kind in ("data_parallel", "model_parallel"):
        exp = _experiment(path, data, distribution=kind)
        feeds[kind] = _feed(exp)
        train_rows = exp.dataset.counts()["train"]
        _epoch(feeds[kind], 0)  # compile
    speed = {k: [] for k in feeds}
    epoch = 1
    for i in range(args.pairs):
        order = ("data_parallel", "model_parallel") if i % 2 == 0 else ("model_parallel", "data_parallel")
        for kind in order:
            seconds, _ = _epoch(feeds[kind], epoch)
            speed[kind].append(train_rows / seconds)
        epoch += 1
    ratios = [s / r for s, r in zip(speed["model_parallel"], speed["data_parallel"])]
    for kind, values in speed.items():
        print(f"   {kind:15s} median {statistics.median(values):>12,.0f} examples/s  "
              f"({', '.join(f'{v:,.0f}' for v in values)})")
    print(f"   sharded / replicated: median ratio {statistics.median(ratios):.3f} "
          f"(pairs: {', '.join(f'{r:.3f}' for r in ratios)})")
    return feeds


def part_memory(feeds, args):
    import jax

    from composer.memory_plan import MIB, MemoryPlan

    print("\n3. memory plan against measured, per device (device 0)")
    print(f"   {'layout':15s} {'plan MiB':>10s} {'measured MiB':>13s} {'measured/plan':>13s} {'step temporaries MiB':>21s}")
    for kind, feed in feeds.items():
        exp = feed.exp
        plan = MemoryPlan.of(exp.graph, exp.bp.training, exp.parallel.mesh_devices)
        planned = plan.per_device()
        measured = _measured_bytes(feed, jax.devices()[0])
        temp = _step_temp_bytes(feed)
        temp_text = f"{temp / MIB:,.2f}" if temp is not None else "n/a"
        print(f"   {kind:15s} {planned / MIB:>10,.2f} {measured / MIB:>13,.2f} {measured / planned:>13.3f} "
              f"{temp_text:>21s}")
        feed.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20000, help="synthetic data rows")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--big-rows", type=int, default=2_000_000, help="part 1: the table too large for one device")
    p.add_argument("--budget-mb", type=int, default=256, help="part 1: the per-device budget")
    p.add_argument("--small-rows", type=int, default=200_000, help="parts 2 and 3: a table both layouts fit")
    p.add_argument("--pairs", type=int, default=6)
    args = p.parse_args()
    _reexec()
    import jax
    import keras

    print(f"keras {keras.__version__}, jax {jax.__version__}, {len(jax.devices())} {jax.devices()[0].platform} devices")
    with tempfile.TemporaryDirectory() as folder:
        part_too_large(folder, args)
        feeds = part_throughput(folder, args)
        part_memory(feeds, args)


if __name__ == "__main__":
    main()
