"""Run as a script under KERAS_BACKEND=jax (tests/test_jax_trainer.py starts it in a subprocess,
with 8 virtual CPU devices): trains the same blueprint through Composer's scanned loop several
ways and prints, as JSON, each way's per-epoch history and test predictions' checksum."""
from __future__ import annotations

import json
import sys

import numpy as np


def train(blueprint, data, **training):
    from composer import training as tr

    settings = {"epochs": 3, "patience": 100, "batch_size": 256, **training}
    budget = settings.pop("budget", None)
    exp = tr.prepare(blueprint, data=data, training=settings)
    if budget:
        exp.bp = exp.bp.model_copy(update={"training": exp.bp.training.model_copy(
            update={"device_budget_mb": budget})})
    history = tr.fit(exp, verbose=0).history
    preds = tr.predict(exp, "test")
    return {"loss": history["loss"], "val_auc": history["val_auc"],
            "weights": {k: v for k, v in history.items() if k.startswith("weight_")},
            "pred": {t: [float(np.mean(p)), float(np.std(p))] for t, p in preds.items()},
            "feed": exp.timings.get("feed", "")}


def main(which: str, blueprint: str, data: str) -> None:
    import jax

    out = {"devices": len(jax.devices())}
    if which == "parallel":
        out["one"] = train(blueprint, data)
        out["sharded"] = train(blueprint, data, distribution="data_parallel")
    elif which == "chunks":
        out["resident"] = train(blueprint, data)
        out["streamed"] = train(blueprint, data, budget=1)  # 1 MiB: the rows arrive in chunks
    elif which == "plan":
        out["run"] = train(blueprint, data)
    elif which == "chain":  # ESMM's labels: conversion, read where clicked
        out["run"] = train(blueprint, "synthetic-chain:rows=6000")
    elif which == "mixed":
        out["run"] = train(blueprint, data, precision="mixed_bfloat16")
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
