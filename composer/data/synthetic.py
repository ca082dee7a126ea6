"""The bundled default data: a seeded click log with planted, known structure.

Nothing to download, so ``composer train`` works on a fresh clone, and the planted structure
makes model comparisons show known effects:

* Every row has a latent representation f(x) in R^8 built from a user embedding (segment centre
  plus the user's own part), an item embedding (category centre plus the item's own part), their
  element-wise product (a user-item interaction no one-hot model can see), and the log price and
  log activity along fixed directions.
* Task scores follow the synthetic experiment of Ma et al., "Modeling Task Relationships in
  Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018, section 5.1: unit task
  vectors w_click, w_like with cosine ``correlation``, and
  score_t = w_t·f + Σ_i sin(α_i w_t·f + β_i). The label is
  Bernoulli(σ(b_{t,s} + score_t + ε)), ε ~ N(0, noise²). Low correlation is where the paper
  found multi-gate models ahead of a shared bottom; here, where f must first be learned from
  ids, a short check with the shipped blueprints found the gap within noise.
* Conversion is a chain: only clicked rows can convert (conversion ⊂ click), with its own task
  vector at cosine ``correlation`` to click's, as the CVR half of ESMM (Ma et al., SIGIR 2018).
* ``synthetic-esm2`` adds a decisive action (add-to-cart / wish list) between click and buy, as
  in ESM2 (Wen et al., SIGIR 2020): ``action`` ⊂ click, with its own task vector (cosine
  ``correlation`` to click's) and base logits. So that every other column keeps exactly its
  values, action is drawn last, from its own stream of the seed, given the buy it leads to: on
  clicked rows action ~ Bernoulli(σ(b_{action,s} + score_action + ACTION_BUY_SHIFT·conversion
  + ε)). By Bayes, buying is then frequent after an action and rare after "other" (clicked, no
  action): on the default data 28% of clicks lead to an action, p(buy | action) ≈ 0.52 against
  p(buy | click, no action) ≈ 0.05, and 80% of buys follow an action. This is ESM2's
  y1..y4 decomposition y1 = p(click), y2 = p(action | click), y3 = p(buy | action),
  y4 = p(buy | click, no action).
* Three scenarios (``tab0``/``tab1``/``tab2``, 60/30/10% of rows) each rotate every task vector
  by an angle θ_s = scenario_shift · (0, ½, 1) · π/2 (cosine to tab0's vector exactly cos θ_s;
  the tasks' mutual cosine is kept) and have their own base rates. Measured with the shipped
  blueprints (10 epochs, 3 seeds, README "Multi-scenario models"): a shared model that sees the
  scenario as a feature reaches tab2 click AUC 0.7539 ± 0.0074 and no scenario-aware blueprint
  beats it beyond seed noise there (Split&Merge 0.7495, HMoE 0.7554); ``scenario_shift=1.0``
  makes tab2's task vectors orthogonal to tab0's and ``2.0`` their negation (the linear part of
  tab2's score reversed; the sinusoids are not odd, so not the whole rule); even there
  the shared model reaches tab2 click AUC 0.7922 ± 0.0018 against STAR's 0.7855 ± 0.0050.
* ``shared_planes=1`` rotates tab1 and tab2 in one shared set of planes instead of planes of
  their own. tab0 is not rotated, tab1 turns by φ and tab2 by 2φ, so R(2φ)w = 2cos φ·R(φ)w - w:
  tab2's task vectors lie in the span of tab0's and tab1's. What tab2's rule reads from f is
  then learnt from the other scenarios' rows too, and tab2 only needs its own combination of it
  (the case where sharing across scenarios should pay). It changes tab1's and tab2's labels.
  With the default ``0``, tab2's rule reads a direction of f that only tab2's rows show.
* Days 0..9 (rows i.i.d. across days; no drift): train on days 0-7, valid on 8, test on 9.

Names: ``synthetic`` (click, like), ``synthetic-msl`` (click, with ``scenario`` as a feature and
the scenario column), ``synthetic-chain`` (click, conversion), ``synthetic-esm2`` (click, action,
conversion). Options ride on the name: ``synthetic:correlation=0.1,rows=50000,seed=3``. Every
name reads the same table for the same options (``synthetic-esm2``'s has the ``action`` column
too; the others' columns are identical to it); the name only chooses the columns a model sees.

``synthetic-mtl`` is a separate table (see ``generate_mtl``): the MMoE paper's experiment itself,
on dense inputs x ~ N(0, I_d) with no ids, click (30%) and like (10%) thresholded from
w_t·x + Σ sin(α_i w_t·x + β_i), cos(w_click, w_like) = ``correlation``. Options: rows, seed,
correlation, inputs (d, default 32), noise. Measured with the shipped shared_bottom.yaml and
mmoe.yaml (3 seeds, 20 epochs, 200,000 rows): like AUC 0.935 ± 0.001 vs 0.937 ± 0.004 at
correlation 0.1 and 0.938 ± 0.001 vs 0.936 ± 0.004 at 0.9 -- the paper's direction, but within
seed noise; at 10 epochs runs differ mostly by when they leave an early plateau.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from .dataset import DataSpec, Dataset
from .errors import DataError, did_you_mean
from .options import parse_options

DIM = 8
USERS, ITEMS, CATEGORIES, SEGMENTS = 1000, 2000, 50, 12
SCENARIOS = ("tab0", "tab1", "tab2")
SCENARIO_SHARES = (0.6, 0.3, 0.1)
SCENARIO_ANGLES = (0.0, 0.5, 1.0)  # times scenario_shift * pi/2
DAYS, VALID_DAY, TEST_DAY = 10, 8, 9
MISSING_RATE = 0.01
SINUSOIDS = 3  # MMoE uses 10 on 100-dim inputs; 3 keeps w·f the dominant, learnable part
# Base logits per task and scenario (conversion's is conditional on a click).
BASE_LOGIT = {
    "click": (-2.1, -2.5, -1.7),
    "like": (-3.1, -3.4, -2.8),
    "conversion": (-2.7, -2.4, -3.1),
    "action": (-3.4, -3.2, -3.6),  # conditional on a click, before the buy shift below
}
# Added to the action logit of rows that convert: buying mostly follows a decisive action.
ACTION_BUY_SHIFT = 4.0
ACTION = "action"  # the ESM2 label (synthetic-esm2 only); drawn from its own stream of the seed
# Per-dimension standard deviation of each part of f(x), before f is scaled to unit variance.
PART_SCALE = {"segment": 0.5, "user": 0.7, "category": 0.6, "item": 0.8, "interaction": 0.6,
              "price": 0.35, "activity": 0.35}

# Labels whose noiseless score ranks rows as their true probability does (P(label | features)
# rises with it), so its AUC is the best a model can expect on them (``Dataset.meta["planted"]``,
# the "planted truth" row of ``composer compare``). Not conversion or action: a chain step's score
# is conditional on the click, and action's leaves out the buy shift. In views that hide the
# scenario (synthetic, -chain, -esm2) the planted score is P(label | the other columns), averaged
# over the scenario: the row's own logit would be a ceiling no model can reach (about 0.025 AUC
# higher on the default data).
PLANTED = ("click", "like")
CATEGORICAL = ("user_id", "item_id", "item_category", "user_segment")
NUMERIC = ("price", "user_activity")
GROUP = "user_id"
TASKS = ("click", "like", "conversion")


def _common_problems(o) -> list[tuple[str, str]]:
    """Checks every synthetic option set shares (rows, seed, correlation)."""
    problems = []
    if o.rows < 1:
        problems.append(("rows", f"must be a positive integer, got {o.rows}"))
    if o.seed < 0:
        problems.append(("seed", f"must be >= 0, got {o.seed}"))
    if not -1.0 <= o.correlation <= 1.0:
        problems.append(("correlation", f"must be in [-1, 1], got {o.correlation}"))
    return problems


def _checked(o, problems):
    """Adds the shared noise check, raises every problem at once, or returns the options."""
    if o.noise < 0:
        problems.append(("noise", f"must be >= 0, got {o.noise}"))
    if problems:
        raise DataError.many([DataError(msg, key=key) for key, msg in problems])
    return o


@dataclass(frozen=True)
class Options:
    """What a name's ``:key=value,...`` suffix may set."""

    rows: int = 200_000
    seed: int = 2018
    correlation: float = 0.5  # cosine between task vectors (click and like, conversion, action)
    scenario_shift: float = 0.6  # 0: scenarios differ only in base rates; 1: tab2 orthogonal; 2: negated
    noise: float = 0.5  # std of the Gaussian noise added to each logit
    # 0: each scenario rotates in planes of its own; 1: all in tab0's planes, so tab2's task
    # vectors lie in the span of tab0's and tab1's (what tab2 needs is learnt from the others)
    shared_planes: int = 0

    def check(self) -> "Options":
        problems = _common_problems(self)
        if not 0.0 <= self.scenario_shift <= 2.0:
            problems.append(("scenario_shift", f"must be in [0, 2], got {self.scenario_shift}"))
        if self.shared_planes not in (0, 1):
            problems.append(("shared_planes", f"must be 0 or 1, got {self.shared_planes}"))
        return _checked(self, problems)


