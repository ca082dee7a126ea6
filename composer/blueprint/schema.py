"""The blueprint language as pydantic models: one typed class per section.

The ``blocks`` section is a discriminated union over every registered block type; it is
assembled from the registry by :func:`blueprint_model`, so a new block needs no edit here.
"""
from __future__ import annotations

import functools
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag, field_validator

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]


class Strict(BaseModel):
    """Unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Ids(Strict):
    """What every id-valued feature (categorical, multi, sequence) shares."""

    name: Identifier = Field(description="Column name of the feature.")
    dim: int = Field(8, ge=1, le=1024, description="Embedding width (a feature with `share` takes "
                     "its owner's width; giving another is an error).")
    vocab_size: int | None = Field(
        None, ge=2, description="Rows of the embedding table, out-of-vocabulary bucket included. "
        "Fitted from the training data when omitted.")
    hash_buckets: int | None = Field(
        None, ge=2, le=1 << 31, description="Hash the values into this many rows instead of fitting a "
        "vocabulary (row 0 is kept for missing values; the others take FarmHash64(text) mod "
        "(N - 1) + 1, TensorFlow's to_hash_bucket_fast, so the exported model hashes alike). For "
        "unbounded ids.")
    share: Identifier | None = Field(
        None, description="Look this feature's ids up in the table of another id feature (its "
        "vocabulary, or its hashing, and its rows), so a candidate and its history live in one "
        "embedding space.")


class CategoricalFeature(_Ids):
    kind: Literal["categorical"] = Field(description="An id looked up in an embedding table.")


class _ListIds(_Ids):
    max_len: int = Field(description="Most values kept per row; shorter rows are padded (padding "
                         "never reaches a result: every block reading the list takes its mask).")
    pool: Literal["mean", "sum", "max"] = Field(
        "mean", description="How an `embed` group turns the list into one vector (masked: padding "
        "left out; an empty list gives zeros). Sequence blocks read the list whole instead.")


class MultiFeature(_ListIds):
    kind: Literal["multi"] = Field(description="A multi-valued field (tags, genres): an unordered "
                                   "list of ids; a list column, or a delimited text cell such as '39,43'.")
    max_len: int = Field(8, ge=1, le=4096, description="Most values kept per row: the first ones, "
                         "in the data's order (padding after them).")
    truncate: Literal["keep_first", "error"] = Field(
        "keep_first", description="A row with more values: keep the first `max_len`, or an error.")


class SequenceFeature(_ListIds):
    kind: Literal["sequence"] = Field(description="An ordered list of ids, oldest first and newest "
                                      "last (a behaviour history).")
    max_len: int = Field(50, ge=1, le=4096, description="Most values kept per row: the newest ones. "
                         "Rows are right-aligned: padding first, the newest value always at the last "
                         "position (so position embeddings count back from the newest).")
    truncate: Literal["keep_newest", "error"] = Field(
        "keep_newest", description="A longer row: drop its oldest values, or an error.")
    aligned_with: Identifier | None = Field(
        None, description="Another sequence this one is a side field of (each watched video's "
        "author): same max_len, same length on every row (a data error otherwise), one mask.")


class NumericEmbedding(Strict):
    """A numeric column as a learned vector instead of one standardised number (Gorishniy et
    al., "On Embeddings for Numerical Features in Tabular Deep Learning", NeurIPS 2022)."""

    kind: Literal["quantile", "periodic"] = Field(
        description="`quantile`: the bucket of the value among `buckets` quantile edges fitted on "
        "the train split, looked up in a table; `periodic`: PLR, ReLU(Linear([sin(2 pi c x), "
        "cos(2 pi c x)])) over the standardised value with `frequencies` trained c ~ N(0, sigma).")
    dim: int = Field(8, ge=1, le=1024, description="Width of the embedding.")
    buckets: int = Field(16, ge=2, le=4096, description="quantile: number of buckets.")
    frequencies: int = Field(16, ge=1, le=1024, description="periodic: number of frequencies c.")
    sigma: float = Field(1.0, gt=0, le=1000, description="periodic: initial scale of the frequencies.")


class NumericFeature(Strict):
    name: Identifier = Field(description="Column name of the feature.")
    kind: Literal["numeric"] = Field(description="A float column, standardised inside the model.")
    embed: NumericEmbedding | None = Field(
        None, description="Opt in to a learned embedding of the value (replaces the standardised "
        "number in `embed` groups).")


Feature = Annotated[Union[CategoricalFeature, MultiFeature, SequenceFeature, NumericFeature],
                    Field(discriminator="kind")]
ID_KINDS = ("categorical", "multi", "sequence")
LIST_KINDS = ("multi", "sequence")


class FeaturesFromData(Strict):
    """Take the dataset's feature columns: categorical ones embedded, numeric ones standardised."""

    from_data: Literal[True] = Field(description="Use every feature column of the bound dataset.")
    dim: int = Field(8, ge=1, le=1024, description="Embedding width of every categorical feature.")
    dims: dict[Identifier, int] = Field(default_factory=dict, description="Widths overriding `dim`.")
    exclude: list[Identifier] = Field(default_factory=list, description="Dataset features to leave out.")
    numeric_embed: NumericEmbedding | None = Field(
        None, description="Embed every numeric feature this way (quantile or periodic) instead of "
        "one standardised number.")
    hash_buckets: dict[Identifier, int] = Field(
        default_factory=dict, description="Id features hashed into N rows instead of a fitted "
        "vocabulary (e.g. {user_id: 100000}).")


