"""Run as a script under KERAS_BACKEND=jax with 8 virtual CPU devices (tests/test_sharded_tables.py
starts it in a subprocess): trains one blueprint on one device and with its large table split by
rows over the devices (distribution: model_parallel), and prints, as JSON, each run's losses,
test predictions, the table variables' shardings, and the reloaded single-device model's
predictions."""
from __future__ import annotations

import json
import sys
import tempfile

import numpy as np


def train(blueprint, data, loop="auto", **training):
    from composer import training as tr

    settings = {"epochs": 2, "patience": 100, "batch_size": 256, "loop": loop, **training}
    exp = tr.prepare(blueprint, data=data, training=settings)
    trainer_vars = None
    history = tr.fit(exp, verbose=0).history
    out = {"loss": history["loss"], "val_auc": history["val_auc"], "describe": exp.parallel.describe(256)}
    # the trainer's own variables (the run's model is a host-local copy once training ends)
    trainer_vars = {v.path: v for v in exp.trainer.variables}
    out["tables"] = {}
    for path, v in trainer_vars.items():
        if "embedding_d" in path and v.path.endswith("embeddings"):
            value = v.value
            out["tables"][path] = {"shape": list(value.shape), "spec": str(getattr(value.sharding, "spec", "")),
                                   "shards": sorted({tuple(s.data.shape) for s in value.addressable_shards}),
                                   "devices": len(value.sharding.device_set)}
    for ov in exp.trainer.optimizer.variables:
        if "embedding_d" in ov.path:
            out["tables"].setdefault("slots", []).append(
                [ov.path, sorted({tuple(s.data.shape) for s in ov.value.addressable_shards})])
    preds = tr.predict(exp, "test")
    out["pred"] = {t: np.asarray(p, dtype="float64").tolist() for t, p in preds.items()}
    with tempfile.TemporaryDirectory() as tmp:
        from composer import load_model

        rep = tr.report(exp, "test")
        folder = tr.save_run(exp, f"{tmp}/run", _History(history), rep)
        model = load_model(f"{folder}/model.keras")
        x, _, _ = exp.arrays("test")
        again = model.predict(x, batch_size=4096, verbose=0)
        out["reloaded"] = {t: np.asarray(again[t]).reshape(-1).astype("float64").tolist() for t in exp.tasks}
        out["reloaded_devices"] = sorted({len(w.value.sharding.device_set) for w in model.weights})
    return out


class _History:
    def __init__(self, history):
        self.history = history


def main(which: str, blueprint: str, data: str) -> None:
    import jax

    out = {"devices": len(jax.devices())}
    if which == "sharded":
        out["one"] = train(blueprint, data)
        out["sharded"] = train(blueprint, data, distribution="model_parallel")
        out["mesh"] = train(blueprint, data, distribution="model_parallel", model_axis=4)
    elif which == "fit":
        out["one"] = train(blueprint, data, loop="fit")
        out["sharded"] = train(blueprint, data, loop="fit", distribution="model_parallel")
        out["replicated"] = train(blueprint, data, loop="fit", distribution="data_parallel")
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
