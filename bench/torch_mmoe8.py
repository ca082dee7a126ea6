"""The PyTorch contenders of ``bench/backends_mmoe8.py``: MMoE-8 written by hand in PyTorch (eager,
and with ``torch.compile``) and torch-rechub's ``MMOE``, trained by a plain PyTorch loop.

``backends_mmoe8.py`` imports this module only in its ``KERAS_BACKEND=torch`` subprocess, where
the contenders run beside the Composer blueprint and the hand-written Keras model under Keras's
torch backend, alternating with them, on the same data and labels. This module is the only one
in ``bench/`` that imports torch.

- **torch hand-written** is the network of ``handwritten_mmoe`` in ``backends_mmoe8.py`` as a
  careful PyTorch engineer writes it: one stacked ``nn.Embedding`` with per-field offsets (one
  gather), the first expert layer as one matmul against all experts' kernels side by side, the
  second as one ``torch.bmm`` over the experts, softmax gates, the mixture as one ``einsum``,
  towers; loss ``binary_cross_entropy_with_logits`` summed over the tasks.
- **torch.compile** is the same module and loss under ``torch.compile`` (default mode, inductor);
  the warm-up compiles the forward and the backward. The optimizer step stays eager.
- **torch-rechub MMOE** is ``torch_rechub.models.multi_task.MMOE`` with one ``SparseFeature`` per
  categorical field and one ``DenseFeature`` per numeric, fed a dict of 42 columns per batch as
  its trainers do; loss ``binary_cross_entropy`` per task, summed, as its ``MTLTrainer``. Its
  ``MLP`` puts a ``BatchNorm1d`` after every linear layer (experts, gates and towers) and its
  embedding is one table per field, so it is not quite the same network: it has more parameters.

Every loop shuffles the rows each epoch (``fit`` does too) and gathers each batch from tensors
made once; Adam with the learning rate 0.001 throughout. Where CUDA is available the modules and
the whole data live on the GPU (Keras's torch backend puts its models there too); each timed
epoch starts after ``torch.cuda.synchronize`` and ends when its mean loss is read back.

    python bench/torch_mmoe8.py           # = python bench/backends_mmoe8.py --backends torch
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from _timing import Timed  # bench/ is on sys.path: run as a script, or by backends_mmoe8.py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # a clone runs it uninstalled
from composer.devices import torch_device  # noqa: E402

LEARNING_RATE = 1e-3
DEVICE = torch.device(torch_device())  # where Keras's torch backend puts the Keras contenders


def synchronize() -> None:
    """Waits for the GPU's queued work, so a timed epoch ends when its last step has run."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    elif DEVICE.type == "mps":
        torch.mps.synchronize()


class HandwrittenMMoE(nn.Module):
    """Packed inputs, one gather, batched experts; returns the (B, tasks) logits."""

    def __init__(self, vocab_sizes: list[int], dim: int, numeric: int, tasks: int, experts: int,
                 units: list[int], tower: list[int]):
        super().__init__()
        offsets = [sum(vocab_sizes[:i]) for i in range(len(vocab_sizes))]
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64))
        self.table = nn.Embedding(sum(vocab_sizes), dim)
        d = len(vocab_sizes) * dim + numeric
        self.experts, self.units = experts, list(units)
        # layer 0: (d, K * w) so that one matmul computes every expert; then (K, w_in, w_out)
        self.kernels = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, w in enumerate(units):
            shape = (d, experts * w) if i == 0 else (experts, d, w)
            kernel = torch.empty(shape)
            for k in range(experts):  # glorot per expert, as Keras initialises each expert's kernel
                part = kernel[:, k * w:(k + 1) * w] if i == 0 else kernel[k]
                nn.init.xavier_uniform_(part)
            self.kernels.append(nn.Parameter(kernel))
            self.biases.append(nn.Parameter(torch.zeros(experts, 1, w)))
            d = w
        self.gates = nn.ModuleList(nn.Linear(self.kernels[0].shape[0], experts) for _ in range(tasks))
        self.towers = nn.ModuleList()
        for _ in range(tasks):
            layers, width = [], d
            for w in tower:
                layers += [nn.Linear(width, w), nn.ReLU()]
                width = w
            self.towers.append(nn.Sequential(*layers, nn.Linear(width, 1)))

    def forward(self, ids, numeric):
        x = torch.cat([self.table(ids + self.offsets).flatten(1), numeric], 1)  # (B, d)
        b, w = x.shape[0], self.units[0]
        h = (x @ self.kernels[0]).view(b, self.experts, w).transpose(0, 1)  # (K, B, w)
        h = torch.relu(h + self.biases[0])
        for kernel, bias in zip(self.kernels[1:], self.biases[1:]):
            h = torch.relu(torch.bmm(h, kernel) + bias)
        logits = [tower(torch.einsum("bk,kbo->bo", torch.softmax(gate(x), -1), h))
                  for gate, tower in zip(self.gates, self.towers)]
        return torch.cat(logits, 1)


