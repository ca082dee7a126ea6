"""Gradient-level multi-task rules as pure NumPy references, on explicit per-task gradients.

Each function takes ``grads``, a (T, P) array whose row t is task t's gradient on the shared
parameters (MGDA-UB: on the shared representation), and returns the combined gradient or the task
weights, written the way the papers (and their official code) write them: loops over tasks,
projections, eigendecompositions. The training steps (composer/training/gradient_strategies.py,
keras.ops) compute the same results from the T x T Gram matrix only; tests/test_gradient_math.py
checks these references on fixed gradients and tests/test_gradient_strategies.py checks the steps
against them.

- PCGrad (Yu et al., NeurIPS 2020): `pcgrad`, `pcgrad_orders`.
- CAGrad (Liu et al., NeurIPS 2021): `cagrad`, `cagrad_dual_objective`, `cagrad_weights`.
- MGDA-UB (Sener and Koltun, NeurIPS 2018): `mgda_weights` (Frank-Wolfe), `mgda_two`.
- Nash-MTL (Navon et al., ICML 2022): `nash_weights`.
- Aligned-MTL (Senushkin et al., CVPR 2023): `aligned_weights`, `aligned_components`.
- MetaBalance (He et al., WWW 2022): `metabalance`.
- `pairwise_cosines`: what the steps log for the surgery rules.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-12
PCGRAD_ORDERS = 251  # rows of the task-order table (prime: steps do not cycle with the epoch length)
CAGRAD_STEPS = 100
MGDA_STEPS = 50
NASH_STEPS = 30
NASH_RIDGE = 1e-6  # on the normalised Gram: keeps a task with a zero gradient finite (1 / sqrt(ridge))


def _grads(grads) -> np.ndarray:
    g = np.asarray(grads, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] == 0:
        raise ValueError(f"grads must be a (T, P) array with T >= 1, got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("grads contain NaN or infinity")
    return g


def pairwise_cosines(grads) -> np.ndarray:
    """(T, T) cosines between task gradients (0 where a gradient is zero)."""
    g = _grads(grads)
    norms = np.linalg.norm(g, axis=1)
    return (g @ g.T) / np.maximum(np.outer(norms, norms), EPS)


def pcgrad_orders(tasks: int, seed: int = 0, count: int = PCGRAD_ORDERS) -> np.ndarray:
    """(count, T) task orders; step s uses row s % count. A fixed table drawn once from ``seed``
    (not a random op in the step), so the order is the same under jit, on every backend and on resume."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(tasks) for _ in range(count)]).astype("int32")


def pcgrad(grads, order) -> np.ndarray:
    """PCGrad's combined gradient: sum_i g_i^PC, where each g_i^PC starts at g_i and, for each
    task j in ``order`` in turn, loses its component along the ORIGINAL g_j when g_i^PC . g_j < 0
    (projection onto g_j's normal plane). A task never conflicts with itself (g_i . g_i >= 0).

    Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for Multi-Task Learning", NeurIPS
    2020; one shuffled order per step shared by every i and a sum, as the official TensorFlow code.
    """
    g = _grads(grads)
    out = np.zeros(g.shape[1])
    for i in range(g.shape[0]):
        gi = g[i].copy()
        for j in order:
            dot = gi @ g[j]
            if dot < 0:
                gi -= dot / max(g[j] @ g[j], EPS) * g[j]
        out += gi
    return out


def cagrad_dual_objective(w, gram, c: float) -> float:
    """The dual CAGrad minimises over the simplex, as the official code writes it:
    F(w) = w^T A b + c' sqrt(w^T A w), A = G G^T, b = 1/T, c' = c ||g0|| (g0 the mean gradient)."""
    a = np.asarray(gram, dtype=np.float64)
    t = a.shape[0]
    b = np.full(t, 1.0 / t)
    cc = c * np.sqrt(a.mean() + 1e-8) + 1e-8
    return float(w @ a @ b + cc * np.sqrt(w @ a @ w + 1e-8))