@dataclass(frozen=True)
class _View:
    labels: dict
    scenario: str | None
    description: str


VIEWS = {
    "synthetic": _View({"click": "click", "like": "like"}, None,
                       "Synthetic click log (MMoE-style planted tasks): click and like."),
    "synthetic-msl": _View({"click": "click"}, "scenario",
                           "Synthetic click log, three scenarios tab0/tab1/tab2 (60/30/10%): "
                           "click per scenario."),
    "synthetic-chain": _View({"click": "click", "conversion": "conversion"}, None,
                             "Synthetic click log with a click -> conversion chain "
                             "(conversion only on clicked rows)."),
    "synthetic-esm2": _View({"click": "click", "action": ACTION, "conversion": "conversion"}, None,
                            "Synthetic click log with a click -> decisive action (add-to-cart / "
                            "wish list) -> conversion chain, as in ESM2 (action and conversion "
                            "only on clicked rows; buying mostly after an action)."),
}


def parse(name: str):
    """``'synthetic:correlation=0.1,rows=50000'`` -> (``'synthetic'``, Options(...));
    ``'synthetic-mtl:...'`` -> (``'synthetic-mtl'``, MtlOptions(...))."""
    base, _, text = name.partition(":")
    base = base.strip()
    if base not in VIEWS and base != MTL:
        raise DataError(f"unknown synthetic dataset '{base}'", key="data",
                        hint=did_you_mean(base, [*VIEWS, MTL], what="synthetic datasets"))
    cls = MtlOptions if base == MTL else Options
    values = parse_options(base, text, {f.name: f.type for f in fields(cls)})
    return base, cls(**values).check()


