"""The gradient RULES of PCGrad, CAGrad, MGDA-UB, Nash-MTL, Aligned-MTL and MetaBalance in
``keras.ops``, shared by the TensorFlow step (tf_gradient_strategies.py) and the JAX step
(jax_gradient_strategies.py).

Every rule here reads only T x T or T-sized values: the Gram matrix M = G G^T of the per-task
gradients G (T, P) on the shared parameters (MGDA-UB: on the shared representation), the losses and
the per-tensor gradient norms (MetaBalance). It returns coefficients ``a``: the shared update is
a^T G (a (T, V) matrix for MetaBalance: one row per shared tensor), so the (T, P) gradients are
never concatenated, copied or projected one by one; the paper's explicit loops live in
composer/gradient_math.py, the NumPy reference these rules are tested against.

Two kinds:
- surgery (pcgrad, cagrad, metabalance): the shared parameters get a^T G, every other parameter the
  plain gradient of sum_t L_t;
- weighting (mgda, nash_mtl, aligned_mtl): a multiplies the losses, every parameter gets the
  gradient of sum_t a_t L_t (Nash-MTL then clips the shared gradient's norm, as the official code).
Both add the gradient of the model's own regularization (add_loss) terms. The steps take each
task's gradient on EVERY variable (T backward passes after one forward) and combine them here,
rather than a further backward pass of the combined loss: one backward pass fewer per step.
"""
from __future__ import annotations

import contextlib

import numpy as np
from keras import ops

from .. import gradient_math

SURGERY = ("pcgrad", "cagrad", "metabalance")
WEIGHTING = ("mgda", "nash_mtl", "aligned_mtl")
_EPS = 1e-12


# -- trainer state and logs -------------------------------------------------------------------
def add_state(trainer) -> None:
    """The rule's own variables and trackers on ``trainer`` (a PlanTrainer being built)."""
    import keras

    n = len(trainer.tasks)
    if trainer.fusion == "metabalance":
        main = trainer.plan.params["main"]
        trainer.main_index = trainer.tasks.index(main)
        trainer.norm_averages = trainer.add_weight(name="norm_averages", shape=(n, len(shared_variables(trainer))),
                                                   trainable=False, initializer="zeros")
    for key in cosine_keys(trainer.tasks):
        trainer.trackers[key] = keras.metrics.Mean(name=key)


def shared_variables(trainer) -> list:
    """The shared parameters the surgery and Gram rules read (every shared block's weights)."""
    return [v for layer in trainer.shared_layers for v in layer.trainable_variables]


def cosine_keys(tasks) -> list[str]:
    """``cos_<a>_<b>`` for each pair of 2 or 3 tasks; ``cos_mean`` (mean pairwise) beyond."""
    if len(tasks) < 2:
        return []
    if len(tasks) > 3:
        return ["cos_mean"]
    return [f"cos_{a}_{b}" for i, a in enumerate(tasks) for b in tasks[i + 1:]]


def cosine_values(gram):
    """The values of ``cosine_keys``, from the Gram matrix."""
    n = gram.shape[0]
    norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
    cos = gram / ops.maximum(norms[:, None] * norms[None, :], _EPS)
    pairs = [cos[i, j] for i in range(n) for j in range(i + 1, n)]
    if n > 3:
        return [ops.mean(ops.stack(pairs))]
    return pairs


def track_cosines(trainer, gram) -> None:
    for key, value in zip(cosine_keys(trainer.tasks), cosine_values(gram)):
        trainer.trackers[key].update_state(value)


# -- the rules --------------------------------------------------------------------------------
def gram_of(rows):
    """M = G G^T from per-tensor rows (each (T, *shape))."""
    total = 0.0
    for r in rows:
        flat = ops.reshape(r, (r.shape[0], -1))
        total = total + ops.matmul(flat, ops.transpose(flat))
    return total


def tensor_norms(rows):
    """(T, V): each task's gradient norm on each shared tensor."""
    return ops.stack([ops.sqrt(ops.sum(ops.square(ops.reshape(r, (r.shape[0], -1))), axis=1)) for r in rows], axis=1)


def pcgrad_coefficients(gram, order):
    """PCGrad in Gram space: g_i^PC = sum_j C_ij g_j, C starting at I; projecting out g_k changes
    column k only, by min(g_i^PC . g_k / ||g_k||^2, 0). The update sum_i g_i^PC = (1^T C) G."""
    n = gram.shape[0]
    c = ops.eye(n, dtype=gram.dtype)
    for k in range(n):
        e = ops.one_hot(order[k], n, dtype=gram.dtype)
        dots = ops.matmul(c, ops.matmul(gram, e))
        coef = ops.minimum(dots / ops.maximum(ops.sum(e * ops.matmul(gram, e)), _EPS), 0.0)
        c = c - coef[:, None] * e[None, :]
    return ops.sum(c, axis=0)


