"""Loss-fusion math as pure NumPy: PE-LTR Pareto weights and GradNorm weight updates.

The training loop flattens the per-task gradients to NumPy and calls these every k steps; keeping
them framework-free lets them be tested against brute force (tests/test_fusion_math.py).

- PE-LTR (Lin et al., RecSys 2019): `pareto_weights` (exact, used for training) and
  `pareto_weights_paper` (the paper's solve-then-project procedure, exact only for T = 2).
- GradNorm (Chen et al., ICML 2018): `gradnorm_target`, `gradnorm_weight_grad`, `renormalise`.
- `simplex_projection`: Euclidean projection onto a simplex (Duchi et al., ICML 2008).
"""
from __future__ import annotations

import numpy as np

# 2**T - 1 tiny linear solves per call: ~50 ms at T = 10, ~2 s at T = 15 (one CPU core).
MAX_EXACT_TASKS = 16

_RCOND = 1e-12  # relative cut-off: singular values below it count as exact zeros (degenerate M)
_FEASIBLE_TOL = 1e-9  # weights are O(1); looser than the solve error, far below any meaningful w
_TIE_TOL = 1e-12  # objective ties, on the scale-normalised problem (trace(M) = 1)


def simplex_projection(v, mass: float = 1.0) -> np.ndarray:
    """Euclidean projection of `v` onto {w : w >= 0, sum(w) = mass}.

    Sort-based closed form (Duchi, Shalev-Shwartz, Singer and Chandra, ICML 2008):
    w = max(v - theta, 0) with theta chosen so that the result sums to `mass`. O(n log n).

    Args:
        v: 1-D array of n >= 1 finite values.
        mass: the simplex total, >= 0 (0 gives all zeros).

    Example:
        >>> simplex_projection([0.5, 2.0, -1.0])
        array([0., 1., 0.])
    """
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"simplex_projection: v must be a non-empty 1-D array, "
                         f"got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("simplex_projection: v contains NaN or infinity")
    mass = float(mass)
    if not (np.isfinite(mass) and mass >= 0.0):
        raise ValueError(f"simplex_projection: mass must be finite and >= 0, got {mass}")
    if mass == 0.0:
        return np.zeros_like(v)
    u = np.sort(v)[::-1]
    excess = np.cumsum(u) - mass
    k = np.arange(1, v.size + 1)
    rho = np.nonzero(u - excess / k > 0)[0][-1]  # never empty: k = 1 holds because mass > 0
    theta = excess[rho] / (rho + 1)
    return np.maximum(v - theta, 0.0)