def describe(name: str) -> DataSpec:
    """The spec of a synthetic dataset name (options checked, nothing generated)."""
    base, options = parse(name)
    if base == MTL:
        return _describe_mtl(name, options)
    view = VIEWS[base]
    categorical = CATEGORICAL + ((view.scenario,) if view.scenario else ())
    return DataSpec(name=name, categorical=categorical, numeric=NUMERIC, labels=dict(view.labels),
                    scenario=view.scenario, scenario_values=SCENARIOS if view.scenario else None,
                    group=GROUP, description=view.description + _options_note(options))


def _options_note(options) -> str:
    changed = {k: v for k, v in asdict(options).items() if v != getattr(type(options)(), k)}
    return f" Options: {', '.join(f'{k}={v}' for k, v in changed.items())}." if changed else ""


def load(name: str, rows: int | None = None) -> Dataset:
    """Generate the dataset a name describes; ``rows`` (when given) overrides the name's."""
    spec = describe(name)
    base, options = parse(name)
    if rows is not None:
        options = replace(options, rows=int(rows)).check()
    if isinstance(options, MtlOptions):
        frame, truth = generate_mtl(options)
    elif VIEWS[base].scenario is not None:
        frame, truth = generate(options, action=ACTION in VIEWS[base].labels.values())
    else:  # the view hides the scenario: its ceiling averages over it
        frame, _, truth = generate(options, action=ACTION in VIEWS[base].labels.values(), hidden_scenario=True)
    day = frame["day"].to_numpy()
    split = np.where(day == TEST_DAY, "test", np.where(day == VALID_DAY, "valid", "train"))
    planted = {label: truth[label] for label in spec.labels.values() if label in PLANTED}
    return Dataset(spec, frame, split, source=f"synthetic ({name})",
                   meta={"options": asdict(options), "split": "by day: train 0-7, valid 8, test 9",
                         "planted": planted})