def simplex_projection(v) -> np.ndarray:
    """Euclidean projection onto {w >= 0, sum w = 1} (Duchi et al., ICML 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.arange(1, v.size + 1)
    rho = np.count_nonzero(u - css / k > 0)
    return np.maximum(v - css[rho - 1] / rho, 0.0)


def cagrad_weights(grads, c: float = 0.4, steps: int = CAGRAD_STEPS) -> np.ndarray:
    """The dual's minimiser w by ``steps`` projected-gradient steps from 1/T on the Gram matrix
    scaled to mean diagonal 1 (the argmin is scale-free), step 1 / T (T = the trace bounds the
    linear part's curvature). Fixed steps, no tolerance test: jit-friendly. The square root has a
    kink where g_w = 0, so near-cancelling gradients converge slowly: measured against scipy's
    SLSQP (the official solver) on 200 random problems the objective is at most 0.7% of the mean
    squared gradient norm above it (tests/test_gradient_math.py)."""
    g = _grads(grads)
    a = g @ g.T
    t = a.shape[0]
    scale = np.trace(a) / t
    if scale <= 0:
        return np.full(t, 1.0 / t)
    a = a / scale
    b = np.full(t, 1.0 / t)
    cc = c * np.sqrt(max(a.mean(), 0.0) + 1e-8)
    lr = 1.0 / t
    w = b.copy()
    for _ in range(steps):
        aw = a @ w
        grad = a @ b + cc * aw / np.sqrt(max(w @ aw, 0.0) + 1e-8)
        w = simplex_projection(w - lr * grad)
    return w


def cagrad(grads, c: float = 0.4, rescale: int = 1, steps: int = CAGRAD_STEPS) -> np.ndarray:
    """CAGrad's update on the shared parameters, on the scale of the SUMMED losses' gradient:
    d = g0 + (c ||g0|| / ||g_w||) g_w, g0 = mean gradient, g_w = sum_t w_t g_t with w the dual's
    minimiser; rescale 1 divides by 1 + c^2, 2 by 1 + c, 0 leaves it; then times T, as the official
    code ("to match the sum loss").

    Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.
    """
    g = _grads(grads)
    t = g.shape[0]
    w = cagrad_weights(g, c, steps)
    g0 = g.mean(axis=0)
    gw = w @ g
    g0_norm = np.sqrt((g @ g.T).mean() + 1e-8)
    lam = (c * g0_norm + 1e-8) / (np.linalg.norm(gw) + 1e-8)
    d = g0 + lam * gw
    d = d / {0: 1.0, 1: 1.0 + c ** 2, 2: 1.0 + c}[rescale]
    return d * t


def mgda_two(g1, g2) -> np.ndarray:
    """The closed-form min-norm point of two gradients: gamma g1 + (1 - gamma) g2 with
    gamma = clip((g2 - g1) . g2 / ||g1 - g2||^2, 0, 1); (0.5, 0.5) for equal gradients."""
    g1, g2 = np.asarray(g1, np.float64), np.asarray(g2, np.float64)
    diff = g1 - g2
    den = diff @ diff
    gamma = 0.5 if den <= EPS else float(np.clip((g2 - g1) @ g2 / den, 0.0, 1.0))
    return np.array([gamma, 1.0 - gamma])


def mgda_weights(grads, normalization: str = "none", losses=None, steps: int = MGDA_STEPS) -> np.ndarray:
    """MGDA-UB's weights: the min-norm point of the convex hull of the (normalised) gradients by
    ``steps`` Frank-Wolfe steps from 1/T with exact line search (the official MinNormSolver's
    iteration; its 0.999 / 0.001 endpoints are exact 1 / 0 here). The weights then multiply the
    raw losses, as the official code.

    Sener, Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018.

    normalization (official ``gradient_normalizers``): none; l2 (g_t / ||g_t||); loss (g_t / L_t);
    loss+ (g_t / (L_t ||g_t||)).
    """
    g = _grads(grads)
    t = g.shape[0]
    norms = np.linalg.norm(g, axis=1)
    lv = np.ones(t) if losses is None else np.asarray(losses, np.float64)
    div = {"none": np.ones(t), "l2": norms, "loss": lv, "loss+": lv * norms}[normalization]
    g = g / np.maximum(div, EPS)[:, None]
    m = g @ g.T
    w = np.full(t, 1.0 / t)
    for _ in range(steps):
        k = int(np.argmin(m @ w))
        v1v1, v1v2, v2v2 = w @ m @ w, w @ m[:, k], m[k, k]
        den = v1v1 + v2v2 - 2 * v1v2
        gamma = 1.0 if den <= EPS else float(np.clip((v2v2 - v1v2) / den, 0.0, 1.0))
        w = gamma * w
        w[k] += 1.0 - gamma
    return w


def nash_weights(grads, steps: int = NASH_STEPS, start=None) -> np.ndarray:
    """Nash-MTL's bargaining weights: alpha > 0 with (M alpha)_t = 1 / alpha_t, M = G G^T / ||G G^T||_F
    (the official code's normalisation), plus a tiny ridge.

    The equations are the stationarity condition of the strictly convex
    phi(alpha) = alpha^T M alpha / 2 - sum_t log alpha_t, so damped Newton (step 1 / (1 + lambda),
    lambda the Newton decrement: phi is self-concordant, so the step stays positive and converges
    from any positive start; full steps once lambda < 1/4) replaces the official cvxpy sequence with
    ``steps`` fixed T x T solves.

    Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya, "Multi-Task Learning as a
    Bargaining Game", ICML 2022.
    """
    g = _grads(grads)
    t = g.shape[0]
    m = g @ g.T
    norm = np.linalg.norm(m)
    m = (m / norm if norm > 0 else m) + NASH_RIDGE * np.eye(t)
    alpha = np.ones(t) if start is None else np.asarray(start, np.float64)
    for _ in range(steps):
        f = m @ alpha - 1.0 / alpha
        hess = m + np.diag(1.0 / alpha ** 2)
        delta = -np.linalg.solve(hess, f)
        lam = np.sqrt(max(-f @ delta, 0.0))
        alpha = alpha + (delta if lam < 0.25 else delta / (1.0 + lam))
    return alpha


def aligned_weights(grads) -> np.ndarray:
    """Aligned-MTL's weights alpha = B 1, B = sigma_min V Sigma^-1 V^T from the eigendecomposition
    M = G G^T = V Lambda V^T (Sigma = Lambda^1/2, eigenvalues below the official rank tolerance
    dropped, sigma_min the smallest kept). B G has orthogonal rows of norm sigma_min: the task
    gradients aligned into equal-norm orthogonal components; their sum is alpha^T G.

    Senushkin, Patakin, Kuznetsov, Konushin, "Independent Component Alignment for Multi-Task
    Learning", CVPR 2023 (scale mode "min").
    """
    return aligned_components_matrix(_grads(grads)).sum(axis=0)


def aligned_components_matrix(g) -> np.ndarray:
    m = g @ g.T
    lam, v = np.linalg.eigh(m)
    tol = lam.max() * m.shape[0] * np.finfo(np.float32).eps
    keep = lam > tol
    if not keep.any():
        return np.zeros_like(m)
    lam, v = lam[keep], v[:, keep]
    sigma = np.sqrt(lam)
    return sigma.min() * (v / sigma) @ v.T


def aligned_components(grads) -> np.ndarray:
    """(T, P): the aligned task gradients B G (see `aligned_weights`)."""
    g = _grads(grads)
    return aligned_components_matrix(g) @ g


def metabalance(main_grad, aux_grads, main_avg: float, aux_avgs, beta: float = 0.9,
                relax: float = 0.7, mode: str = "adapt"):
    """MetaBalance on ONE shared parameter tensor: moving averages of the gradient norms
    m <- beta m + (1 - beta) ||g||, then each auxiliary gradient becomes
    g_i (r m_main / m_i + 1 - r) (``adapt``: always; ``reduce``: only when m_i > m_main;
    ``enlarge``: only when m_i < m_main); the update is g_main + sum_i g_i.

    He, Feng, Lv, Yang, "MetaBalance: Improving Multi-Task Recommendations via Adapting Gradient
    Magnitudes of Auxiliary Tasks", WWW 2022.

    Returns: (combined gradient, new main average, new auxiliary averages, auxiliary scales).
    """
    main_grad = np.asarray(main_grad, np.float64)
    aux = np.asarray(aux_grads, np.float64)
    main_avg = beta * main_avg + (1 - beta) * np.linalg.norm(main_grad)
    aux_avgs = beta * np.asarray(aux_avgs, np.float64) + (1 - beta) * np.linalg.norm(aux.reshape(len(aux), -1), axis=1)
    adapt = {"adapt": np.ones(len(aux), bool), "reduce": aux_avgs > main_avg,
             "enlarge": aux_avgs < main_avg}[mode]
    scale = np.where(adapt, relax * main_avg / np.maximum(aux_avgs, EPS) + 1 - relax, 1.0)
    return main_grad + np.tensordot(scale, aux, axes=1), main_avg, aux_avgs, scale
