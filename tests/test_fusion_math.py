"""Loss-fusion math against brute force: simplex projection, PE-LTR Pareto weights, GradNorm."""
import importlib.util

import numpy as np
import pytest

from composer.fusion_math import (
    MAX_EXACT_TASKS,
    gradnorm_target,
    gradnorm_weight_grad,
    pareto_weights,
    pareto_weights_paper,
    renormalise,
    simplex_projection,
)

HAVE_SCIPY = importlib.util.find_spec("scipy") is not None


# ---------------------------------------------------------------- references (slow but obvious)

def project_bisect(v, mass):
    """Simplex projection by bisection on theta in sum(max(v - theta, 0)) = mass (no sorting)."""
    lo, hi = v.min() - mass, v.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.maximum(v - mid, 0).sum() > mass else (lo, mid)
    return np.maximum(v - 0.5 * (lo + hi), 0)


def objective(g, w):
    return float(np.linalg.norm(w @ g))


def min_slsqp(g, c):
    """min ||w G|| over the constrained simplex: SLSQP from the centre and every vertex."""
    from scipy.optimize import minimize

    t = len(c)
    m = g @ g.T
    free = 1 - c.sum()
    starts = [c + free / t] + [c + free * np.eye(t)[i] for i in range(t)]
    best = np.inf
    for w0 in starts:
        res = minimize(lambda w: w @ m @ w, w0, jac=lambda w: 2 * m @ w, method="SLSQP",
                       bounds=[(ci, 1) for ci in c],
                       constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1,
                                     "jac": lambda w: np.ones_like(w)}],
                       options={"ftol": 1e-16, "maxiter": 1000})
        w = c + project_bisect(res.x - c, free)
        best = min(best, objective(g, w))
    return best


def min_pgd(g, c, iters=20000):
    """min ||w G|| by accelerated projected gradient (FISTA with adaptive restart).

    Uses simplex_projection, itself checked against bisection above: 200 bisections per step
    would make this reference slow.
    """
    t = len(c)
    m = g @ g.T
    free = 1 - c.sum()
    step = 1 / (2 * max(np.linalg.eigvalsh(m)[-1], 1e-300))
    w = y = c + free / t
    s = 1.0
    for _ in range(iters):
        w_new = c + simplex_projection(y - c - step * 2 * m @ y, free)
        if w_new @ m @ w_new > w @ m @ w:  # restart the momentum when it overshoots
            s, y = 1.0, w
            continue
        s_new = (1 + np.sqrt(1 + 4 * s * s)) / 2
        y = w_new + (s - 1) / s_new * (w_new - w)
        w, s = w_new, s_new
    return objective(g, w)


def min_sampled(g, c, n=20000, seed=0):
    """Plain brute force: the best of n uniform random points on the constrained simplex."""
    rng = np.random.default_rng(seed)
    w = c + (1 - c.sum()) * rng.dirichlet(np.ones(len(c)), size=n)
    return float(np.linalg.norm(w @ g, axis=1).min())


def random_problem(rng, t):
    p = int(rng.integers(1, 7))  # p < t makes G G^T singular: ties and zero minima
    g = rng.normal(size=(t, p)) * np.exp(rng.normal(size=(t, 1)))  # unequal scales activate bounds
    c = np.zeros(t) if rng.random() < 0.2 else rng.dirichlet(np.ones(t)) * rng.uniform(0, 0.9)
    return g, c


def problems(n=50, seed=0, sizes=(2, 3, 4)):
    rng = np.random.default_rng(seed)
    return [random_problem(rng, int(rng.choice(sizes))) for _ in range(n)]


def assert_feasible(w, c):
    assert w.shape == c.shape
    assert np.all(w >= c - 1e-12)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)


def assert_optimal(g, c, w):
    """First-order certificate on a polytope: grad . (y - w) >= 0 at every vertex y."""
    m = g @ g.T
    grad = 2 * m @ w
    vertices = c + (1 - c.sum()) * np.eye(len(c))
    assert np.min((vertices - w) @ grad) >= -1e-9 * max(np.trace(m), 1e-300)


# ---------------------------------------------------------------- simplex projection

