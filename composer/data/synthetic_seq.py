"""``synthetic-seq``: a seeded click log with behaviour histories, built so that target attention
(DIN: the candidate attends over the history) can be measured against mean pooling.

Planted structure:

* Items have unit latent vectors in R^16: a category centre plus the item's own offset
  (``OFFSET`` relative to the centre), normalised, so items of one category are close and items
  within a category still differ. Similarity is the dot product, sim(a, b) = v_a·v_b.
* Each user has 2..``interests`` interests (categories, with Dirichlet weights). A row's history
  (``hist_item``, oldest first, 0..``max_len`` items, EMPTY_RATE of rows empty) runs in sessions:
  each position keeps the previous position's interest or, with probability SWITCH, redraws one
  from the user's weights; EXPLORE of the positions are a category at random. Items within a
  category follow a popularity law.
* The candidate (``item_id``) is, by its mode: a history item again (REPEAT), an item of the
  category of a random history item (NEAR), an item of one of the user's interests (INTEREST),
  or an item of any category by popularity (the rest).
* click: logit = CLICK_BASE + CLICK_SCALE · max_h sim(candidate, h) (the most similar history
  item: local relevance, which the mean of a history spanning several interests blurs)
  + item bias + user bias + PRICE_EFFECT · z(log price) + ε; an empty history counts as
  similarity EMPTY_SIM.
* like: independent of click, logit = LIKE_BASE + LIKE_SCALE · max over the RECENT newest
  history items of sim (recency: what the user is on now) + item quality + user bias + ε.
* ε ~ N(0, noise²). ``Dataset.meta["planted"][label]`` is E_ε[σ(logit + ε)], P(label | the
  row's columns) exactly (every term is a function of the columns), the ceiling of
  ``composer compare``'s "(planted truth)" row.
* Days 0..9 (rows i.i.d. across days): train on 0-7, valid 8, test 9, as ``synthetic``.

Rows are independent: each row draws its own history from its user's interests (a user's
histories are not one growing timeline). Ids are ints (1500 items in 40 categories, 2000 users);
every item also appears as a train candidate.

A quick proxy of the gap (no model trained), test split of the default data (150,000 rows, seed
2018), AUC click / like: planted 0.869 / 0.866; ``mean_pooled_scores`` (the planted formula with
the candidate's similarity to the *mean* of the history latents in place of the max) 0.756 /
0.789; a gradient-boosted model fitted on that similarity, the mean's norm, the history length,
the biases and price 0.818 / 0.801 (0.835 / 0.807 given also the share of the history in the
candidate's category); the planted probability averaged over redrawn histories of the same user
(ids only, no history) about 0.76 / 0.76. With ``interests=1`` the gap shrinks (see the tests).
Options ride on the name: ``synthetic-seq:rows=50000,seed=3,max_len=30,interests=4,noise=0.5``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from .dataset import DataSpec, Dataset, ListSpec
from .errors import DataError, did_you_mean
from .options import parse_options
from .synthetic import DAYS, TEST_DAY, VALID_DAY, _expected_sigmoid

NAME = "synthetic-seq"
LATENT = 16
USERS, ITEMS, CATEGORIES = 2000, 1500, 40
OFFSET = 1.0  # |item offset| relative to its (unit) category centre
MIN_INTERESTS = 2
MAX_INTERESTS = 8
MAX_LEN_LIMIT = 200
EMPTY_RATE = 0.08  # rows with no history at all
SWITCH = 0.3  # chance that the next history item starts a new session (interest redrawn)
EXPLORE = 0.08  # history positions from a category at random, not an interest
# Candidate modes: a history item again, an item of a history item's category, of one of the
# user's interests, or of any category (by popularity).
REPEAT, NEAR, INTEREST = 0.05, 0.25, 0.2
CLICK_BASE, CLICK_SCALE = -4.8, 6.0
LIKE_BASE, LIKE_SCALE = -5.2, 5.0
EMPTY_SIM = 0.3  # the similarity an empty history counts as
RECENT = 3  # like reads the newest RECENT history items
ITEM_BIAS, ITEM_QUALITY, USER_CLICK, USER_LIKE = 0.5, 0.6, 0.3, 0.4  # standard deviations
PRICE_EFFECT = -0.3
CATEGORICAL = ("user_id", "item_id", "item_cat")
NUMERIC = ("price",)
LISTS = ("hist_item", "hist_cat")
LABELS = ("click", "like")
GROUP = "user_id"


@dataclass(frozen=True)
class Options:
    """What a ``synthetic-seq:key=value,...`` suffix may set."""

    rows: int = 150_000
    seed: int = 2018
    max_len: int = 30  # longest history kept (the newest max_len items)
    interests: int = 4  # each user has 2..interests interests (1 if interests=1)
    noise: float = 0.5  # std of the Gaussian noise added to each logit

    def check(self) -> "Options":
        problems = []
        if self.rows < 1:
            problems.append(("rows", f"must be a positive integer, got {self.rows}"))
        if self.seed < 0:
            problems.append(("seed", f"must be >= 0, got {self.seed}"))
        if not 1 <= self.max_len <= MAX_LEN_LIMIT:
            problems.append(("max_len", f"must be in [1, {MAX_LEN_LIMIT}], got {self.max_len}"))
        if not 1 <= self.interests <= MAX_INTERESTS:
            problems.append(("interests", f"must be in [1, {MAX_INTERESTS}], got {self.interests}"))
        if self.noise < 0:
            problems.append(("noise", f"must be >= 0, got {self.noise}"))
        if problems:
            raise DataError.many([DataError(msg, key=key) for key, msg in problems])
        return self


def parse(name: str) -> tuple[str, Options]:
    """``'synthetic-seq:rows=5000,max_len=20'`` -> (``'synthetic-seq'``, Options(...))."""
    base, _, text = name.partition(":")
    base = base.strip()
    if base != NAME:
        raise DataError(f"unknown synthetic dataset '{base}'", key="data",
                        hint=did_you_mean(base, [NAME], what="synthetic sequence datasets"))
    values = parse_options(base, text, {f.name: f.type for f in fields(Options)})
    return base, Options(**values).check()


def describe(name: str) -> DataSpec:
    """The spec (options checked, nothing generated)."""
    _, options = parse(name)
    changed = {k: v for k, v in asdict(options).items() if v != getattr(Options(), k)}
    note = f" Options: {', '.join(f'{k}={v}' for k, v in changed.items())}." if changed else ""
    n = options.max_len
    return DataSpec(
        name=name, categorical=CATEGORICAL, numeric=NUMERIC,
        labels={label: label for label in LABELS}, group=GROUP,
        lists={"hist_item": ListSpec(ordered=True, max_len=n, share="item_id"),
               "hist_cat": ListSpec(ordered=True, max_len=n, share="item_cat",
                                    aligned_with="hist_item")},
        description="Synthetic click log with behaviour histories (hist_item, hist_cat; oldest "
        "first): click from the candidate's similarity to its most similar history item (target "
        "attention), like from its similarity to the newest items." + note)


def load(name: str, rows: int | None = None) -> Dataset:
    """Generate the dataset; ``rows`` (when given) overrides the name's."""
    spec = describe(name)
    _, options = parse(name)
    if rows is not None:
        options = replace(options, rows=int(rows)).check()
    frame, truth = generate(options)
    day = frame["day"].to_numpy()
    split = np.where(day == TEST_DAY, "test", np.where(day == VALID_DAY, "valid", "train"))
    return Dataset(spec, frame, split, source=f"synthetic ({name})",
                   meta={"options": asdict(options), "split": "by day: train 0-7, valid 8, test 9",
                         "planted": {label: truth[label] for label in LABELS}})


