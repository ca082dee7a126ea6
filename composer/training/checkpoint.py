"""The state saved at the end of every epoch, and read back by ``composer train --resume``.

One file, ``checkpoint.npz`` in the run folder, written atomically (a temporary file in the same
folder, then ``os.replace``): an interruption at any moment leaves either the previous epoch's
checkpoint or this one, never half of one. It holds, as arrays, every trainable and
non-trainable variable of the trainer (the model's weights, the loss fusion's task weights,
log-variances and step counter, the layers' dropout seed states), the optimizer's variables
(slots and iteration count) and early stopping's best weights; and as JSON the epochs finished,
the history, early stopping's state and a fingerprint of what was trained (the resolved
blueprint, the data, the batch size), so a resume with anything else is refused. The shuffle
order of epoch e depends only on (seed, e), so no generator state needs saving.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FILE = "checkpoint.npz"
FORMAT = 1


@dataclass
class Checkpoint:
    epochs_done: int
    history: dict
    early_stopping: dict  # best, best_epoch, wait
    fingerprint: str
    trainable: list = field(default_factory=list)
    non_trainable: list = field(default_factory=list)
    optimizer: list = field(default_factory=list)
    best: list | None = None  # early stopping's best weights (trainable + non-trainable)
    elapsed_s: float = 0.0


def fingerprint(exp, batch_size: int) -> str:
    """What a resume must match: the resolved blueprint (every setting, the seed included, but
    not the epoch count, which a resume may raise), the data and its row counts, the batch size."""
    bp = exp.bp.model_dump(mode="json")
    bp.get("training", {}).pop("epochs", None)
    what = {"blueprint": bp, "data": str(exp.data_name), "rows": exp.dataset.counts(), "batch_size": int(batch_size)}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write(folder, ckpt: Checkpoint) -> Path:
    """Atomically replace ``folder/checkpoint.npz``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "epochs_done": ckpt.epochs_done, "history": ckpt.history,
            "early_stopping": ckpt.early_stopping, "fingerprint": ckpt.fingerprint,
            "elapsed_s": ckpt.elapsed_s, "counts": {"trainable": len(ckpt.trainable),
                                                     "non_trainable": len(ckpt.non_trainable),
                                                     "optimizer": len(ckpt.optimizer),
                                                     "best": -1 if ckpt.best is None else len(ckpt.best)}}
    arrays = {"meta": np.frombuffer(json.dumps(meta, default=_plain).encode(), dtype=np.uint8)}
    for name in ("trainable", "non_trainable", "optimizer", "best"):
        for i, value in enumerate(getattr(ckpt, name) or []):
            arrays[f"{name}_{i}"] = np.asarray(value)
    target = folder / FILE
    tmp = folder / f".{FILE}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def read(path) -> Checkpoint:
    """The checkpoint at ``path``; a damaged one is a located error naming the file."""
    import zipfile

    from ..blueprint.errors import BlueprintError, Location

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, this version reads {FORMAT}")
            counts = meta["counts"]
            parts = {name: [data[f"{name}_{i}"] for i in range(max(n, 0))] for name, n in counts.items()}
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise BlueprintError(f"damaged run folder: {path.name} does not read ({type(exc).__name__}"
                             + (f": {reason})" if reason else ")"), location=Location(str(path)),
                             hint="train again without --resume (--overwrite replaces the folder)") from None
    return Checkpoint(epochs_done=int(meta["epochs_done"]), history=meta["history"],
                      early_stopping=meta["early_stopping"], fingerprint=meta["fingerprint"],
                      trainable=parts["trainable"], non_trainable=parts["non_trainable"],
                      optimizer=parts["optimizer"], best=parts["best"] if counts["best"] >= 0 else None,
                      elapsed_s=float(meta.get("elapsed_s", 0.0)))


def check_matches(ckpt: Checkpoint, trainer, expected: str, path) -> None:
    """Refuse a checkpoint of another blueprint, data or batch size, or with other variables."""
    from ..blueprint.errors import BlueprintError, Location

    if ckpt.fingerprint != expected:
        raise BlueprintError("cannot resume: the blueprint, the data or the batch size differ from the run's",
                             location=Location(str(path)),
                             hint="resume with the command that started the run (composer train --resume RUN "
                                  "alone repeats it); only --epochs may change")
    mine = [tuple(v.shape) for v in trainer.trainable_variables + trainer.non_trainable_variables]
    theirs = [tuple(np.shape(v)) for v in ckpt.trainable + ckpt.non_trainable]
    if mine != theirs or len(ckpt.optimizer) != len(trainer.optimizer.variables):
        raise BlueprintError("cannot resume: the checkpoint's variables do not match this model",
                             location=Location(str(path)), hint="train again without --resume")


def load_into(ckpt: Checkpoint, trainer) -> None:
    """Assign the checkpoint's values to the trainer's and its optimizer's variables (the
    optimizer already built)."""
    for ref, value in zip(trainer.trainable_variables + trainer.non_trainable_variables,
                          list(ckpt.trainable) + list(ckpt.non_trainable)):
        ref.assign(value)
    for ref, value in zip(trainer.optimizer.variables, ckpt.optimizer):
        ref.assign(value)
