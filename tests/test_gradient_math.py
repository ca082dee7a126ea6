"""The NumPy references of composer/gradient_math.py on fixed gradients: conflicting and
non-conflicting pairs and triples, against closed forms, brute force and scipy."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize, root

from composer import gradient_math as gm

AGREE = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.2, 0.1, 1.0]])  # pairwise dot products > 0
CONFLICT = np.array([[1.0, 0.0, 0.0], [-0.8, 0.6, 0.0], [0.0, -1.0, 0.5]])


def test_pcgrad_without_conflict_is_the_plain_sum():
    for order in itertools.permutations(range(3)):
        np.testing.assert_allclose(gm.pcgrad(AGREE, list(order)), AGREE.sum(axis=0), atol=1e-12)


def test_pcgrad_pair_projects_each_onto_the_others_normal_plane():
    g1, g2 = CONFLICT[0], CONFLICT[1]
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1
    out = gm.pcgrad(np.stack([g1, g2]), [1, 0])
    np.testing.assert_allclose(out, p1 + p2, atol=1e-12)
    assert p1 @ g2 == pytest.approx(0.0, abs=1e-12) and p2 @ g1 == pytest.approx(0.0, abs=1e-12)


def test_pcgrad_triple_depends_on_the_order():
    outs = {tuple(np.round(gm.pcgrad(CONFLICT, list(o)), 9)) for o in itertools.permutations(range(3))}
    assert len(outs) > 1  # with three conflicting tasks the order matters
    # order (1, 2, 0): task 2 first loses its part along g1 (conflict), then along g0 nothing
    g = CONFLICT
    p2 = g[2] - (g[2] @ g[1]) / (g[1] @ g[1]) * g[1]
    p2 = p2 - min(p2 @ g[0], 0) / (g[0] @ g[0]) * g[0]
    p0 = g[0] - (g[0] @ g[1]) / (g[1] @ g[1]) * g[1]
    p0 = p0 - min(p0 @ g[2], 0) / (g[2] @ g[2]) * g[2]
    p1 = g[1] - min(g[1] @ g[2], 0) / (g[2] @ g[2]) * g[2]
    p1 = p1 - min(p1 @ g[0], 0) / (g[0] @ g[0]) * g[0]
    np.testing.assert_allclose(gm.pcgrad(g, [1, 2, 0]), p0 + p1 + p2, atol=1e-12)


def test_pcgrad_orders_are_seeded_permutations():
    a, b = gm.pcgrad_orders(3, seed=1), gm.pcgrad_orders(3, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (gm.PCGRAD_ORDERS, 3)
    assert all(sorted(row) == [0, 1, 2] for row in a)
    assert not np.array_equal(a, gm.pcgrad_orders(3, seed=2))
    assert len({tuple(r) for r in a}) == 6  # every order of three tasks occurs


@pytest.mark.parametrize("grads", [AGREE, CONFLICT, CONFLICT[:2]])
def test_cagrad_with_c_zero_is_the_mean_gradient_times_t(grads):
    for rescale in (0, 1, 2):
        np.testing.assert_allclose(gm.cagrad(grads, c=0.0, rescale=rescale), grads.mean(axis=0) * len(grads),
                                   atol=1e-6)


def test_cagrad_dual_matches_scipy_slsqp():
    """The fixed-step solver against the official code's solver (SLSQP), on random problems
    including near-cancelling pairs: objective gap under 1% of the mean squared gradient norm."""
    rng = np.random.default_rng(0)
    for trial in range(60):
        t = int(rng.integers(2, 5))
        g = rng.normal(size=(t, 6)) * rng.uniform(0.1, 10, size=(t, 1))
        if trial % 3 == 0:
            g[1] = -0.9 * g[0] + 0.05 * rng.normal(size=6)
        a = g @ g.T
        ref = minimize(lambda x: gm.cagrad_dual_objective(x, a, 0.4), np.full(t, 1 / t), bounds=[(0, 1)] * t,
                       constraints=({"type": "eq", "fun": lambda x: 1 - x.sum()},)).x
        ref = np.clip(ref, 0, None) / np.clip(ref, 0, None).sum()
        w = gm.cagrad_weights(g, 0.4)
        assert w.min() >= 0 and w.sum() == pytest.approx(1.0)
        gap = gm.cagrad_dual_objective(w, a, 0.4) - gm.cagrad_dual_objective(ref, a, 0.4)
        assert gap <= 1e-2 * np.trace(a) / t


def test_cagrad_improves_the_worst_task_over_the_mean():
    d = gm.cagrad(CONFLICT, c=0.4, rescale=0)
    g0 = CONFLICT.mean(axis=0) * 3
    assert (CONFLICT @ d).min() > (CONFLICT @ g0).min()


def test_mgda_two_tasks_is_the_closed_form():
    rng = np.random.default_rng(1)
    for _ in range(20):
        g = rng.normal(size=(2, 5))
        np.testing.assert_allclose(gm.mgda_weights(g), gm.mgda_two(g[0], g[1]), atol=1e-9)
    # one gradient inside the other's half-space beyond it: all weight on the smaller one
    np.testing.assert_allclose(gm.mgda_weights([[1.0, 0.0], [3.0, 0.0]]), [1.0, 0.0], atol=1e-12)


def test_mgda_triple_is_the_min_norm_point():
    w = gm.mgda_weights(CONFLICT, steps=500)
    best = min((np.linalg.norm(v @ CONFLICT), tuple(v)) for v in _simplex_grid(3, 200))
    assert np.linalg.norm(w @ CONFLICT) <= best[0] + 1e-9
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0)


def test_mgda_normalizations():
    g = np.array([[2.0, 0.0], [0.0, 1.0]])
    # l2: unit gradients, equal weights; none: the smaller gradient gets more weight
    np.testing.assert_allclose(gm.mgda_weights(g, "l2"), [0.5, 0.5], atol=1e-9)
    np.testing.assert_allclose(gm.mgda_weights(g, "none"), [0.2, 0.8], atol=1e-9)
    np.testing.assert_allclose(gm.mgda_weights(g, "loss", losses=[2.0, 1.0]), [0.5, 0.5], atol=1e-9)


@pytest.mark.parametrize("grads", [AGREE, CONFLICT, CONFLICT[:2], np.diag([1.0, 4.0])])
def test_nash_solution_satisfies_its_equations_and_matches_scipy(grads):
    alpha = gm.nash_weights(grads)
    m = grads @ grads.T
    m = m / np.linalg.norm(m) + gm.NASH_RIDGE * np.eye(len(m))
    assert alpha.min() > 0
    np.testing.assert_allclose(m @ alpha, 1 / alpha, rtol=1e-9)
    ref = root(lambda a: m @ a - 1 / a, np.ones(len(m))).x
    np.testing.assert_allclose(alpha, ref, rtol=1e-6)


def test_nash_orthogonal_gradients_get_inverse_norm_weights():
    g = np.diag([1.0, 4.0])  # M / ||M|| = diag(1, 16) / sqrt(257): alpha_t = 257**0.25 / ||g_t||
    np.testing.assert_allclose(gm.nash_weights(g), 257 ** 0.25 / np.array([1.0, 4.0]), rtol=1e-5)


@pytest.mark.parametrize("grads", [AGREE, CONFLICT, CONFLICT[:2]])
def test_aligned_components_are_orthogonal_with_norm_sigma_min(grads):
    comps = gm.aligned_components(grads)
    sigma_min = np.linalg.svd(grads, compute_uv=False).min()
    np.testing.assert_allclose(comps @ comps.T, sigma_min ** 2 * np.eye(len(grads)), atol=1e-9)
    np.testing.assert_allclose(gm.aligned_weights(grads) @ grads, comps.sum(axis=0), atol=1e-12)


def test_aligned_rank_deficient_drops_the_null_direction():
    g = np.array([[1.0, 0.0], [2.0, 0.0]])  # rank 1
    comps = gm.aligned_components(g)
    assert np.all(np.isfinite(comps))
    assert np.linalg.matrix_rank(comps) == 1


def test_metabalance_pulls_aux_norm_toward_main():
    main, aux = np.array([3.0, 4.0]), np.array([[0.3, 0.4], [30.0, 40.0]])  # norms 5, 0.5, 50
    out, m_main, m_aux, scale = gm.metabalance(main, aux, 0.0, [0.0, 0.0], beta=0.0, relax=1.0)
    np.testing.assert_allclose(scale, [10.0, 0.1])
    np.testing.assert_allclose(out, main + 10 * aux[0] + 0.1 * aux[1])
    _, _, _, scale = gm.metabalance(main, aux, 0.0, [0.0, 0.0], beta=0.0, relax=0.0)
    np.testing.assert_allclose(scale, [1.0, 1.0])
    _, _, _, scale = gm.metabalance(main, aux, 0.0, [0.0, 0.0], beta=0.0, relax=1.0, mode="reduce")
    np.testing.assert_allclose(scale, [1.0, 0.1])
    _, _, _, scale = gm.metabalance(main, aux, 0.0, [0.0, 0.0], beta=0.0, relax=1.0, mode="enlarge")
    np.testing.assert_allclose(scale, [10.0, 1.0])


def test_metabalance_moving_averages():
    _, m_main, m_aux, _ = gm.metabalance([3.0, 4.0], [[0.0, 1.0]], 1.0, [2.0], beta=0.9)
    assert m_main == pytest.approx(0.9 * 1.0 + 0.1 * 5.0)
    np.testing.assert_allclose(m_aux, [0.9 * 2.0 + 0.1 * 1.0])


def test_pairwise_cosines():
    cos = gm.pairwise_cosines(CONFLICT[:2])
    np.testing.assert_allclose(cos, [[1.0, -0.8], [-0.8, 1.0]])


def _simplex_grid(t, n):
    for c in itertools.product(range(n + 1), repeat=t - 1):
        if sum(c) <= n:
            yield np.array(list(c) + [n - sum(c)]) / n