def register_all(register) -> None:
    """Register every synthetic base name with the dataset registry."""
    for base in (*VIEWS, MTL):
        register(base, describe, load)


def task_vectors(correlation: float, basis: np.ndarray) -> dict[str, np.ndarray]:
    """Unit task vectors in the MMoE construction: click = e1, other = ρ e1 + √(1-ρ²) e_k."""
    rest = np.sqrt(1.0 - correlation ** 2)
    return {"click": basis[:, 0],
            "like": correlation * basis[:, 0] + rest * basis[:, 1],
            "conversion": correlation * basis[:, 0] + rest * basis[:, 2],
            ACTION: correlation * basis[:, 0] + rest * basis[:, 3]}


def scenario_rotation(angle: float, basis: np.ndarray) -> np.ndarray:
    """An orthogonal R with x·Rx = cos(angle)·|x|² for every x: the same rotation in the four
    planes (b1,b2), (b3,b4), ... of an orthonormal ``basis``."""
    c, s = np.cos(angle), np.sin(angle)
    block = np.zeros((DIM, DIM))
    for i in range(0, DIM, 2):
        block[i:i + 2, i:i + 2] = [[c, -s], [s, c]]
    return basis @ block @ basis.T


def scenario_rotations(options: Options, planes: list[np.ndarray]) -> np.ndarray:
    """One rotation per scenario, (S, DIM, DIM): by scenario_shift · SCENARIO_ANGLES[s] · π/2 in
    the planes of ``planes[s]``, or of ``planes[0]`` for every scenario with ``shared_planes``
    (then, tab2's angle being twice tab1's, R_2 w = 2cos φ·R_1 w - w lies in span(w, R_1 w))."""
    if options.shared_planes:
        planes = [planes[0]] * len(planes)
    angles = [a * options.scenario_shift * np.pi / 2 for a in SCENARIO_ANGLES]
    return np.stack([scenario_rotation(a, p) for a, p in zip(angles, planes)])