def _validate_pareto(grads, lower):
    g = np.asarray(grads, dtype=np.float64)
    c = np.asarray(lower, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] == 0:
        raise ValueError(f"pareto weights: grads must be a (T, P) array with T >= 1, "
                         f"got shape {g.shape}")
    if c.shape != (g.shape[0],):
        raise ValueError(f"pareto weights: lower must have shape ({g.shape[0]},) to match grads "
                         f"(T = {g.shape[0]} tasks), got shape {c.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("pareto weights: grads contain NaN or infinity")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError(f"pareto weights: lower bounds must be finite and >= 0, got {c.tolist()}")
    if c.sum() >= 1.0:
        raise ValueError(f"pareto weights: lower bounds must sum to less than 1 (the weights "
                         f"sum to 1), got sum {c.sum():.6g}")
    return g, c


def _gram(g):
    """M = G G^T scaled to trace 1 (the argmin is scale-free); None when every gradient is zero."""
    m = g @ g.T
    scale = np.trace(m)
    return None if scale == 0.0 else m / scale


def _face_solve(m, c, free, u):
    """Minimise w^T M w with w = c off `free` and sum(w) = 1, ignoring w >= c on `free`.

    Closed form: the KKT system [[M_FF, 1], [1^T, 0]] [d; nu] = [-(M z)_F; 1 - sum(z)] for the
    shift d = w_F - u_F (z = u on F, c elsewhere). Its least-squares min-norm solution is, when
    M_FF is singular, the minimiser on this face closest to u: a deterministic tie-break.
    """
    z = np.where(free, u, c)
    f = np.flatnonzero(free)
    k = f.size
    kkt = np.ones((k + 1, k + 1))
    kkt[:k, :k] = m[np.ix_(f, f)]
    kkt[k, k] = 0.0
    rhs = np.empty(k + 1)
    rhs[:k] = -(m @ z)[f]
    rhs[k] = 1.0 - z.sum()
    sol = np.linalg.lstsq(kkt, rhs, rcond=_RCOND)[0]
    w = z.copy()
    w[f] += sol[:k]
    return w


def _snap(w, c):
    """Remove rounding: exactly w >= c and sum(w) = 1."""
    excess = np.maximum(w - c, 0.0)
    total = excess.sum()
    free_mass = 1.0 - c.sum()
    excess = excess * (free_mass / total) if total > 0 else np.full_like(c, free_mass / c.size)
    return c + excess


def pareto_weights(grads, lower) -> np.ndarray:
    """PE-LTR Pareto weights, solved exactly: argmin ||sum_t w_t g_t||^2, sum(w) = 1, w >= lower.

    Lin et al., "A Pareto-Efficient Algorithm for Multiple Objective Optimization in E-Commerce
    Recommendation", RecSys 2019. This is the solver training uses.

    How it differs from `pareto_weights_paper`: the paper solves the problem without the bounds
    and then projects w - lower onto the simplex of mass 1 - sum(lower). Projection is exact for
    T = 2 (the feasible set is a segment and the objective is convex on it) but not in general for
    T > 2: the projection is Euclidean, the objective's level sets are ellipsoids in M = G G^T.
    Here every face of the feasible polytope (each set of tasks held at their lower bound) is
    solved in closed form, infeasible solutions are dropped and the best objective wins, so the
    result is the true minimiser. Cost: 2**T - 1 solves of size <= T + 1 (fine every k steps).

    Degenerate cases (zero, identical or linearly dependent gradients, so that several w are
    optimal) return the optimal w closest to lower + (1 - sum(lower)) / T, the even split of the
    free mass; T = 1 returns [1.0].

    Args:
        grads: (T, P) array, row t = the gradient of task t's loss w.r.t. the shared parameters.
        lower: (T,) lower bounds c_t >= 0 with sum(c) < 1.

    Returns:
        (T,) weights w >= lower summing to 1.

    Example:
        >>> pareto_weights([[1.0, 0.0], [0.0, 2.0]], [0.0, 0.0])
        array([0.8, 0.2])
    """
    g, c = _validate_pareto(grads, lower)
    t = g.shape[0]
    if t > MAX_EXACT_TASKS:
        raise ValueError(f"pareto_weights: the exact solver enumerates 2**T faces; T = {t} exceeds "
                         f"{MAX_EXACT_TASKS}; use pareto_weights_paper (approximate) instead")
    u = c + (1.0 - c.sum()) / t
    m = _gram(g)
    if m is None:
        return u
    best_w, best_obj, best_dist = None, np.inf, np.inf
    bits = np.arange(t)
    for mask in range(1, 2 ** t):
        free = (mask >> bits) & 1 == 1
        w = _face_solve(m, c, free, u)
        if np.any(w < c - _FEASIBLE_TOL):
            continue
        w = _snap(w, c)
        obj = float(w @ m @ w)
        dist = float(np.sum((w - u) ** 2))
        if obj < best_obj - _TIE_TOL or (obj <= best_obj + _TIE_TOL and dist < best_dist):
            best_w, best_obj, best_dist = w, min(obj, best_obj), dist
    return best_w  # never None: the face of a true minimiser yields a feasible solution


def pareto_weights_paper(grads, lower) -> np.ndarray:
    """PE-LTR weights by the paper's procedure: solve without the bounds, then project.

    Substitute w~ = w - lower, minimise ||sum_t (w~_t + c_t) g_t||^2 subject only to
    sum(w~) = 1 - sum(c) (closed form: the KKT system of M = G G^T, least squares when M is
    singular), then project w~ onto the simplex of mass 1 - sum(c) (Lin et al., RecSys 2019).

    Exact for T = 2; for T > 2 it can be suboptimal (see `pareto_weights`, which training uses).
    Kept as the reference to the paper and as the fallback beyond `MAX_EXACT_TASKS` tasks.

    Args:
        grads: (T, P) per-task gradients w.r.t. the shared parameters.
        lower: (T,) lower bounds c_t >= 0 with sum(c) < 1.

    Returns:
        (T,) weights w >= lower summing to 1.
    """
    g, c = _validate_pareto(grads, lower)
    t = g.shape[0]
    u = c + (1.0 - c.sum()) / t
    m = _gram(g)
    if m is None:
        return u
    w = _face_solve(m, c, np.ones(t, dtype=bool), u)
    return c + simplex_projection(w - c, 1.0 - c.sum())


def _vector(x, name, size=None):
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if size is not None and a.size != size:
        raise ValueError(f"{name} must have {size} entries (one per task), got {a.size}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinity")
    return a


def gradnorm_target(norms, losses, initial_losses, alpha: float) -> np.ndarray:
    """GradNorm's per-task gradient-norm target mean(G) * r_t**alpha (Chen et al., ICML 2018).

    r_t = (L_t / L_t(0)) / mean_t(L / L(0)) is task t's relative inverse training rate: above 1
    for a task that trains slower than average, which then gets a larger target. The target is a
    constant in the weight loss (no gradient flows through it).

    Args:
        norms: (T,) G_t = ||grad_W (w_t L_t)||, W = the last shared layer.
        losses: (T,) current losses L_t >= 0.
        initial_losses: (T,) losses at step 0, L_t(0) > 0.
        alpha: asymmetry >= 0; 0 pulls every norm to the mean.

    Returns:
        (T,) targets. If every loss is 0, r_t = 1.
    """
    g = _vector(norms, "gradnorm_target: norms")
    t = g.size
    loss = _vector(losses, "gradnorm_target: losses", t)
    loss0 = _vector(initial_losses, "gradnorm_target: initial_losses", t)
    if np.any(g < 0) or np.any(loss < 0):
        raise ValueError("gradnorm_target: norms and losses must be >= 0")
    if np.any(loss0 <= 0):
        raise ValueError(f"gradnorm_target: initial_losses must be > 0, got {loss0.tolist()}")
    alpha = float(alpha)
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"gradnorm_target: alpha must be finite and >= 0, got {alpha}")
    ratio = loss / loss0
    mean_ratio = ratio.mean()
    r = ratio / mean_ratio if mean_ratio > 0 else np.ones(t)
    return g.mean() * r ** alpha