def _shape_tag(value) -> str:
    if isinstance(value, BaseModel):  # a validated section, when serialising
        return "mapping"
    return {list: "list", dict: "mapping", str: "text"}.get(type(value), type(value).__name__)


def _forms(**forms):
    """A field written in one of several YAML shapes (list, mapping, text); it is validated
    against the form of its shape only, so a mistake is reported once, against that form."""
    tagged = tuple(Annotated[t, Tag(tag)] for tag, t in forms.items())
    return Annotated[Union[tagged], Discriminator(_shape_tag)]


class CounterfactualRisk(Strict):
    """ESCM2's counterfactual CVR risk over the entire exposure space (Wang, Zhang, Chen, Wu, Liu,
    Zhang, "ESCM2: Entire Space Counterfactual Multi-Task Model for Post-Click Conversion Rate
    Estimation", SIGIR 2022). It replaces the task's clicked-only loss: the task's `where` marks
    the observed rows o (clicks), the propensity task's probability p (pCTR, held constant: no
    gradient, floored at `clip`) reweights them, and the mean runs over every row where the
    propensity task counts (the exposures)."""

    type: Literal["ips", "dr"] = Field(
        description="`ips`: mean_i o_i e_i / p_i with e_i the task's BCE; `dr` (doubly robust): "
        "mean_i [e^_i + o_i (e_i - e^_i) / p_i] plus the imputation loss mean_i o_i (e_i - e^_i)^2 / p_i, "
        "e^_i the `imputation` output's prediction of e_i. The risk trains the task (e^ held "
        "constant in it); the imputation loss trains the imputation output (e held constant in it).")
    propensity: Identifier = Field(description="The task whose probability is the propensity of an "
                                   "observed row (the CTR task); it must count on every row the risk "
                                   "averages over.")
    clip: float = Field(0.05, gt=0, le=1, description="Floor on the propensity: 1/p is at most 1/clip.")
    imputation: Identifier | None = Field(
        None, description="dr only: an output (a name in `outputs` that is not a task, pointing at a "
        "tower) whose probability is e^, the imputed error of this task; predicted, not evaluated.")


class Task(Strict):
    name: Identifier = Field(description="Task name; the model output of the same name.")
    label: str | None = Field(
        None, description="Label column, or a label expression over 0/1 label columns such as "
        "`click & buy` (defaults to the task name).")
    where: str | None = Field(
        None, description="Label expression selecting the rows where this task's loss and "
        "metrics count, e.g. `click` for a CVR trained and evaluated on clicked rows only.")
    loss: bool = Field(True, description="false: no loss term of its own (ESMM's CVR, trained "
                       "through CTCVR); still predicted and evaluated.")
    type: Literal["binary"] = Field("binary", description="Binary classification (a probability).")
    risk: CounterfactualRisk | None = Field(
        None, description="A counterfactual risk as this task's loss instead of its masked BCE (ESCM2's "
        "CVR: `{type: ips, propensity: ctr}` with `where: click`).")

    @property
    def label_text(self) -> str:
        return self.label or self.name

    @property
    def label_column(self) -> str:
        """The label column when the label is a plain column name."""
        return self.label_text

    def columns(self) -> list[str]:
        """Every label column the label and ``where`` expressions read, in order."""
        from .expressions import parse_label

        names = parse_label(self.label_text).names()
        if self.where:
            names += [n for n in parse_label(self.where).names() if n not in names]
        return names