def _orthonormal(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    return q * np.sign(np.diag(r))


def _names(prefix: str, n: int) -> np.ndarray:
    return np.array([f"{prefix}{i}" for i in range(n)], dtype=object)


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def generate(options: Options = Options(), action: bool = False, hidden_scenario: bool = False):
    """The table and the planted truth for ``options``.

    ``hidden_scenario=True`` adds a third value: per PLANTED label, P(label | every column but
    the scenario), the ceiling of a view that hides the scenario (``synthetic``): the scenario
    is drawn independently of the rest, so it is Σ_s share_s · E_ε[σ(logit_s + ε)] over the
    label's logit under each scenario's rule.

    Returns ``(frame, logits)``: the pandas DataFrame (features, ``scenario``, ``day`` and the
    labels click, like, conversion) and, per task, the noiseless logit b_{t,s} + score_t of each
    row (conversion's is conditional on a click). Structure, rows, noise and missing values draw
    from separate streams of the seed, so changing ``correlation``, ``scenario_shift`` or
    ``noise`` changes only the labels.

    ``action=True`` (the ``synthetic-esm2`` view) appends the ``action`` label, drawn from a
    fifth stream after everything else, so every other column is unchanged; its logit in
    ``logits`` is conditional on a click and leaves out the buy shift ``ACTION_BUY_SHIFT``.
    """
    import pandas as pd

    options.check()
    n = options.rows
    # spawn(5)'s first four children are spawn(4)'s: the action stream leaves the others alone
    structure, rows, noise, missing, action_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(options.seed).spawn(5))

    # Structure: who is who, and the task functions.
    scale = PART_SCALE
    user_segment = structure.integers(0, SEGMENTS, USERS)
    user_level = np.exp(0.8 * structure.normal(size=USERS))  # activity; active users log more
    segment_emb = scale["segment"] * structure.normal(size=(SEGMENTS, DIM))
    user_emb = scale["user"] * structure.normal(size=(USERS, DIM))
    item_category = structure.integers(0, CATEGORIES, ITEMS)
    category_emb = scale["category"] * structure.normal(size=(CATEGORIES, DIM))
    item_emb = scale["item"] * structure.normal(size=(ITEMS, DIM))
    category_logprice = structure.uniform(np.log(5.0), np.log(200.0), CATEGORIES)
    item_price = np.exp(category_logprice[item_category] + 0.4 * structure.normal(size=ITEMS))
    popularity = 1.0 / (np.arange(ITEMS) + 20.0) ** 0.9
    item_popularity = popularity[structure.permutation(ITEMS)]
    price_dir, activity_dir = (v / np.linalg.norm(v) for v in structure.normal(size=(2, DIM)))
    alpha = structure.uniform(0.5, 1.5, SINUSOIDS)
    beta = structure.uniform(0.0, 2 * np.pi, SINUSOIDS)
    basis = _orthonormal(structure)
    planes = [_orthonormal(structure) for _ in SCENARIOS]

    # Rows: one impression each.
    user = rows.choice(USERS, n, p=user_level / user_level.sum())
    item = rows.choice(ITEMS, n, p=item_popularity / item_popularity.sum())
    scenario = rows.choice(len(SCENARIOS), n, p=SCENARIO_SHARES)
    day = np.sort(rows.integers(0, DAYS, n))
    price = item_price[item] * rows.uniform(0.85, 1.0, n)  # the item's price after a discount
    activity = user_level[user] * np.exp(0.2 * rows.normal(size=n))

    # f(x): the latent representation of a row, scaled to about unit variance per dimension.
    interaction = user_emb[user] * item_emb[item] / (scale["user"] * scale["item"])
    f = (segment_emb[user_segment[user]] + user_emb[user]
         + category_emb[item_category[item]] + item_emb[item]
         + scale["interaction"] * interaction
         + scale["price"] * _zscore(np.log(price))[:, None] * price_dir
         + scale["activity"] * _zscore(np.log(activity))[:, None] * activity_dir)
    f /= np.sqrt(sum(v ** 2 for v in scale.values()))

    vectors = task_vectors(options.correlation, basis)
    rotations = scenario_rotations(options, planes)

    def score(z):  # the MMoE paper's task function of z = w·f (any shape)
        return z + np.sin(alpha * z[..., None] + beta).sum(axis=-1)

    logits, labels = {}, {}
    for task in TASKS:
        z = np.einsum("nd,nd->n", f, (rotations @ vectors[task])[scenario])
        logits[task] = np.asarray(BASE_LOGIT[task])[scenario] + score(z)
        noisy = logits[task] + options.noise * noise.normal(size=n)
        labels[task] = noise.random(n) < 1.0 / (1.0 + np.exp(-noisy))
    labels["conversion"] &= labels["click"]
    if action:  # last, from its own stream: every column above keeps its values
        z = np.einsum("nd,nd->n", f, (rotations @ vectors[ACTION])[scenario])
        logits[ACTION] = np.asarray(BASE_LOGIT[ACTION])[scenario] + score(z)
        noisy = (logits[ACTION] + ACTION_BUY_SHIFT * labels["conversion"]
                 + options.noise * action_noise.normal(size=n))
        labels[ACTION] = (action_noise.random(n) < 1.0 / (1.0 + np.exp(-noisy))) & labels["click"]

    price[missing.random(n) < MISSING_RATE] = np.nan
    activity[missing.random(n) < MISSING_RATE] = np.nan
    frame = pd.DataFrame({
        "user_id": _names("u", USERS)[user],
        "item_id": _names("i", ITEMS)[item],
        "item_category": _names("c", CATEGORIES)[item_category[item]],
        "user_segment": _names("s", SEGMENTS)[user_segment[user]],
        "scenario": np.asarray(SCENARIOS, dtype=object)[scenario],
        "price": price.round(2),
        "user_activity": activity.round(3),
        "day": day,
        **{task: labels[task].astype(np.int64) for task in TASKS},
    })
    if action:
        frame[ACTION] = labels[ACTION].astype(np.int64)
    if not hidden_scenario:
        return frame, logits
    visible = {}
    for task in PLANTED:
        z = f @ (rotations @ vectors[task]).T  # (n, S): the task's z under every scenario's rule
        every = np.asarray(BASE_LOGIT[task]) + score(z)
        visible[task] = _expected_sigmoid(every, options.noise) @ np.asarray(SCENARIO_SHARES)
    return frame, logits, visible


