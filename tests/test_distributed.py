"""composer/distributed.py and composer/launch.py: the cluster settings, the data each process
feeds, the refusals, and one real data-parallel run of two processes on 127.0.0.1 (JAX on CPU,
gloo collectives) against one process with the same global batch.

Run with ``-s`` to see the losses and the weights checksums the two-process test compares.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from composer.blueprint import BlueprintError, load_blueprint_text
from composer.cli import _worker_argv, main
from composer.distributed import ENV, WORKER_LINE, Cluster, for_training, not_offered

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINT = ROOT / "blueprints" / "shared_bottom.yaml"  # no dropout: both runs draw no random numbers

SMALL = """
name: small
data: synthetic
features: {from_data: true, dim: 4}
groups: {all: ["*"]}
tasks: from_data
blocks:
  x: {type: embed, group: all}
  bottom: {type: shared_bottom, input: x, units: [8]}
  tower: {type: tower, for_each: task, input: "bottom.{task}", units: [4]}
outputs: "tower.{task}"
"""


def _blueprint(training: str = "", loss: str = "fixed"):
    text = SMALL + f"loss: {{fusion: {loss}}}\n" + (f"training: {{{training}}}\n" if training else "")
    return load_blueprint_text(text)[0]


# -- the blueprint field ------------------------------------------------------------------------
def test_multi_worker_mirrored_is_refused_with_the_reason():
    with pytest.raises(BlueprintError) as exc:
        _blueprint("distribution: multi_worker_mirrored")
    message = str(exc.value)
    assert "training.distribution" in message and "issue 20585" in message and "data_parallel" in message
    assert not_offered("MultiWorkerMirroredStrategy") and not_offered("parameter_server")
    assert not_offered("mirrored") is None


def test_unknown_distribution_lists_the_valid_ones():
    with pytest.raises(BlueprintError) as exc:
        _blueprint("distribution: mirored")
    assert "did you mean 'mirrored'" in str(exc.value)
    assert "data_parallel, mirrored, model_parallel, none" in str(exc.value)


def test_distribution_defaults_to_one_device():
    assert _blueprint().training.distribution == "none"


# -- the cluster --------------------------------------------------------------------------------
def test_cluster_from_flags_then_keras_environment_variables():
    env = {ENV["coordinator"]: "10.0.0.1:1234,10.0.0.2:2345", ENV["num_processes"]: "2", ENV["process_id"]: "1"}
    assert Cluster.from_env(environ=env) == Cluster("10.0.0.1:1234", 2, 1)  # JAX needs only process 0's
    assert Cluster.from_env(process_id=0, environ=env) == Cluster("10.0.0.1:1234", 2, 0)
    assert Cluster.from_env(environ={}) == Cluster(None, 1, 0)
    assert not Cluster.from_env(environ={}).multi_process


@pytest.mark.parametrize("kwargs, env, key", [
    ({"num_processes": 2, "process_id": 2, "coordinator": "h:1"}, {}, "--process-id"),
    ({"num_processes": 2, "process_id": 0}, {}, "--coordinator"),
    ({"num_processes": 2, "process_id": 0, "coordinator": "no-port"}, {}, "--coordinator"),
    ({"num_processes": 0}, {}, "--num-processes"),
    ({}, {ENV["num_processes"]: "two"}, ENV["num_processes"]),
])
def test_cluster_mistakes_name_the_flag(kwargs, env, key):
    with pytest.raises(BlueprintError) as exc:
        Cluster.from_env(environ=env, **kwargs)
    assert exc.value.key == key


def test_several_processes_need_data_parallel():
    with pytest.raises(BlueprintError) as exc:
        for_training(_blueprint(), Cluster("127.0.0.1:1234", 2, 0))
    assert exc.value.key == "training.distribution" and "--distribution data_parallel" in str(exc.value)


def test_the_engine_needs_its_backend():
    import keras

    # the engine this backend cannot run (the suite runs under TensorFlow and under JAX)
    kind = "data_parallel" if keras.backend.backend() != "jax" else "mirrored"
    with pytest.raises(BlueprintError) as exc:
        for_training(_blueprint(f"distribution: {kind}"))
    assert exc.value.key == "training.distribution" and "KERAS_BACKEND=" in str(exc.value)


def test_gradient_fusions_are_refused_distributed():
    with pytest.raises(BlueprintError) as exc:
        for_training(_blueprint("distribution: mirrored", loss="gradnorm"))
    assert "gradnorm" in str(exc.value) and exc.value.key == "training.distribution"


# -- the data each process feeds ----------------------------------------------------------------
def _arrays(rows):
    x = {"ids": np.arange(rows, dtype="int32").reshape(-1, 1)}
    y = {"click": (np.arange(rows) % 2).astype("float32").reshape(-1, 1)}
    w = {"click": np.ones(rows, dtype="float32")}
    return x, y, w


@pytest.mark.parametrize("processes, batch", [(2, 16), (3, 15)])
def test_processes_together_feed_the_single_process_batches(processes, batch):
    from composer.distributed import sharded_batches_class

    ShardedBatches = sharded_batches_class()
    x, y, w = _arrays(50)  # the last batch (2 or 5 rows) does not split: padded
    multiple = processes  # one device per process
    single = ShardedBatches(x, y, w, batch, multiple=multiple, seed=5)
    parts = [ShardedBatches(x, y, w, batch, processes, p, multiple=multiple, seed=5) for p in range(processes)]
    for epoch in range(2):  # a new permutation each epoch, the same in every process
        for ds in [single, *parts]:
            ds.on_epoch_begin()
        seen = []
        for k in range(len(single)):
            whole = single[k]
            pieces = [ds[k] for ds in parts]
            sizes = {len(p[0]["ids"]) for p in pieces}
            assert len(sizes) == 1 and sizes.pop() * processes == len(whole[0]["ids"])
            ids = np.concatenate([p[0]["ids"] for p in pieces])
            weights = np.concatenate([p[2]["click"] for p in pieces])
            np.testing.assert_array_equal(ids, whole[0]["ids"])
            np.testing.assert_array_equal(weights, whole[2]["click"])
            assert len(ids) % multiple == 0
            seen += list(ids[weights > 0, 0])
        assert sorted(seen) == list(range(50)), "every row once per epoch, padding at weight 0"


def test_padding_rows_weigh_nothing():
    from composer.distributed import sharded_batches_class

    x, y, w = _arrays(18)
    last = sharded_batches_class()(x, y, w, 16, 1, 0, multiple=4, shuffle=False)[1]
    np.testing.assert_array_equal(last[0]["ids"][:, 0], [16, 17, 16, 17])
    np.testing.assert_array_equal(last[2]["click"], [1, 1, 0, 0])


# -- the command line ---------------------------------------------------------------------------
def test_worker_command_line_drops_workers():
    assert _worker_argv(["train", "b.yaml", "--workers", "2", "--out", "r"]) == ["train", "b.yaml", "--out", "r"]
    assert _worker_argv(["train", "b.yaml", "--work=2"]) == ["train", "b.yaml"]


@pytest.mark.parametrize("extra, key", [(["--workers", "1"], "--workers"),
                                        (["--workers", "2", "--process-id", "0"], "--workers"),
                                        (["--num-processes", "2", "--process-id", "0"], "--coordinator")])
def test_cli_cluster_mistakes_exit_2(extra, key, capsys):
    assert main(["train", str(BLUEPRINT), *extra]) == 2
    assert f"{key}: " in capsys.readouterr().err


# -- two processes on 127.0.0.1 -----------------------------------------------------------------
jax_only = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                              reason="jax is not installed (pip install -e '.[jax]')")


def _train(args, out: Path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
           "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"}
    for name in ENV.values():
        env.pop(name, None)
    cmd = [sys.executable, "-m", "composer", "train", str(BLUEPRINT), "--data", "synthetic:rows=4000",
           "--batch-size", "256", "--epochs", "2", "--patience", "5", "--verbose", "0", "--out", str(out), *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _weights(run: Path):
    from composer import load_model

    return load_model(str(run / "model.keras")).get_weights()


@jax_only
def test_two_processes_match_one_process(tmp_path):
    # both runs at once: the two workers mostly wait on each other, the cores are better used
    two = _train(["--workers", "2"], tmp_path / "two")
    # the same engine in one process: Keras fit (several processes train with it; one process's
    # default, the scanned loop, is checked against one device in tests/test_jax_trainer.py)
    one = _train(["--distribution", "data_parallel", "--loop", "fit"], tmp_path / "one")
    out2, err2 = two.communicate(timeout=300)
    out1, err1 = one.communicate(timeout=300)
    assert two.returncode == 0, out2[-3000:] + err2[-3000:]
    assert one.returncode == 0, out1[-3000:] + err1[-3000:]

    pattern = re.escape(WORKER_LINE).replace(r"\{id\}", r"(\d)").replace(r"\{n\}", "2")
    pattern = pattern.replace(r"\{loss:\.9g\}", r"(\S+)").replace(r"\{checksum\}", r"(\w+)")
    found = {int(m[0]): (float(m[1]), m[2]) for m in re.findall("  " + pattern, out2)}
    assert sorted(found) == [0, 1], out2
    assert "every worker ended with identical weights" in out2
    # (1) both workers end with bit-identical weights: the all-reduce gives every process the same
    # gradient and every process applies it to the same replicated weights
    assert found[0][1] == found[1][1]

    import pandas as pd

    loss1 = pd.read_csv(tmp_path / "one" / "history.csv")["loss"].to_numpy()
    loss2 = pd.read_csv(tmp_path / "two" / "history.csv")["loss"].to_numpy()
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    weight_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2))
    print(f"\nloss per epoch, one process:   {json.dumps(loss1.tolist())}"
          f"\nloss per epoch, two processes: {json.dumps(loss2.tolist())}"
          f"\nworker weights sha256: 0 {found[0][1]}, 1 {found[1][1]}"
          f"\nmax |weights(one) - weights(two)| = {weight_diff:.3g}")
    # (2) the same global batches (ShardedBatches), so the same math; what may differ is the order
    # of float32 additions (each process sums its half of the batch, the all-reduce adds the
    # halves), about 1e-7 relative per step and a few steps of Adam: 1e-5 leaves room for that and
    # is far below what a wrong split changes (each process training on its half alone, or on
    # every row twice, moves the loss in the second or third digit).
    np.testing.assert_allclose(loss2, loss1, rtol=1e-5)
    assert weight_diff < 1e-4


# -- TensorFlow's MirroredStrategy: two replicas on two logical CPUs -----------------------------
MIRRORED_RUN = """
import json, sys
from composer.quiet import import_backend
import_backend()
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[1]))
from composer import training
exp = training.prepare(sys.argv[2], data="synthetic:rows=4001", training={
    "distribution": "mirrored", "batch_size": 256, "epochs": 2, "patience": 5})
history = training.fit(exp, verbose=0)
print(json.dumps({"replicas": exp.trainer.distribute_strategy.num_replicas_in_sync,
                  "loss": history.history["loss"]}))
"""


def test_mirrored_two_replicas_match_one():
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    runs = [subprocess.Popen([sys.executable, "-c", MIRRORED_RUN, str(n), str(BLUEPRINT)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (1, 2)]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, out[-3000:] + err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    one, two = results
    print(f"\nMirroredStrategy loss per epoch, 1 replica: {one['loss']}; 2 replicas: {two['loss']}")
    assert (one["replicas"], two["replicas"]) == (1, 2)
    # the same batches (both runs go through the strategy's input pipeline), split in two halves:
    # float32 summation order again. 4001 rows give 3160 train rows, so the last batch (88) splits
    # evenly; an uneven split would weigh its halves' means equally (Keras's per-replica
    # convention), a difference of up to 1e-4 here. Without dividing each replica's loss by the
    # number of replicas the gradients are doubled: epoch 2 then differs by 4e-4 (Adam hardly
    # sees a gradient's scale; plain SGD would take steps twice as long).
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