class Scenarios(Strict):
    """The scenarios (domains) a multi-scenario blueprint routes by, in id order. A row whose
    scenario value is not declared is a data error at load time, never a silent wrong gather."""

    feature: Identifier = Field(description="Categorical feature whose value is the scenario.")
    values: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(
        None, min_length=2, description="The scenario values, in id order (ids 0..S-1).")
    count: int | None = Field(None, ge=2, le=4096, description="Number of scenarios when the "
                              "values are the integers 0..count-1.")

    @property
    def ids(self) -> list[str]:
        """The declared values, in id order (``count`` stands for '0'..'count-1')."""
        if self.values is not None:
            return list(self.values)
        return [str(i) for i in range(self.count or 0)]

    @property
    def names(self) -> list[str]:
        """The values as block-name suffixes (``tower.tab0``): other characters become '_'."""
        import re

        return [re.sub(r"[^A-Za-z0-9_]", "_", v) for v in self.ids]


class FixedLoss(Strict):
    fusion: Literal["fixed"] = Field(description="L = sum_t w_t L_t with constant weights.")
    weights: dict[Identifier, float] = Field(
        default_factory=dict, description="Per-task weight; tasks not named get 1.0.")


class UncertaintyLoss(Strict):
    fusion: Literal["uncertainty"] = Field(
        description="Kendall et al., CVPR 2018: L = sum_t exp(-s_t) L_t + s_t / 2 with learned "
        "s_t = log sigma_t^2 (classification form). The total can be negative.")
    initial_log_variance: float = Field(0.0, ge=-10, le=10, description="Initial s_t for every task.")


class GradNormLoss(Strict):
    fusion: Literal["gradnorm"] = Field(
        description="Chen et al., ICML 2018: task weights trained so that the gradient norms of the "
        "weighted task losses on the last shared layer follow each task's relative training rate.")
    alpha: float = Field(1.5, ge=0, le=10, description="Restoring force (0 equalises gradient norms).")
    learning_rate: float = Field(0.025, gt=0, le=10, description="Learning rate of the task weights.")
    shared_layer: str | None = Field(
        None, description="Block whose weights W the norms are taken on (default: the last block "
        "shared by every task).")


class ParetoLoss(Strict):
    fusion: Literal["pareto"] = Field(
        description="PE-LTR (Lin et al., RecSys 2019): weights minimising ||sum_t w_t grad_t||^2 on "
        "the shared parameters, with sum w = 1 and w_t >= lower bound.")
    lower_bounds: dict[Identifier, float] = Field(
        default_factory=dict, description="Per-task lower bound c_t (tasks not named get `default_lower_bound`).")
    default_lower_bound: float = Field(0.1, ge=0, lt=1, description="c_t for tasks not listed.")
    every: int = Field(10, ge=1, le=100_000, description="Recompute the weights every k steps.")


class DWALoss(Strict):
    fusion: Literal["dwa"] = Field(
        description="Dynamic Weight Average (Liu, Johns, Davison, CVPR 2019): w_t = T exp(r_t / tau) / "
        "sum_i exp(r_i / tau) with r_t = L_t(e-1) / L_t(e-2), the ratio of the task's mean training "
        "loss over the last two epochs; every weight 1 in the first two epochs. Set between epochs.")
    temperature: float = Field(2.0, gt=0, le=1000, description="tau: higher gives more even weights.")


class RLWLoss(Strict):
    fusion: Literal["rlw"] = Field(
        description="Random Loss Weighting (Lin, Ye, Xu, Shi, Zhang, TMLR 2022): every step w = T "
        "softmax(z), z ~ N(0, I) from the trainer's seeded generator (reproduced on --resume); the "
        "weights sum to T, so their mean is 1 like fixed fusion's default weights. The valid loss "
        "takes the expected weights (1 each).")