def _expected_sigmoid(logit: np.ndarray, noise: float, nodes: int = 24) -> np.ndarray:
    """E[σ(logit + ε)], ε ~ N(0, noise²), by Gauss-Hermite quadrature (numpy's probabilists'
    nodes; exact for noise 0). Written here: no library gives this logistic-normal integral."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    out = np.zeros_like(logit, dtype=float)
    for xi, wi in zip(x, w / w.sum()):
        out += wi / (1.0 + np.exp(-(logit + noise * xi)))
    return out


# --- synthetic-mtl: the MMoE paper's synthetic tasks on dense inputs -------------------------
#
# Why a second generator: in ``synthetic`` the task functions act on a latent f(x) that a model
# must first learn from id embeddings, and with the shipped blueprints every architecture landed
# within noise of the others there. Here the inputs are the paper's: dense x ~ N(0, I_d) that
# every task reads, so how a model shares its hidden units between tasks is what matters.

MTL = "synthetic-mtl"
MTL_TASKS = ("click", "like")
MTL_SINUSOIDS = 10  # m in the paper
MTL_SCALE = 1.0  # c in the paper: |w_t|
# The paper gives no alpha_i, beta_i; these are the ones of google-research's generator for the
# same experiment (alpha_i = i, beta_i = i^2, i = 0..m-1 for beta). Being fixed, every data seed
# poses the same learning problem up to a rotation of x.
MTL_ALPHA = np.arange(1.0, MTL_SINUSOIDS + 1)
MTL_BETA = np.arange(MTL_SINUSOIDS) ** 2.0
MTL_RATE = {"click": 0.30, "like": 0.10}  # positive rates: like is the rarer task
MTL_REFERENCE_ROWS = 200_000  # draws (from the structure stream) that fix the thresholds


@dataclass(frozen=True)
class MtlOptions:
    """What a ``synthetic-mtl:key=value,...`` suffix may set."""

    rows: int = 200_000
    seed: int = 2018
    correlation: float = 0.5  # cosine between the click and like task vectors
    inputs: int = 32  # number of dense input columns x00, x01, ...
    noise: float = 0.5  # std of the Gaussian noise on each task's standardised score

    def check(self) -> "MtlOptions":
        problems = _common_problems(self)
        if self.inputs < 2:
            problems.append(("inputs", f"must be >= 2 (two orthogonal task directions), "
                                       f"got {self.inputs}"))
        return _checked(self, problems)


def mtl_columns(inputs: int) -> tuple[str, ...]:
    """The input column names: x00, x01, ... (zero-padded to sort in order)."""
    width = max(2, len(str(inputs - 1)))
    return tuple(f"x{i:0{width}d}" for i in range(inputs))


def _describe_mtl(name: str, options: MtlOptions) -> DataSpec:
    return DataSpec(name=name, categorical=(), numeric=mtl_columns(options.inputs),
                    labels={t: t for t in MTL_TASKS}, scenario=None, group=None,
                    description="Synthetic multi-task data as in the MMoE paper (Ma et al., KDD "
                    f"2018, sec. 5.1): {options.inputs} dense N(0,1) inputs; click (30%) and like "
                    "(10%) from task functions whose vectors have cosine `correlation`."
                    + _options_note(options))


def mtl_score(z: np.ndarray) -> np.ndarray:
    """The paper's task function of z = w_t·x: z + Σ_i sin(α_i z + β_i)."""
    return z + np.sin(MTL_ALPHA * z[..., None] + MTL_BETA).sum(axis=-1)


