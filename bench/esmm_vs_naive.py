"""ESMM against a naive CVR model trained on clicked samples only (Ma et al., SIGIR 2018).

The paper's claim: a CVR tower trained through pCTCVR = pCTR x pCVR over the entire impression
space ranks conversions better over all impressions than one trained on clicked rows only,
whose training space is a biased sample of the space it is used on (sample selection bias).

Contenders, trained on one split of one dataset with one training seed:

* ``esmm``: ``blueprints/esmm.yaml`` (CTR and CVR towers over shared embeddings; losses on CTR
  and CTCVR over all impressions; the CVR tower has no loss of its own).
* ``naive``: the naive baseline (the paper's BASE): a CVR model (embeddings + the same CVR
  tower) with its loss on clicked rows only (``where: click``), so nothing of it sees an
  unclicked row. Its pCTCVR multiplies its pCVR by the pCTR of a separate CTR model (embeddings
  + the same CTR tower, loss on all rows), trained on the same split with the same seed.
* ``naive_shared``: the same losses as ``naive`` but one embedding table shared by the CTR and
  CVR towers (ESMM's network with the CVR loss moved to clicked rows and no CTCVR loss), to
  separate the entire-space effect from the sharing of embeddings.
* ``esm2`` (with ``--esm2``): ``blueprints/esm2.yaml``; its pCVR = y2 y3 + (1 - y2) y4. Every
  model then trains on ``synthetic-esm2``, whose columns other than ``action`` equal
  ``synthetic-chain``'s row for row, so the split and labels are the same.

Each model trains for ``--epochs`` epochs at most (3, as esmm.yaml), stops early on its own
valid CVR AUC (clicked rows, patience 2; the naive CTR model on its valid CTR AUC) and keeps its
best weights. The table (test split, exact AUC):

* CVR AUC, clicked rows: pCVR against conversion on clicked rows (the conventional CVR task).
* CVR AUC, all impressions: pCVR against click & conversion over every impression ("entire
  space", where the model is actually used to rank).
* CTCVR AUC: pCTCVR against click & conversion over every impression.

    python bench/esmm_vs_naive.py                 # synthetic-chain, 200,000 rows, 3 epochs
    python bench/esmm_vs_naive.py --esm2 --seeds 2

Prints numbers; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from tabulate import tabulate  # noqa: E402

from composer import training  # noqa: E402
from composer.data.registry import load  # noqa: E402
from composer.metrics import auc  # noqa: E402

BLUEPRINTS = HERE.parent / "blueprints"
_HEAD = """features: {from_data: true, dim: 8}
groups:
  all: ["*"]
training: {optimizer: adam, learning_rate: 0.001, batch_size: 1024, epochs: 3, seed: 2018}
"""
# model -> its blueprints (one, or a CVR model and a CTR model whose product is the pCTCVR)
NAIVE = {
    "naive": {"cvr": _HEAD + """name: naive_cvr
description: "Naive CVR: trained on clicked rows only."
tasks:
  - {name: cvr, label: conversion, where: click}
blocks:
  x:          {type: embed, group: all}
  cvr_tower:  {type: tower, input: x, units: [64, 32]}
outputs: {cvr: cvr_tower}
""", "ctr": _HEAD + """name: naive_ctr
description: "CTR model on all impressions, for the naive baseline's pCTCVR."
tasks:
  - {name: ctr, label: click}
blocks:
  x:          {type: embed, group: all}
  ctr_tower:  {type: tower, input: x, units: [64, 32]}
outputs: {ctr: ctr_tower}
"""},
    "naive_shared": {"all": _HEAD + """name: naive_shared
description: "Naive CVR on clicked rows; embeddings shared with the CTR tower."
tasks:
  - {name: ctr, label: click}
  - {name: cvr, label: conversion, where: click}               # loss on clicked rows only
  - {name: ctcvr, label: "click & conversion", loss: false}    # evaluated only
blocks:
  x:          {type: embed, group: all}
  ctr_tower:  {type: tower, input: x, units: [64, 32]}
  cvr_tower:  {type: tower, input: x, units: [64, 32]}
  ctcvr:      {type: chain, inputs: {ctr: ctr_tower, cvr: cvr_tower}, expression: "ctr * cvr"}