@pytest.mark.parametrize("seed", range(20))
def test_simplex_projection_matches_bisection(seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=int(rng.integers(1, 9))) * 3
    mass = float(rng.uniform(0.1, 5))
    w = simplex_projection(v, mass)
    np.testing.assert_allclose(w, project_bisect(v, mass), atol=1e-10)
    assert np.all(w >= 0) and w.sum() == pytest.approx(mass, abs=1e-12)
    # Projection certificate: (v - w) . (y - w) <= 0 for every vertex y = mass * e_i.
    assert np.max((mass * np.eye(v.size) - w) @ (v - w)) <= 1e-10


@pytest.mark.skipif(not HAVE_SCIPY, reason="scipy not installed")
@pytest.mark.parametrize("seed", range(10))
def test_simplex_projection_matches_slsqp(seed):
    from scipy.optimize import minimize

    rng = np.random.default_rng(100 + seed)
    v = rng.normal(size=int(rng.integers(2, 7)))
    res = minimize(lambda w: np.sum((w - v) ** 2), np.full(v.size, 1 / v.size), method="SLSQP",
                   bounds=[(0, None)] * v.size,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                   options={"ftol": 1e-14, "maxiter": 500})
    np.testing.assert_allclose(simplex_projection(v), res.x, atol=1e-6)


def test_simplex_projection_dense_grid_3d():
    v = np.array([0.9, 0.4, -0.2])
    a = np.linspace(0, 1, 401)
    w1, w2 = np.meshgrid(a, a)
    ok = w1 + w2 <= 1
    grid = np.stack([w1[ok], w2[ok], 1 - w1[ok] - w2[ok]], axis=1)
    best = grid[np.argmin(np.sum((grid - v) ** 2, axis=1))]
    np.testing.assert_allclose(simplex_projection(v), best, atol=2.5e-3)  # grid step 1/400


def test_simplex_projection_fixed_points_and_edge_cases():
    w = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(simplex_projection(w), w, atol=1e-15)
    np.testing.assert_allclose(simplex_projection([7.0]), [1.0])
    np.testing.assert_allclose(simplex_projection([1.0, 1.0], mass=3), [1.5, 1.5])
    np.testing.assert_allclose(simplex_projection([5.0, -3.0], mass=0), [0.0, 0.0])
    np.testing.assert_allclose(simplex_projection([-100.0, -101.0]), [1.0, 0.0])


@pytest.mark.parametrize("v,mass,match", [
    ([[1.0, 2.0]], 1.0, "1-D"),
    ([], 1.0, "non-empty"),
    ([1.0, np.nan], 1.0, "NaN"),
    ([1.0, 2.0], -1.0, "mass"),
])
def test_simplex_projection_rejects_bad_input(v, mass, match):
    with pytest.raises(ValueError, match=match):
        simplex_projection(v, mass)


# ---------------------------------------------------------------- PE-LTR Pareto weights

@pytest.mark.parametrize("g,c", problems())
def test_pareto_weights_feasible_and_certified_optimal(g, c):
    w = pareto_weights(g, c)
    assert_feasible(w, c)
    assert_optimal(g, c, w)
    assert objective(g, w) <= min_sampled(g, c) + 1e-12  # random search never beats it


@pytest.mark.skipif(not HAVE_SCIPY, reason="scipy not installed")
@pytest.mark.parametrize("g,c", problems())
def test_pareto_weights_match_slsqp(g, c):
    assert objective(g, pareto_weights(g, c)) == pytest.approx(min_slsqp(g, c), abs=1e-4)


@pytest.mark.parametrize("g,c", problems(n=10, seed=1))
def test_pareto_weights_match_projected_gradient(g, c):
    # numpy-only brute force, so the 1e-4 match is checked even without scipy
    assert objective(g, pareto_weights(g, c)) == pytest.approx(min_pgd(g, c), abs=1e-4)


@pytest.mark.parametrize("g,c", problems(seed=2, sizes=(2,)))
def test_paper_procedure_is_exact_for_two_tasks(g, c):
    np.testing.assert_allclose(pareto_weights_paper(g, c), pareto_weights(g, c), atol=1e-9)