def generate_mtl(options: MtlOptions = MtlOptions()):
    """The ``synthetic-mtl`` table and, per task, the noiseless standardised score of each row.

    x ~ N(0, I_d); unit vectors u1 ⟂ u2; w_click = c·u1, w_like = c·(ρ u1 + √(1-ρ²) u2), so
    cos(w_click, w_like) = ρ = ``correlation``; score_t = (mtl_score(w_t·x) - μ) / σ (Ma et al.
    2018, sec. 5.1, standardised); label_t = 1[score_t + noise·ε_t > τ_t], ε_t ~ N(0, 1), with
    τ_t fixed on a reference sample so that the positive rate is MTL_RATE[t]. The paper's tasks
    are regressions; thresholding keeps them binary like every other Composer dataset.
    Columns: x00..x{d-1}, ``day`` (split: train 0-7, valid 8, test 9) and the labels. As for
    ``generate``, changing ``correlation`` or ``noise`` changes only the labels.
    """
    import pandas as pd

    options.check()
    n, d = options.rows, options.inputs
    structure, rows, noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence([options.seed, d]).spawn(3))
    q, r = np.linalg.qr(structure.normal(size=(d, 2)))
    u = q * np.sign(np.diag(r))
    rho = options.correlation
    w = {"click": MTL_SCALE * u[:, 0],
         "like": MTL_SCALE * (rho * u[:, 0] + np.sqrt(1.0 - rho ** 2) * u[:, 1])}
    # w_t·x ~ N(0, c²) for every task, so one reference sample of it fixes every task's scaling
    # and (with the task's rate) its threshold, whatever ``rows`` is.
    reference = mtl_score(MTL_SCALE * structure.normal(size=MTL_REFERENCE_ROWS))
    mean, std = reference.mean(), reference.std()
    reference = (reference - mean) / std + options.noise * structure.normal(size=MTL_REFERENCE_ROWS)

    x = rows.normal(size=(n, d))
    day = np.sort(rows.integers(0, DAYS, n))
    scores, labels = {}, {}
    for task in MTL_TASKS:
        scores[task] = (mtl_score(x @ w[task]) - mean) / std
        threshold = np.quantile(reference, 1.0 - MTL_RATE[task])
        labels[task] = scores[task] + options.noise * noise.normal(size=n) > threshold
    frame = pd.DataFrame({**dict(zip(mtl_columns(d), x.T.round(4))), "day": day,
                          **{t: labels[t].astype(np.int64) for t in MTL_TASKS}})
    return frame, scores