class FAMOLoss(Strict):
    fusion: Literal["famo"] = Field(
        description="FAMO (Liu, Liang, Chen, Liu, NeurIPS 2023): the model trains on sum_t z_t log L_t / c "
        "(z = softmax(xi), c = sum_t z_t / L_t held constant), so the task gradients get weights z_t / "
        "(c L_t) (logged, summing to 1); xi takes an Adam step on the decrease of the log task losses. "
        "One forward pass per step: the decrease is measured from this batch's losses to the next "
        "batch's (the authors' code re-evaluates the same batch after the step, a second forward pass).")
    learning_rate: float = Field(0.025, gt=0, le=10, description="Learning rate of xi (the paper's beta).")
    weight_decay: float = Field(1e-3, ge=0, le=10, description="Weight decay of xi (the paper's gamma).")


class PCGradLoss(Strict):
    fusion: Literal["pcgrad"] = Field(
        description="PCGrad (Yu et al., NeurIPS 2020): each task's gradient on the shared parameters "
        "loses its component along every other task's gradient it conflicts with (negative dot "
        "product), in a random task order each step; the shared update is their sum, every other "
        "parameter gets its plain gradient. Logs cos_<a>_<b> (the mean pairwise cos_mean beyond 3 tasks).")
    seed: int = Field(0, ge=0, description="Seed of the per-step task orders (a fixed table of 251 "
                      "orders, step s uses order s mod 251: the same on every backend and on resume).")


class CAGradLoss(Strict):
    fusion: Literal["cagrad"] = Field(
        description="CAGrad (Liu et al., NeurIPS 2021): the shared update maximises the worst task's "
        "improvement within a ball of radius c ||g0|| around the mean gradient g0 (its dual over the "
        "simplex solved by fixed projected-gradient steps); times the task count, to match the "
        "summed loss, as the official code. Logs the dual weights and the cosines.")
    c: float = Field(0.4, ge=0, le=10, description="Radius factor c (0: the mean gradient).")
    rescale: Literal[0, 1, 2] = Field(1, description="Divide the update by 1 (0), 1 + c^2 (1) or 1 + c (2), "
                                      "as the official code.")
    steps: int = Field(100, ge=1, le=10_000, description="Projected-gradient steps on the dual.")


class MGDALoss(Strict):
    fusion: Literal["mgda"] = Field(
        description="MGDA-UB (Sener and Koltun, NeurIPS 2018): task weights = the min-norm point of "
        "the task gradients w.r.t. the shared representation (the output of `shared_layer`), by "
        "Frank-Wolfe; the weights then multiply the losses.")
    shared_layer: str | None = Field(
        None, description="Block whose output is the shared representation (default: the last block "
        "shared by every task, as GradNorm's).")
    normalization: Literal["none", "l2", "loss", "loss+"] = Field(
        "none", description="Gradient normalisation before the min-norm solve (the official code's "
        "options): none, l2 (by the norm), loss (by the loss), loss+ (by both).")
    steps: int = Field(50, ge=1, le=10_000, description="Frank-Wolfe steps.")


class NashMTLLoss(Strict):
    fusion: Literal["nash_mtl"] = Field(
        description="Nash-MTL (Navon et al., ICML 2022): task weights alpha > 0 solving G G^T alpha = "
        "1 / alpha on the shared parameters (Gram normalised, as the official code), by damped "
        "Newton; the weights multiply the losses and the shared gradient's norm is clipped.")
    every: int = Field(1, ge=1, le=100_000, description="Solve for the weights every k steps (the "
                       "official update_weights_every); the others reuse the last ones.")
    max_norm: float = Field(1.0, ge=0, le=1e6, description="Clip the shared gradient's global norm "
                            "to this (0: no clipping).")
    steps: int = Field(30, ge=1, le=1000, description="Newton steps.")


class AlignedMTLLoss(Strict):
    fusion: Literal["aligned_mtl"] = Field(
        description="Aligned-MTL (Senushkin et al., CVPR 2023): the task gradients on the shared "
        "parameters are aligned into orthogonal components of equal norm sigma_min (the smallest "
        "singular value), through the eigendecomposition of their T x T Gram matrix; the resulting "
        "task weights multiply the losses.")


