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


LossSection = Annotated[Union[FixedLoss, UncertaintyLoss, GradNormLoss, ParetoLoss],
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
    distribution: Literal["none", "mirrored", "data_parallel"] = Field(
        "none", description="`none`: one device; `mirrored`: every GPU of this machine "
        "(TensorFlow's MirroredStrategy, KERAS_BACKEND=tensorflow); `data_parallel`: every device of "
        "every process (keras.distribution.DataParallel, KERAS_BACKEND=jax), several machines "
        "through JAX's multi-process runtime (docs/distributed.md). TensorFlow's "
        "MultiWorkerMirroredStrategy is not offered: Keras 3's fit fails under it (Keras issue 20585).")

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
