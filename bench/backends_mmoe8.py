"""MMoE-8 training throughput per Keras backend: the Composer blueprint against the same network
hand-written in Keras with packed inputs, side by side, at several batch sizes; under the torch
backend also against PyTorch models (``bench/torch_mmoe8.py``).

The blueprint is ``bench/mmoe8.yaml`` (census-shaped: 35 categorical fields x dim 8, 7
numerics, 8 experts [256, 128], towers [64], 2 tasks). The hand-written model is what a careful
engineer writes without Composer: one stacked embedding table with per-field offsets (one
gather), all experts as one batched einsum per layer, softmax gates, towers; ``keras.ops`` only,
so it runs on every backend. Both train with Adam on the same random data (the labels of
``bench/mmoe_vs_funrec.py``). Each backend runs in its own subprocess (a Keras backend is fixed
per process); within one, the models alternate (ABBA...) at each batch size. In the ``torch``
subprocess three PyTorch contenders join them, trained by a plain PyTorch loop on the same data:
the network hand-written in PyTorch, eager and under ``torch.compile``, and torch-rechub's
``MMOE`` (a row "not installed" when it cannot be imported). Every ratio is against the
hand-written Keras model of the same subprocess.

    python bench/backends_mmoe8.py                                  # tensorflow and jax, 1024 and 8192
    python bench/backends_mmoe8.py --backends torch                 # Keras on torch + PyTorch models
    python bench/backends_mmoe8.py --backends jax --batch-sizes 1024,8192,32768

On a GPU it is part 1 and 3 of ``bench/gpu_run.sh`` (issue 8's GPU benchmark; the PyTorch
models and data go to the GPU too); on a CPU the same run compares the backends side by side.
``--both-lowerings`` adds the blueprint compiled with the expert lowering that ``auto`` does not
pick on this device. Prints numbers; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_STEPS = {"torch": 3}  # five contenders share the torch run, and Keras on torch is slow on CPU


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default="tensorflow,jax")
    p.add_argument("--batch-sizes", default="1024,8192")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per timed repetition (default 6; 3 under torch, where five "
                        "models share the run)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--seed", type=int, default=2018)
    p.add_argument("--no-torch-models", action="store_true",
                   help="under the torch backend, leave out the PyTorch models of torch_mmoe8.py")
    p.add_argument("--both-lowerings", action="store_true",
                   help="add a contender: the blueprint with the expert lowering that 'auto' does "
                        "not pick on this device (stacks <-> einsum)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def handwritten_mmoe(layout, tasks, experts, units, tower):
    """Packed inputs, one gather, batched experts; plain Keras, no Composer layer."""
    import keras
    from keras import ops

    (dim, names), = layout.categorical_by_dim.items()
    sizes = [layout.vocab_sizes[n] for n in names]
    offsets = ops.convert_to_tensor([sum(sizes[:i]) for i in range(len(sizes))], dtype="int32")

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="handwritten_mmoe")
            self.table = keras.layers.Embedding(sum(sizes), dim)
            self.kernels, self.biases = [], []
            self.gates = [keras.layers.Dense(experts, activation="softmax") for _ in tasks]
            self.towers = [[keras.layers.Dense(w, activation="relu") for w in tower] + [keras.layers.Dense(1)]
                           for _ in tasks]

        def build(self, shapes):
            d = len(names) * dim + shapes["numeric"][-1]
            for i, w in enumerate(units):
                self.kernels.append(self.add_weight(shape=(experts, d, w), initializer="glorot_uniform",
                                                    name=f"kernel_{i}"))
                self.biases.append(self.add_weight(shape=(experts, w), initializer="zeros", name=f"bias_{i}"))
                d = w

        def call(self, inputs):
            ids = inputs[layout.input_name(dim)] + offsets
            x = ops.concatenate([ops.reshape(self.table(ids), (-1, len(names) * dim)), inputs["numeric"]], -1)
            h = ops.relu(ops.einsum("bi,kio->bko", x, self.kernels[0]) + self.biases[0])
            for kernel, bias in zip(self.kernels[1:], self.biases[1:]):
                h = ops.relu(ops.einsum("bki,kio->bko", h, kernel) + bias)
            out = {}
            for task, gate, layers in zip(tasks, self.gates, self.towers):
                z = ops.einsum("bk,bko->bo", gate(x), h)
                for layer in layers:
                    z = layer(z)
                out[task] = ops.sigmoid(z)
            return out

    return Net()


def other_lowering(graph, lowering: str, seed: int):
    """The blueprint compiled with its MMoE's ``implementation`` set to ``lowering``."""
    import keras

    from composer.compiler import compile_graph
    from composer.graph import build_graph

    bp = graph.blueprint
    blocks = {name: block.model_copy(update={"implementation": lowering}) if block.type == "mmoe" else block
              for name, block in bp.blocks.items()}
    keras.utils.set_random_seed(seed)
    return compile_graph(build_graph(bp.model_copy(update={"blocks": blocks})))