def test_paper_procedure_is_not_exact_for_three_tasks():
    # The unbounded optimum is w = (1.75, -1.5, 0.75) (objective 0); the Euclidean projection
    # gives (1, 0, 0), a vertex with ||w G|| = 4.24, but the best point of the face w_2 = 0 is
    # (11/26, 0, 15/26) with ||w G|| = 0.83: the objective's metric M = G G^T is not Euclidean.
    g = np.array([[-3.0, 3.0], [-2.0, 3.0], [3.0, -1.0]])
    c = np.zeros(3)
    np.testing.assert_allclose(pareto_weights_paper(g, c), [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(pareto_weights(g, c), [11 / 26, 0.0, 15 / 26], atol=1e-12)
    assert_optimal(g, c, pareto_weights(g, c))


@pytest.mark.parametrize("g,c", problems(n=50, seed=3, sizes=(3, 4)))
def test_exact_never_worse_than_paper(g, c):
    paper = pareto_weights_paper(g, c)
    assert_feasible(paper, c)
    assert objective(g, pareto_weights(g, c)) <= objective(g, paper) + 1e-9


def test_pareto_weights_single_task():
    np.testing.assert_allclose(pareto_weights([[3.0, -1.0]], [0.5]), [1.0])
    np.testing.assert_allclose(pareto_weights_paper([[3.0, -1.0]], [0.0]), [1.0])


@pytest.mark.parametrize("solver", [pareto_weights, pareto_weights_paper])
def test_pareto_weights_degenerate_gradients_split_free_mass_evenly(solver):
    c = np.array([0.1, 0.0, 0.3])
    even = c + 0.6 / 3
    np.testing.assert_allclose(solver(np.zeros((3, 4)), c), even)
    same = np.tile([1.0, -2.0, 0.5, 3.0], (3, 1))  # identical gradients: every feasible w ties
    np.testing.assert_allclose(solver(same, c), even, atol=1e-9)


def test_pareto_weights_duplicate_task_is_split_symmetrically():
    g = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    w = pareto_weights(g, np.zeros(3))
    np.testing.assert_allclose(w, [0.25, 0.25, 0.5], atol=1e-9)  # w1 + w2 = w3 = 1/2


def test_pareto_weights_opposite_gradients_cancel():
    g = np.array([[2.0, 1.0], [-2.0, -1.0]])
    np.testing.assert_allclose(pareto_weights(g, [0.0, 0.0]), [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(pareto_weights(g, [0.7, 0.0]), [0.7, 0.3], atol=1e-12)  # bound binds


def test_pareto_weights_are_scale_free():
    g, c = problems(n=1, seed=4, sizes=(4,))[0]
    w = pareto_weights(g, c)
    np.testing.assert_allclose(pareto_weights(g * 1e-9, c), w, atol=1e-9)
    np.testing.assert_allclose(pareto_weights(g * 1e9, c), w, atol=1e-9)


def test_pareto_weights_ten_tasks():
    rng = np.random.default_rng(5)
    g, c = rng.normal(size=(10, 30)), np.full(10, 0.05)
    w = pareto_weights(g, c)
    assert_feasible(w, c)
    assert_optimal(g, c, w)


@pytest.mark.parametrize("solver", [pareto_weights, pareto_weights_paper])
@pytest.mark.parametrize("grads,lower,match", [
    ([1.0, 2.0], [0.0], r"\(T, P\)"),
    (np.zeros((0, 3)), [], r"\(T, P\)"),
    ([[1.0], [2.0]], [0.0], "shape"),
    ([[1.0], [np.inf]], [0.0, 0.0], "NaN or infinity"),
    ([[1.0], [2.0]], [-0.1, 0.0], ">= 0"),
    ([[1.0], [2.0]], [0.5, 0.5], "sum to less than 1"),
])
def test_pareto_weights_reject_bad_input(solver, grads, lower, match):
    with pytest.raises(ValueError, match=match):
        solver(grads, lower)


def test_pareto_weights_refuse_too_many_tasks_for_exact_solve():
    t = MAX_EXACT_TASKS + 1
    with pytest.raises(ValueError, match="pareto_weights_paper"):
        pareto_weights(np.eye(t), np.zeros(t))
    assert pareto_weights_paper(np.eye(t), np.zeros(t)).sum() == pytest.approx(1.0)


# ---------------------------------------------------------------- GradNorm

def test_gradnorm_target_formula():
    norms = np.array([1.0, 2.0, 3.0])
    losses, loss0 = np.array([0.5, 1.0, 0.3]), np.array([1.0, 1.0, 0.6])
    ratio = losses / loss0  # 0.5, 1.0, 0.5 -> r = 0.75, 1.5, 0.75
    expected = norms.mean() * (ratio / ratio.mean()) ** 1.5
    np.testing.assert_allclose(gradnorm_target(norms, losses, loss0, 1.5), expected)
    np.testing.assert_allclose(gradnorm_target(norms, losses, loss0, 0.0), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(gradnorm_target(norms, [0, 0, 0], loss0, 1.0), [2.0, 2.0, 2.0])


def test_gradnorm_weight_grad_matches_finite_differences():
    rng = np.random.default_rng(6)
    w, n, target = rng.uniform(0.5, 2, 4), rng.uniform(0.1, 3, 4), rng.uniform(0.1, 3, 4)

    def loss(w):
        return np.abs(w * n - target).sum()

    eps = 1e-6
    numeric = np.array([(loss(w + eps * e) - loss(w - eps * e)) / (2 * eps) for e in np.eye(4)])
    np.testing.assert_allclose(gradnorm_weight_grad(w, n, target), numeric, atol=1e-6)
    assert gradnorm_weight_grad([2.0], [1.5], [3.0])[0] == 0.0  # at the kink: subgradient 0


def test_renormalise_sums_to_t_and_keeps_the_floor():
    np.testing.assert_allclose(renormalise([1.0, 3.0], 2), [0.5, 1.5])
    w = renormalise([-1.0, 1e-9, 5.0, 2.0], 4, min_weight=1e-2)
    assert w.sum() == pytest.approx(4.0, abs=1e-12)
    assert w.min() == pytest.approx(1e-2)
    np.testing.assert_allclose(w[2] / w[3], 2.5)  # unpinned weights keep their ratio
    # clip-then-scale would give 1e-4 * 3 / (1 + 2e-4) < 1e-4 for the small ones
    w = renormalise([1.0, 1e-8, 1e-8], 3)
    assert w.min() >= 1e-4 and w.sum() == pytest.approx(3.0, abs=1e-12)


@pytest.mark.parametrize("call,match", [
    (lambda: renormalise([1.0, 2.0], 2e-4), "exceed"),
    (lambda: renormalise([1.0, np.nan], 2), "NaN"),
    (lambda: renormalise([1.0, 2.0], 2, min_weight=0), "min_weight"),
    (lambda: gradnorm_target([1.0, 1.0], [1.0], [1.0, 1.0], 1.0), "one per task"),
    (lambda: gradnorm_target([1.0], [1.0], [0.0], 1.0), "initial_losses"),
    (lambda: gradnorm_target([1.0], [-1.0], [1.0], 1.0), ">= 0"),
    (lambda: gradnorm_target([1.0], [1.0], [1.0], -0.5), "alpha"),
    (lambda: gradnorm_weight_grad([1.0, 1.0], [1.0, -1.0], [1.0, 1.0]), ">= 0"),
])
def test_gradnorm_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_gradnorm_moves_weight_to_the_slower_task():
    # Equal raw gradient norms; task 2's loss falls more slowly and plateaus higher (L/L0 = 0.8
    # against 0.5), so its inverse training rate r_2 > 1 and GradNorm shifts weight to it.
    t, lr, alpha = 2, 0.005, 1.0
    loss0 = np.array([2.0, 1.0])
    plateau = np.array([0.5, 0.8])
    n = np.array([1.0, 1.0])
    w = np.ones(t)
    history = [w]
    for step in range(1, 401):
        losses = loss0 * (plateau + (1 - plateau) * np.exp(-step / 20))
        target = gradnorm_target(w * n, losses, loss0, alpha)
        w = renormalise(w - lr * gradnorm_weight_grad(w, n, target), t)
        assert w.sum() == pytest.approx(t, abs=1e-12) and np.all(w > 0)
        history.append(w)
    history = np.array(history)
    assert np.all(np.diff(history[:30, 1]) > 0)  # task 2 gains weight while it lags its target
    assert history[-1, 1] > 1.2 > 0.8 > history[-1, 0]
    # The weights settle, within a few steps of size lr, at the equilibrium w_t n_t = target_t:
    # mean(G) = 1 here and, with alpha = 1, the targets sum to T, so w_t = r_t exactly.
    r = plateau / plateau.mean()
    np.testing.assert_allclose(history[-50:], np.tile(r ** alpha, (50, 1)), atol=0.02)