class MetaBalanceLoss(Strict):
    fusion: Literal["metabalance"] = Field(
        description="MetaBalance (He et al., WWW 2022): on each shared parameter tensor, each "
        "auxiliary task's gradient is rescaled toward the main task's gradient norm (moving averages); "
        "the shared update is the main gradient plus the rescaled ones. Logs each task's mean scale.")
    main: Identifier = Field(description="The main (target) task; the others are auxiliary.")
    beta: float = Field(0.9, ge=0, lt=1, description="Moving-average factor of the gradient norms.")
    relax: float = Field(0.7, ge=0, le=1, description="Relax factor r: 1 matches the main norm, 0 "
                         "leaves the auxiliary gradients unchanged.")
    mode: Literal["adapt", "reduce", "enlarge"] = Field(
        "adapt", description="Rescale every auxiliary gradient (adapt), only larger ones (reduce) or "
        "only smaller ones (enlarge) than the main one.")


LossSection = Annotated[Union[FixedLoss, UncertaintyLoss, GradNormLoss, ParetoLoss, DWALoss, RLWLoss, FAMOLoss,
                              PCGradLoss, CAGradLoss, MGDALoss, NashMTLLoss, AlignedMTLLoss, MetaBalanceLoss],
                        Field(discriminator="fusion")]


class Training(Strict):
    optimizer: Literal["adam", "adamw", "adagrad", "sgd", "rmsprop"] = Field(
        "adam", description="Keras optimizer for the model weights.")
    learning_rate: float = Field(1e-3, gt=0, le=10, description="Optimizer learning rate.")
    batch_size: int = Field(1024, ge=1, le=1_048_576, description="Examples per training step.")
    epochs: int = Field(1, ge=1, le=10_000, description="Passes over the training split.")
    seed: int = Field(42, ge=0, description="Seed for weights, shuffling and dropout.")
    monitor: str = Field("auc", description="Early-stopping metric on the valid split: `auc` "
                         "(macro over tasks), `auc_<task>` or `loss`.")
    patience: int = Field(2, ge=0, le=1000, description="Epochs without improvement before stopping.")
    min_count: int = Field(1, ge=1, description="Categorical values seen fewer times in the train "
                           "split go to the out-of-vocabulary bucket.")
    precision: Literal["float32", "mixed_bfloat16"] = Field(
        "float32", description="Keras dtype policy of the model: `mixed_bfloat16` computes in "
        "bfloat16 with float32 weights, except the output blocks (towers, chains), which stay "
        "float32 like the losses and the metrics. `composer train --precision`.")
    stream: bool = Field(
        False, description="Read the data file in chunks instead of whole, for data larger than memory "
        "(a data YAML's CSV or Parquet file): it is read and checked once, its typed rows kept per split "
        "in Arrow files under $TMPDIR (removed at the end), and every epoch streams them with the same "
        "preprocessing, fitted in one pass over the train rows. The progress line shows rows_per_s and "
        "input_wait (share of the epoch spent waiting for the next batch). `composer train --stream`.")
    chunk_rows: int = Field(65536, ge=1, le=16_777_216, description="Streaming: rows read from the "
                            "file per chunk (a CSV chunk also stops at about 8 MB of text). Reading "
                            "holds about 15 times a chunk's text at once.")
    shuffle_buffer: int = Field(262_144, ge=0, le=1 << 30, description="Streaming: rows shuffled "
                                "together (a buffer refilled as it empties; 0 keeps file order). Memory "
                                "grows with it.")
    loop: Literal["auto", "fit"] = Field(
        "auto", description="`auto`: under KERAS_BACKEND=jax in one process Composer's scanned loop (data "
        "on the device, many steps per dispatch), elsewhere Keras `fit`; `fit`: Keras `fit` on every "
        "backend, one epoch per call (the path before the scanned loop). `composer train --loop`.")
    device_budget_mb: int | None = Field(
        None, ge=1, description="KERAS_BACKEND=jax: device memory (MiB) the training rows may take. Rows that "
        "fit go to the device once and every epoch runs there in scanned steps; larger data streams to "
        "the device in chunks, the next copied while the current one trains. Default: half the "
        "device's free memory. `composer train --device-budget-mb`.")
    distribution: Literal["none", "mirrored", "data_parallel", "model_parallel"] = Field(
        "none", description="`none`: one device; `mirrored`: every GPU of this machine "
        "(TensorFlow's MirroredStrategy, KERAS_BACKEND=tensorflow); `data_parallel`: every device of "
        "every process (keras.distribution.DataParallel, KERAS_BACKEND=jax), several machines "
        "through JAX's multi-process runtime (docs/distributed.md); `model_parallel`: a (batch, model) "
        "device mesh (keras.distribution.ModelParallel, KERAS_BACKEND=jax): stacked embedding tables of "
        "at least `shard_min_rows` rows sharded by rows over the model axis, everything else "
        "replicated. TensorFlow's MultiWorkerMirroredStrategy is not offered: Keras 3's fit fails "
        "under it (Keras issue 20585).")
    model_axis: int | None = Field(
        None, ge=1, le=65536, description="model_parallel: devices on the mesh's model axis (the large "
        "tables' rows are split over them); the other devices form the batch axis. Default: every "
        "device. `composer train --model-axis`.")
    shard_min_rows: int = Field(
        1_000_000, ge=1, description="model_parallel: a stacked table (one per embedding width) with at "
        "least this many rows is sharded over the model axis; smaller ones are replicated.")
    device_memory_mb: int | None = Field(
        None, ge=1, description="Memory per device (MiB) the model's tables, weights and optimizer slots "
        "may take: `composer plan` and `composer train` refuse a layout that does not fit. "
        "`--device-memory-mb`.")

    @field_validator("distribution", mode="before")
    @classmethod
    def _not_offered(cls, value):
        from pydantic_core import PydanticCustomError

        from ..distributed import not_offered

        why = not_offered(value)
        if why:
            raise PydanticCustomError("distribution_not_offered", why)
        return value