outputs: {ctr: ctr_tower, cvr: cvr_tower, ctcvr: ctcvr}
loss: {fusion: fixed, weights: {ctr: 1.0, cvr: 1.0}}
"""},
}
COLUMNS = ["model", "seed", "epochs", "train s", "CVR AUC clicked", "CVR AUC all impressions",
           "CTCVR AUC", "CTR AUC"]


def evaluate(rows, pred) -> dict:
    click = rows["click"].to_numpy() == 1
    ctcvr = click & (rows["conversion"].to_numpy() == 1)
    if "ctcvr" not in pred:  # two models: pCTCVR = pCTR x pCVR
        pred = {**pred, "ctcvr": pred["ctr"] * pred["cvr"]}
    return {"CVR AUC clicked": auc(ctcvr[click], pred["cvr"][click]),
            "CVR AUC all impressions": auc(ctcvr, pred["cvr"]),
            "CTCVR AUC": auc(ctcvr, pred["ctcvr"]),
            "CTR AUC": auc(click, pred["ctr"])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None,
                   help="default synthetic-chain (synthetic-esm2 with --esm2)")
    p.add_argument("--rows", type=int, default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, default=1, help="training seeds 2018, 2019, ...")
    p.add_argument("--esm2", action="store_true", help="add blueprints/esm2.yaml")
    args = p.parse_args()

    data = args.data or ("synthetic-esm2" if args.esm2 else "synthetic-chain")
    t0 = time.perf_counter()
    dataset = load(data, rows=args.rows)
    counts = dataset.counts()
    test = dataset.part("test").frame
    print(f"{data}: train {counts['train']:,} / valid {counts['valid']:,} / test "
          f"{counts['test']:,} rows; test: {test['click'].sum():,} clicks, "
          f"{test['conversion'].sum():,} conversions", flush=True)

    models = {"esmm": {"all": BLUEPRINTS / "esmm.yaml"}}
    tmp = tempfile.TemporaryDirectory()
    for name, parts in NAIVE.items():
        models[name] = {}
        for part, text in parts.items():
            models[name][part] = Path(tmp.name) / f"{name}_{part}.yaml"
            models[name][part].write_text(text)
    if args.esm2:
        models["esm2"] = {"all": BLUEPRINTS / "esm2.yaml"}

    results = []
    for seed in range(2018, 2018 + args.seeds):
        for name, parts in models.items():
            pred, epochs, seconds = {}, [], 0.0
            for part, file in parts.items():
                monitor = "auc_ctr" if part == "ctr" else "auc_cvr"
                exp = training.prepare(str(file), data=data, dataset=dataset, training={
                    "epochs": args.epochs, "seed": seed, "monitor": monitor, "patience": 2})
                training.fit(exp, verbose=0)
                pred.update(training.predict(exp, "test"))
                epochs.append(str(exp.timings["epochs_run"]))
                seconds += exp.timings["train_s"]
            row = {"model": name, "seed": seed, "epochs": "+".join(epochs),
                   "train s": round(seconds, 1), **evaluate(test, pred)}
            results.append(row)
            print("  " + ", ".join(f"{k} {v:.4f}" if "AUC" in k else f"{k} {v}"
                                   for k, v in row.items()), flush=True)
    tmp.cleanup()

    print(f"\ntest split of {data} ({counts['test']:,} rows), exact AUC; at most {args.epochs} "
          "epochs, early stop on valid CVR AUC (clicked rows), best weights")
    print(tabulate([[r[c] for c in COLUMNS] for r in results], headers=COLUMNS,
                   floatfmt=("", "", "", ".1f", ".4f", ".4f", ".4f", ".4f")))
    if args.seeds > 1:
        metrics = COLUMNS[4:]
        mean = []
        for name in models:
            vals = [[r[m] for r in results if r["model"] == name] for m in metrics]
            mean.append([name, *(f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}"
                                 for v in vals)])
        print(f"\nmean ± std over {args.seeds} seeds")
        print(tabulate(mean, headers=["model", *metrics]))
    metric = "CVR AUC all impressions"
    score = {(r["model"], r["seed"]): r[metric] for r in results}
    gaps = [score["esmm", s] - score["naive", s] for s in range(2018, 2018 + args.seeds)]
    print(f"\nESMM - naive, {metric}: {', '.join(f'{g:+.4f}' for g in gaps)} "
          f"(ESMM higher in {sum(g > 0 for g in gaps)} of {len(gaps)} seeds); "
          f"total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