def gradnorm_weight_grad(weights, unweighted_norms, target) -> np.ndarray:
    """Gradient w.r.t. w_t of GradNorm's weight loss sum_t |w_t n_t - target_t|.

    grad_W (w_t L_t) = w_t grad_W L_t, so G_t = w_t n_t with n_t = ||grad_W L_t||, and the
    derivative is sign(w_t n_t - target_t) * n_t (0 exactly at the target; the target is constant).

    Args:
        weights: (T,) current task weights w_t.
        unweighted_norms: (T,) n_t = ||grad_W L_t|| >= 0.
        target: (T,) from `gradnorm_target`.

    Returns:
        (T,) gradient; the caller steps w <- w - lr * grad, then `renormalise`.
    """
    w = _vector(weights, "gradnorm_weight_grad: weights")
    n = _vector(unweighted_norms, "gradnorm_weight_grad: unweighted_norms", w.size)
    tgt = _vector(target, "gradnorm_weight_grad: target", w.size)
    if np.any(n < 0):
        raise ValueError("gradnorm_weight_grad: unweighted_norms must be >= 0")
    return np.sign(w * n - tgt) * n


def renormalise(weights, T: float, min_weight: float = 1e-4) -> np.ndarray:
    """Scale `weights` to sum to T, keeping every weight >= `min_weight` (GradNorm's step).

    Weights that would fall below `min_weight` are pinned there and the others share the rest
    proportionally, so the result sums to T exactly and stays positive (a plain clip-then-scale
    could push pinned weights back under the floor).

    Args:
        weights: (n,) finite weights (negative ones are pinned to the floor).
        T: the total, usually the number of tasks; must exceed n * min_weight.
        min_weight: the floor, > 0.

    Returns:
        (n,) weights >= min_weight summing to T.
    """
    w = _vector(weights, "renormalise: weights")
    total, floor = float(T), float(min_weight)
    if not (np.isfinite(floor) and floor > 0):
        raise ValueError(f"renormalise: min_weight must be > 0, got {min_weight}")
    if not (np.isfinite(total) and total > w.size * floor):
        raise ValueError(f"renormalise: T must exceed len(weights) * min_weight = "
                         f"{w.size * floor:g}, got {T}")
    w = np.maximum(w, floor)
    pinned = np.zeros(w.size, dtype=bool)
    # Pinning lowers the scale of the rest, which may pin more: at most n rounds; the largest
    # weight is never pinned because total > n * floor.
    while True:
        scale = (total - floor * pinned.sum()) / w[~pinned].sum()
        now = pinned | (scale * w < floor)
        if np.array_equal(now, pinned):
            break
        pinned = now
    return np.where(pinned, floor, scale * w)