class HandwrittenLoss(nn.Module):
    """The model and its loss in one module, so ``torch.compile`` sees the whole forward."""

    def __init__(self, model: HandwrittenMMoE):
        super().__init__()
        self.model = model

    def forward(self, ids, numeric, labels):
        return F.binary_cross_entropy_with_logits(self.model(ids, numeric), labels,
                                                  reduction="none").mean(0).sum()


class RechubLoss(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, labels):
        probs = self.model(x)  # (B, tasks), already through the sigmoid
        return sum(F.binary_cross_entropy(probs[:, t], labels[:, t]) for t in range(labels.shape[1]))


class LoopRun(Timed):
    """One PyTorch contender: a module returning the loss, its optimizer, and the whole data as
    tensors; ``batch(idx)`` gathers the loss module's arguments for the rows ``idx``."""

    def __init__(self, name, loss: nn.Module, optimizer: torch.optim.Optimizer, batch, examples: int,
                 params: int):
        super().__init__(name, examples)
        self.loss, self.optimizer, self.batch, self.params = loss, optimizer, batch, params

    def _steps(self, order: torch.Tensor, batch_size: int) -> float:
        total = torch.zeros((), device=DEVICE)
        for start in range(0, len(order), batch_size):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(*self.batch(order[start:start + batch_size]))
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
        return float(total) / -(-len(order) // batch_size)

    def warm_up(self, steps: int, batch_size: int) -> None:
        """Untimed steps; with ``torch.compile`` these compile the forward and the backward."""
        self._steps(torch.arange(steps * batch_size, device=DEVICE), batch_size)
        synchronize()

    def epoch(self, batch_size: int) -> tuple[float, float]:
        """One shuffled epoch: wall seconds of its steps, mean loss."""
        order = torch.randperm(self.examples, device=DEVICE)
        synchronize()
        start = time.perf_counter()
        loss = self._steps(order, batch_size)  # float(): waits for the last step
        return time.perf_counter() - start, loss


def trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def rechub_mmoe(layout, tasks: list[str], experts: int, units: list[int], tower: list[int]):
    """torch-rechub's MMOE on this layout, or raises ImportError when it cannot be imported."""
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE

    features = [SparseFeature(name, layout.vocab_sizes[name], embed_dim=dim)
                for dim, names in layout.categorical_by_dim.items() for name in names]
    features += [DenseFeature(name) for name in layout.numeric]
    return MMOE(features, ["classification"] * len(tasks), experts,
                expert_params={"dims": list(units)},
                tower_params_list=[{"dims": list(tower)} for _ in tasks])


def torch_runs(layout, tasks, settings: dict, packed: dict, labels: dict, n: int, seed: int):
    """The PyTorch contenders on the benchmark's data: (runs, {name: why it is missing})."""
    torch._dynamo.reset()  # a fresh compile per batch size, static shapes
    (dim, names), = layout.categorical_by_dim.items()
    ids = torch.from_numpy(packed[layout.input_name(dim)]).long().to(DEVICE)
    numeric = torch.from_numpy(packed["numeric"]).to(DEVICE)
    y = torch.from_numpy(np.concatenate([labels[t] for t in tasks], 1)).to(DEVICE)
    sizes = [layout.vocab_sizes[name] for name in names]

    def packed_batch(idx):
        return ids[idx], numeric[idx], y[idx]

    runs, missing = [], {}
    for name, compiled in (("torch hand-written", False), ("torch hand-written + compile", True)):
        torch.manual_seed(seed)
        model = HandwrittenMMoE(sizes, dim, numeric.shape[1], len(tasks), **settings).to(DEVICE)
        loss = HandwrittenLoss(model)
        runs.append(LoopRun(name, torch.compile(loss) if compiled else loss,
                            torch.optim.Adam(model.parameters(), lr=LEARNING_RATE),
                            packed_batch, n, trainable(model)))

    try:
        torch.manual_seed(seed)
        model = rechub_mmoe(layout, tasks, **settings).to(DEVICE)
    except Exception as e:  # not installed, or an import of one of its dependencies fails
        missing["torch-rechub MMOE"] = f"{type(e).__name__}: {e}"
    else:
        columns = {name: ids[:, j] for j, name in enumerate(names)}
        columns.update({name: numeric[:, j] for j, name in enumerate(layout.numeric)})

        def dict_batch(idx):
            return {name: col[idx] for name, col in columns.items()}, y[idx]

        runs.append(LoopRun("torch-rechub MMOE", RechubLoss(model),
                            torch.optim.Adam(model.parameters(), lr=LEARNING_RATE),
                            dict_batch, n, trainable(model)))
    return runs, missing


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from backends_mmoe8 import main

    main(["--backends", "torch", *sys.argv[1:]])