def pcgrad_order(step, tasks: int, seed: int):
    table = ops.convert_to_tensor(gradient_math.pcgrad_orders(tasks, seed))
    return ops.take(table, ops.mod(step, table.shape[0]), axis=0)


def _simplex_projection(v):
    """Sort-based Euclidean projection onto the simplex (Duchi et al., ICML 2008), in ops."""
    n = v.shape[0]
    u = -ops.sort(-v)
    css = ops.cumsum(u) - 1.0
    k = ops.arange(1, n + 1, dtype=v.dtype)
    rho = ops.sum(ops.cast(u - css / k > 0, "int32"))
    theta = ops.take(css, rho - 1) / ops.cast(rho, v.dtype)
    return ops.maximum(v - theta, 0.0)


def cagrad_coefficients(gram, c: float, rescale: int, steps: int):
    """CAGrad (see gradient_math.cagrad): the dual by projected gradient on the scaled Gram
    matrix, then a = T (1/T + lambda w) / rescale."""
    n = gram.shape[0]
    scale = ops.trace(gram) / n
    a = gram / ops.maximum(scale, _EPS)
    b = ops.full((n,), 1.0 / n, dtype=gram.dtype)
    cc = c * ops.sqrt(ops.maximum(ops.mean(a), 0.0) + 1e-8)
    ab = ops.matmul(a, b)

    def body(_, w):
        aw = ops.matmul(a, w)
        grad = ab + cc * aw / ops.sqrt(ops.maximum(ops.sum(w * aw), 0.0) + 1e-8)
        return _simplex_projection(w - grad / n)

    w = ops.fori_loop(0, steps, body, b)
    w = ops.where(scale > 0, w, b)
    g0_norm = ops.sqrt(ops.mean(gram) + 1e-8)
    gw_norm = ops.sqrt(ops.maximum(ops.sum(w * ops.matmul(gram, w)), 0.0))
    lam = (c * g0_norm + 1e-8) / (gw_norm + 1e-8)
    divide = {0: 1.0, 1: 1.0 + c ** 2, 2: 1.0 + c}[rescale]
    return n * (b + lam * w) / divide, w


def mgda_coefficients(gram, losses, normalization: str, steps: int):
    """MGDA-UB (see gradient_math.mgda_weights): Frank-Wolfe with exact line search."""
    n = gram.shape[0]
    norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
    div = {"none": ops.ones_like(norms), "l2": norms, "loss": losses, "loss+": losses * norms}[normalization]
    div = ops.maximum(div, _EPS)
    m = gram / (div[:, None] * div[None, :])

    def body(_, w):
        mw = ops.matmul(m, w)
        e = ops.one_hot(ops.argmin(mw), n, dtype=m.dtype)
        v1v1, v1v2, v2v2 = ops.sum(w * mw), ops.sum(e * mw), ops.sum(e * ops.matmul(m, e))
        den = v1v1 + v2v2 - 2 * v1v2
        gamma = ops.where(den > _EPS, ops.clip((v2v2 - v1v2) / ops.maximum(den, _EPS), 0.0, 1.0), 1.0)
        return gamma * w + (1.0 - gamma) * e

    return ops.fori_loop(0, steps, body, ops.full((n,), 1.0 / n, dtype=gram.dtype))


def nash_coefficients(gram, steps: int):
    """Nash-MTL (see gradient_math.nash_weights): damped Newton on M alpha = 1 / alpha."""
    n = gram.shape[0]
    norm = ops.sqrt(ops.sum(ops.square(gram)))
    m = gram / ops.maximum(norm, _EPS) + gradient_math.NASH_RIDGE * ops.eye(n, dtype=gram.dtype)

    def body(_, alpha):
        f = ops.matmul(m, alpha) - 1.0 / alpha
        hess = m + ops.diag(1.0 / ops.square(alpha))
        delta = -ops.reshape(ops.solve(hess, f[:, None]), (n,))
        lam = ops.sqrt(ops.maximum(-ops.sum(f * delta), 0.0))
        return alpha + ops.where(lam < 0.25, delta, delta / (1.0 + lam))

    return ops.fori_loop(0, steps, body, ops.ones((n,), dtype=gram.dtype))