def register(register_fn) -> None:
    """Register ``synthetic-seq`` with the dataset registry (``register(name, describe, load)``)."""
    register_fn(NAME, describe, load)


# --- generation ----------------------------------------------------------------------------

@dataclass(frozen=True)
class World:
    """The structure a seed fixes: item latents and categories, users' interests, biases."""

    latent: np.ndarray  # (ITEMS, LATENT), unit rows
    category: np.ndarray  # (ITEMS,) the item's category
    by_category: np.ndarray  # item ids sorted by category
    cdf: np.ndarray  # category + the within-category popularity CDF, aligned with by_category
    category_p: np.ndarray  # (CATEGORIES,) popularity of each category
    interests: np.ndarray  # (USERS, interests) category ids (padded by repeating)
    interest_cdf: np.ndarray  # (USERS, interests) CDF of the user's interest weights
    user_p: np.ndarray  # (USERS,) activity: how many rows a user has
    item_bias: np.ndarray
    item_quality: np.ndarray
    user_click: np.ndarray
    user_like: np.ndarray
    log_price: np.ndarray  # (ITEMS,) the item's list log price


def world(options: Options, rng: np.random.Generator) -> World:
    centres = rng.normal(size=(CATEGORIES, LATENT))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    category = rng.permutation(np.arange(ITEMS) % CATEGORIES)  # every category has items
    latent = centres[category] + OFFSET * rng.normal(size=(ITEMS, LATENT)) / np.sqrt(LATENT)
    latent /= np.linalg.norm(latent, axis=1, keepdims=True)
    popularity = rng.permutation(1.0 / (np.arange(ITEMS) + 10.0) ** 0.8)
    by_category = np.argsort(category, kind="stable")
    cats = category[by_category]
    pop = popularity[by_category]
    totals = np.bincount(cats, weights=pop, minlength=CATEGORIES)
    within = np.cumsum(pop) - np.concatenate([[0.0], np.cumsum(totals)[:-1]])[cats]
    cdf = cats + within / totals[cats]
    cdf[np.r_[cats[1:] != cats[:-1], True]] = cats[np.r_[cats[1:] != cats[:-1], True]] + 1.0

    k = options.interests
    low = min(MIN_INTERESTS, k)
    count = rng.integers(low, k + 1, USERS)
    picks = np.argsort(rng.random((USERS, CATEGORIES)), axis=1)[:, :k]
    weights = rng.dirichlet(np.ones(k), USERS) * (np.arange(k) < count[:, None])
    interest_cdf = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    interest_cdf[:, -1] = 1.0
    category_logprice = rng.uniform(np.log(5.0), np.log(200.0), CATEGORIES)
    return World(
        latent=latent, category=category, by_category=by_category, cdf=cdf,
        category_p=totals / totals.sum(), interests=picks, interest_cdf=interest_cdf,
        user_p=(p := np.exp(0.7 * rng.normal(size=USERS))) / p.sum(),
        item_bias=ITEM_BIAS * rng.normal(size=ITEMS),
        item_quality=ITEM_QUALITY * rng.normal(size=ITEMS),
        user_click=USER_CLICK * rng.normal(size=USERS),
        user_like=USER_LIKE * rng.normal(size=USERS),
        log_price=category_logprice[category] + 0.4 * rng.normal(size=ITEMS))