def device_name() -> str:
    """What the Keras backend of this process computes on, e.g. ``gpu NVIDIA H200`` or ``cpu``."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        return d.platform if d.platform == "cpu" else f"{d.platform} {d.device_kind}"
    if backend == "torch":
        import torch

        from composer.devices import torch_device

        device = torch_device()
        return f"gpu {torch.cuda.get_device_name()}" if device == "cuda" else device
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu ({len(gpus)})" if gpus else "cpu"
    return backend


def child(args):
    """One backend's run: every contender at every batch size; prints one RESULT line (JSON)."""

    import keras
    from tabulate import tabulate  # noqa: F401  (fail early, as the parent does)

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    from _timing import Run, alternate, paired_ratio, param_counts, warm_up
    from composer.compiler import compile_graph
    from mmoe_vs_funrec import composer_graph, mmoe_settings, synthetic

    from composer.blocks.experts import auto_lowering

    graph = composer_graph(str(HERE / "mmoe8.yaml"), None)
    other = "einsum" if auto_lowering() == "stacks" else "stacks"
    tasks, settings = graph.blueprint.task_names, mmoe_settings(graph)
    lr = graph.blueprint.training.learning_rate
    with_torch = keras.backend.backend() == "torch" and not args.no_torch_models

    results = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        n = args.steps * batch
        packed, _, labels = synthetic(graph.layout, tasks, n, args.seed)
        keras.utils.set_random_seed(args.seed)
        ours = compile_graph(graph)
        keras.utils.set_random_seed(args.seed)
        theirs = handwritten_mmoe(graph.layout, tasks, **settings)
        theirs(keras.tree.map_structure(lambda a: a[:2], packed))
        for model in (ours, theirs):
            model.compile(optimizer=keras.optimizers.Adam(lr),
                          loss={t: "binary_crossentropy" for t in tasks})
        runs = [Run(f"composer ({auto_lowering()})", ours, packed, labels, n),
                Run("Keras hand-written", theirs, packed, labels, n)]
        if args.both_lowerings:
            runs.append(Run(f"composer ({other})", other_lowering(graph, other, args.seed), packed, labels, n))
            runs[-1].model.compile(optimizer=keras.optimizers.Adam(lr),
                                   loss={t: "binary_crossentropy" for t in tasks})
        params = {run.name: param_counts(run.model)[0] for run in runs}
        missing = {}
        if with_torch:
            from torch_mmoe8 import torch_runs

            more, missing = torch_runs(graph.layout, tasks, settings, packed, labels, n, args.seed)
            runs += more
            params.update({run.name: run.params for run in more})
        warmup = warm_up(runs, args.warmup_steps, batch)
        alternate(runs, args.reps, batch)  # all contenders in turn, the order flipped every repetition
        results.append({"backend": keras.backend.backend(), "device": device_name(),
                        "batch": batch, "missing": missing,
                        "models": [{"name": run.name, "rates": run.rates, "loss": run.losses[-1],
                                    "median": run.median_rate,
                                    "ratio": paired_ratio(run, runs[1]), "params": params[run.name],
                                    "warmup": warmup[run.name]}
                                   for run in runs]})
    print("RESULT " + json.dumps(results))


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child(args)
    from tabulate import tabulate

    def k(rate):
        return f"{rate / 1e6:.2f}M" if rate >= 1e6 else f"{rate / 1e3:.1f}k"

    rows, steps_of, devices, rate_of = [], {}, {}, {}
    for backend in args.backends.split(","):
        steps = steps_of[backend] = args.steps or DEFAULT_STEPS.get(backend, 6)
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        cmd = [sys.executable, __file__, "--child", "--batch-sizes", args.batch_sizes, "--steps",
               str(steps), "--reps", str(args.reps), "--warmup-steps", str(args.warmup_steps),
               "--seed", str(args.seed)] + (["--no-torch-models"] if args.no_torch_models else []) \
            + (["--both-lowerings"] if args.both_lowerings else [])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            why = (proc.stderr.strip().splitlines() or ["?"])[-1][:100]
            rows.append([backend, "-", "failed: " + why, "", "", "", "", "", ""])
            continue
        for r in json.loads(lines[-1][7:]):
            devices[backend] = r["device"]
            reference = r["models"][1]["params"]  # the hand-written Keras model
            for m in r["models"]:
                rate_of[backend, r["batch"], m["name"]] = m["median"]
                params = f"{m['params']:,}" + ("" if m["params"] == reference else " (differs)")
                rows.append([backend, r["batch"], m["name"], k(m["median"]),
                             f"{k(min(m['rates']))}..{k(max(m['rates']))}", f"{m['ratio']:.2f}x",
                             params, f"{m['loss']:.4f}", f"{m['warmup']:.1f}"])
            for name, why in r["missing"].items():
                rows.append([backend, r["batch"], name, "not installed", why[:100], "", "", "", ""])
    steps = ", ".join(f"{b} {n}" for b, n in steps_of.items())
    where = ", ".join(f"{b} on {d}" for b, d in devices.items())
    print(f"MMoE-8 (bench/mmoe8.yaml), Adam; steps per repetition: {steps}; {args.reps} repetitions "
          f"per model after {args.warmup_steps} warm-up steps; {os.cpu_count()} CPU cores; {where}")
    print(tabulate(rows, headers=["backend", "batch", "model", "median ex/s", "min..max",
                                  "vs hand-written Keras (paired)", "trainable params", "last loss",
                                  "warm-up s"],
                   colalign=("left", "right", "left", *["right"] * 6),
                   disable_numparse=True))
    print(across_backends(rate_of))


def across_backends(rate_of: dict) -> str:
    """Composer on each Keras backend against torch.compile, per batch size: these ran in
    different processes, one after the other, so the ratio is not paired."""
    lines = []
    for (backend, batch, name), compiled in sorted(rate_of.items()):
        if name != "torch hand-written + compile":
            continue
        for (b, size, n), ours in sorted(rate_of.items()):
            if n.startswith("composer") and size == batch:
                lines.append(f"batch {batch}: {n} on {b} {ours / compiled:.2f}x torch.compile")
    return "\n".join(lines) or "(no torch.compile row to compare with)"


if __name__ == "__main__":
    main()