def aligned_coefficients(gram):
    """Aligned-MTL (see gradient_math.aligned_weights): alpha = sigma_min V Sigma^-1 V^T 1, the
    eigenvalues under the rank tolerance masked out (fixed shapes, where the official code slices)."""
    n = gram.shape[0]
    lam, v = ops.eigh(gram)
    tol = ops.max(lam) * n * float(np.finfo(np.float32).eps)
    keep = lam > tol
    sigma = ops.sqrt(ops.where(keep, lam, 1.0))
    sigma_min = ops.min(ops.where(keep, sigma, float("inf")))
    inv = ops.where(keep, 1.0 / sigma, 0.0)
    b = ops.matmul(v * inv[None, :], ops.transpose(v))
    return ops.where(ops.any(keep), sigma_min * ops.sum(b, axis=0), ops.zeros((n,), dtype=gram.dtype))


def metabalance_coefficients(norms, averages, main: int, beta: float, relax: float, mode: str):
    """MetaBalance (see gradient_math.metabalance) on every shared tensor at once: ``norms`` and
    ``averages`` are (T, V); returns the (T, V) coefficients (1 for the main task) and the new averages."""
    averages = beta * averages + (1.0 - beta) * norms
    main_avg = averages[main][None, :]
    adapt = {"adapt": ops.ones_like(averages) > 0, "reduce": averages > main_avg,
             "enlarge": averages < main_avg}[mode]
    scale = ops.where(adapt, relax * main_avg / ops.maximum(averages, _EPS) + 1.0 - relax, 1.0)
    is_main = ops.one_hot(main, norms.shape[0], dtype=norms.dtype)[:, None] > 0
    return ops.where(is_main, 1.0, scale), averages


def coefficients(trainer, gram, losses, step, norms=None, averages=None):
    """(a, task weights to log, new MetaBalance averages or None) for ``trainer.fusion``."""
    p = trainer.plan.params
    n = len(trainer.tasks)
    if trainer.fusion == "pcgrad":
        a = pcgrad_coefficients(gram, pcgrad_order(step, n, p.get("seed", 0)))
        return a, ops.ones((n,), dtype=gram.dtype), None
    if trainer.fusion == "cagrad":
        a, w = cagrad_coefficients(gram, p.get("c", 0.4), p.get("rescale", 1),
                                   p.get("steps", gradient_math.CAGRAD_STEPS))
        return a, w, None
    if trainer.fusion == "mgda":
        a = mgda_coefficients(gram, losses, p.get("normalization", "none"), p.get("steps", gradient_math.MGDA_STEPS))
        return a, a, None
    if trainer.fusion == "nash_mtl":
        a = nash_coefficients(gram, p.get("steps", gradient_math.NASH_STEPS))
        return a, a, None
    if trainer.fusion == "aligned_mtl":
        a = aligned_coefficients(gram)
        return a, a, None
    a, new = metabalance_coefficients(norms, averages, trainer.main_index, p.get("beta", 0.9),
                                      p.get("relax", 0.7), p.get("mode", "adapt"))
    return a, ops.mean(a, axis=1), new


def combine(fusion: str, a, rows, shared_index: int | None):
    """One variable's update from its per-task gradients ``rows`` (T, *shape): a^T G for a
    weighting rule and for a shared variable under a surgery rule (a per tensor for MetaBalance),
    the plain sum for a task-specific one under a surgery rule."""
    if fusion in SURGERY and shared_index is None:
        return ops.sum(rows, axis=0)
    coef = a[:, shared_index] if len(a.shape) == 2 else a
    return ops.tensordot(coef, rows, axes=1)


def clip_by_global_norm(grads, max_norm: float):
    """Nash-MTL's clip_grad_norm_ on the shared gradients (max_norm <= 0: unchanged)."""
    if max_norm <= 0:
        return grads
    norm = ops.sqrt(sum(ops.sum(ops.square(g)) for g in grads))
    factor = ops.minimum(1.0, max_norm / (norm + 1e-6))
    return [g * factor for g in grads]


@contextlib.contextmanager
def representation_hook(layer, fn):
    """Calls of ``layer`` return ``fn(output)`` while inside: how MGDA-UB reaches the shared
    representation Z (TensorFlow: records Z for the tape; JAX: adds a zero input to differentiate
    by). An instance attribute shadows the class's ``call``, which Keras's ``__call__`` looks up."""
    original = layer.call

    def call(*args, **kwargs):
        return fn(original(*args, **kwargs))

    object.__setattr__(layer, "call", call)
    try:
        yield
    finally:
        object.__delattr__(layer, "call")