def _item_of(w: World, category: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item of each given category, by popularity within the category."""
    at = np.searchsorted(w.cdf, category + rng.random(category.shape), side="right")
    return w.by_category[np.minimum(at, ITEMS - 1)]


def _interest_of(w: World, user: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of each user's interests, by the user's weights."""
    which = (rng.random(len(user))[:, None] > w.interest_cdf[user]).sum(axis=1)
    return w.interests[user, np.minimum(which, w.interests.shape[1] - 1)]


def histories(w: World, user: np.ndarray, max_len: int, rng: np.random.Generator):
    """(items (n, max_len), lengths (n,)): each row's history, oldest first in positions
    0..length-1 (the rest is padding, -1)."""
    n = len(user)
    length = np.where(rng.random(n) < EMPTY_RATE, 0, rng.integers(1, max_len + 1, n))
    cats = np.empty((n, max_len), dtype=np.int64)
    current = _interest_of(w, user, rng)
    for j in range(max_len):
        if j:
            switch = rng.random(n) < SWITCH
            current = np.where(switch, _interest_of(w, user, rng), current)
        explore = rng.random(n) < EXPLORE
        cats[:, j] = np.where(explore, rng.integers(0, CATEGORIES, n), current)
    items = _item_of(w, cats, rng)
    items[np.arange(max_len) >= length[:, None]] = -1
    return items, length


def candidates(w: World, user, hist, length, rng: np.random.Generator) -> np.ndarray:
    """The candidate of each row, by mode (see the module docstring)."""
    n = len(user)
    mode = rng.random(n)
    pick = hist[np.arange(n), (rng.random(n) * np.maximum(length, 1)).astype(np.int64)]
    has = length > 0
    category = np.where(mode < REPEAT + NEAR + INTEREST, _interest_of(w, user, rng),
                        rng.choice(CATEGORIES, n, p=w.category_p))
    near = has & (mode < REPEAT + NEAR)
    category = np.where(near, w.category[np.maximum(pick, 0)], category)
    item = _item_of(w, category, rng)
    return np.where(has & (mode < REPEAT), pick, item)


def similarities(w: World, item: np.ndarray, hist: np.ndarray, chunk: int = 32_768) -> np.ndarray:
    """(n, max_len) sim(candidate, history item), NaN at padding."""
    out = np.empty(hist.shape, dtype=np.float64)
    latent = w.latent.astype(np.float32)
    for s in range(0, len(item), chunk):
        h = hist[s:s + chunk]
        out[s:s + chunk] = np.einsum("nd,nld->nl", latent[item[s:s + chunk]], latent[np.maximum(h, 0)])
    out[hist < 0] = np.nan
    return out


def relevance(w: World, item: np.ndarray, hist: np.ndarray, length: np.ndarray):
    """(click's, like's) relevance of each row's candidate to its history: the similarity of
    the most similar history item, over all of it or over the RECENT newest."""
    sim = similarities(w, item, hist)
    masked = np.where(np.isnan(sim), -np.inf, sim)
    recent = np.arange(hist.shape[1]) >= (length - RECENT)[:, None]
    r_click = np.where(length > 0, masked.max(axis=1), EMPTY_SIM)
    r_like = np.where(length > 0, np.where(recent, masked, -np.inf).max(axis=1), EMPTY_SIM)
    return r_click, r_like


def logits(w: World, user, item, log_price, r_click, r_like) -> dict[str, np.ndarray]:
    """The noiseless logit of each label from the relevances and the row's other columns."""
    z_price = (log_price - w.log_price.mean()) / w.log_price.std()
    return {"click": CLICK_BASE + CLICK_SCALE * r_click + w.item_bias[item] + w.user_click[user]
            + PRICE_EFFECT * z_price,
            "like": LIKE_BASE + LIKE_SCALE * r_like + w.item_quality[item] + w.user_like[user]}


def generate(options: Options = Options()):
    """``(frame, truth)``: the table and, per label, E_ε[σ(logit + ε)] of each row.

    Columns: user_id, item_id, item_cat (ints), price, hist_item, hist_cat (object columns of
    int64 arrays, oldest first, empty for no history), day, click, like. Structure, rows and
    label noise draw from separate streams of the seed, so ``noise`` changes only the labels.
    """
    import pandas as pd

    options.check()
    n = options.rows
    structure, rows, noise = (np.random.default_rng(s)
                              for s in np.random.SeedSequence(options.seed).spawn(3))
    w = world(options, structure)
    user = rows.choice(USERS, n, p=w.user_p)
    hist, length = histories(w, user, options.max_len, rows)
    item = candidates(w, user, hist, length, rows)
    day = np.sort(rows.integers(0, DAYS, n))
    log_price = w.log_price[item] + np.log(rows.uniform(0.7, 1.0, n))  # after a discount
    logit = logits(w, user, item, log_price, *relevance(w, item, hist, length))
    truth, labels = {}, {}
    for label in LABELS:
        truth[label] = _expected_sigmoid(logit[label], options.noise)
        noisy = logit[label] + options.noise * noise.normal(size=n)
        labels[label] = (noise.random(n) < 1.0 / (1.0 + np.exp(-noisy))).astype(np.int64)

    flat = hist[hist >= 0]  # row-major: each row's items in order, oldest first
    hist_item, hist_cat = _ragged(flat, length), _ragged(w.category[flat], length)
    frame = pd.DataFrame({
        "user_id": user.astype(np.int64), "item_id": item.astype(np.int64),
        "item_cat": w.category[item].astype(np.int64), "price": np.exp(log_price).round(2),
        "hist_item": hist_item, "hist_cat": hist_cat, "day": day, **labels})
    return frame, truth


def _ragged(flat: np.ndarray, length: np.ndarray) -> np.ndarray:
    """An object array of n 1-D int64 arrays: consecutive runs of ``flat`` of the lengths."""
    ends = np.cumsum(length).tolist()
    flat = flat.astype(np.int64)
    out = np.empty(len(length), dtype=object)
    for i, (a, b) in enumerate(zip([0, *ends[:-1]], ends)):  # one by one: equal lengths
        out[i] = flat[a:b]  # would otherwise broadcast into a 2-D array
    return out


# --- proxies of what a model can reach (for tests and reports; no model trained) -----------

def _rebuild(options: Options, frame):
    """The world of ``options`` and the padded history matrix of ``frame``."""
    w = world(options, np.random.default_rng(np.random.SeedSequence(options.seed).spawn(3)[0]))
    length = frame["hist_item"].map(len).to_numpy()
    hist = np.full((len(frame), options.max_len), -1, dtype=np.int64)
    if length.sum():
        hist[np.arange(options.max_len) < length[:, None]] = np.concatenate(
            [np.asarray(h, dtype=np.int64) for h in frame["hist_item"]])
    return w, hist, length


def history_means(w: World, hist: np.ndarray) -> np.ndarray:
    """(n, LATENT): the mean latent of each row's history (zeros for an empty one)."""
    from scipy import sparse

    rows, cols = np.nonzero(hist >= 0)
    counts = sparse.csr_matrix((np.ones(len(rows)), (rows, hist[rows, cols])),
                               shape=(len(hist), ITEMS))
    return (counts @ w.latent) / np.maximum((hist >= 0).sum(axis=1), 1)[:, None]


def mean_pooled_scores(options: Options, frame) -> dict[str, np.ndarray]:
    """The mean-pooling oracle: each label's planted logit with the candidate's similarity to
    the *mean* of the history's latents in place of the relevances (what a model that pools
    the history by its mean, before seeing the candidate, keeps of it)."""
    w, hist, length = _rebuild(options, frame)
    item, user = frame["item_id"].to_numpy(), frame["user_id"].to_numpy()
    r = np.where(length > 0, np.einsum("nd,nd->n", w.latent[item], history_means(w, hist)),
                 EMPTY_SIM)
    return logits(w, user, item, np.log(frame["price"].to_numpy()), r, r)