FROM_DATA = "from_data"
# '*' = every feature; '*categorical' / '*numeric' / '*multi' / '*sequence' = every feature of that
# kind; '*scenario' = the scenario feature. They keep a blueprint independent of one dataset's column names.
GROUP_WILDCARDS = ("*", "*categorical", "*numeric", "*scenario", "*multi", "*sequence")
GroupMember = Annotated[str, StringConstraints(
    pattern=r"^([A-Za-z_][A-Za-z0-9_]*|" + "|".join(w.replace("*", r"\*") for w in GROUP_WILDCARDS) + ")$",
    max_length=64)]


class BlueprintBase(Strict):
    name: Identifier = Field(description="Model name.")
    description: str = Field("", description="Free text, shown in docs and summaries.")
    data: str | None = Field(
        None, description="Default dataset: a built-in name (`synthetic`, `census-mtl`, ...) or a "
        "data YAML path relative to the blueprint; `--data` overrides it.")
    features: _forms(list=Annotated[list[Feature], Field(min_length=1)], mapping=FeaturesFromData) = Field(
        description="Input features: a list, or `{from_data: true, dim: 8}` for the dataset's own.")
    groups: dict[Identifier, list[GroupMember]] = Field(
        default_factory=dict, description="Named lists of features, consumed by `embed` blocks; "
        "`'*'` stands for every feature, `'*categorical'` / `'*numeric'` for every feature of "
        "that kind and `'*scenario'` for the scenario feature.")
    tasks: _forms(list=Annotated[list[Task], Field(min_length=1)], text=Literal["from_data"]) = Field(
        description="Prediction tasks (one output each), or `from_data` for the dataset's labels.")
    scenarios: _forms(mapping=Scenarios, text=Literal["from_data"]) | None = Field(
        None, description="Multi-scenario blueprints only: `{feature: tab, values: [...]}` (or "
        "`count`), or `from_data` for the bound dataset's scenario column and values.")
    outputs: _forms(mapping=dict[Identifier, str], text=str) = Field(
        description="Task name -> reference to its output block, or one reference with `{task}`.")
    loss: LossSection = Field(default_factory=lambda: FixedLoss(fusion="fixed"),
                              description="How per-task losses are fused.")
    training: Training = Field(default_factory=Training, description="Training settings.")

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def feature(self, name: str):
        return next((f for f in self.features if f.name == name), None)


@functools.cache
def blueprint_model() -> type[BlueprintBase]:
    """The Blueprint class, with ``blocks`` a discriminated union of every registered block."""
    from pydantic import create_model

    from ..blocks import registry

    union = Annotated[Union[tuple(registry.all_blocks().values())], Field(discriminator="type")]
    return create_model(
        "Blueprint", __base__=BlueprintBase,
        blocks=(dict[Identifier, union], Field(min_length=1, description="Named blocks of the model graph.")),
    )
