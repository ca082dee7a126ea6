"""Serving export (TensorFlow only): a SavedModel whose signature takes raw feature values
(strings for categorical features, numbers for numeric ones, one delimited string per row for
multi-valued and sequence features: ``"39,43"``, oldest first, any length, empty allowed) and
returns one probability per task. Lists are split, looked up (or hashed), truncated and padded
inside, exactly as training packed them. The vocabularies (with their out-of-vocabulary bucket), the log1p flags and the missing-
value imputation travel inside the artefact as lookup tables and constants, so serving applies
exactly the training-time mapping."""
from __future__ import annotations

from pathlib import Path


def _require_tensorflow():
    import keras

    if keras.backend.backend() != "tensorflow":
        from .blueprint.errors import BlueprintError

        raise BlueprintError(f"SavedModel export needs KERAS_BACKEND=tensorflow (now "
                             f"'{keras.backend.backend()}'); the .keras file works on every backend")


def export_saved_model(exp, path: str) -> Path:
    _require_tensorflow()
    import tensorflow as tf

    layout, pre, model = exp.graph.layout, exp.pre, exp.model
    tables = {}
    for name, vocab in pre.vocabularies.items():
        init = tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocab or [""], dtype=tf.string),
            tf.constant(list(range(1, len(vocab) + 1)) or [0], dtype=tf.int64))
        tables[name] = tf.lookup.StaticHashTable(init, default_value=0)

    signature = {n: tf.TensorSpec([None], tf.string, name=n) for names in layout.categorical_by_dim.values()
                 for n in names}
    signature.update({n: tf.TensorSpec([None], tf.string, name=n) for n in layout.lists})
    signature.update({n: tf.TensorSpec([None], tf.float32, name=n) for n in layout.numeric})
    scenario_table = None
    if layout.scenario:
        signature.setdefault(layout.scenario, tf.TensorSpec([None], tf.string, name=layout.scenario))
        values = pre.scenario["values"]
        scenario_table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(values, dtype=tf.string), tf.range(len(values), dtype=tf.int64)), default_value=-1)

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.tables = tables
            self.scenario_table = scenario_table

        def ids(self, name, text):
            """Ids of text values through the table ``name`` reads (its owner's)."""
            owner = layout.table_of[name]
            if owner in pre.hashed:
                hashed = tf.cast(tf.strings.to_hash_bucket_fast(text, pre.hashed[owner] - 1), tf.int32) + 1
                return tf.where(text == "", tf.zeros_like(hashed), hashed)
            return tf.cast(self.tables[owner].lookup(text), tf.int32)

        def padded(self, name, text):
            """A delimited string per row -> (B, max_len) ids, -1 padding; a sequence keeps its newest
            values right-aligned, a multi-valued field its first ones left-aligned (lists.pad)."""
            spec = layout.lists[name]
            # a blank cell is no list; inside a list a blank part is a missing value that keeps its
            # position (the out-of-vocabulary id), as composer.data.lists reads text
            parts = tf.strings.strip(tf.strings.split(text, ","))
            blank = tf.strings.strip(text) == ""
            parts = tf.RaggedTensor.from_row_lengths(
                tf.boolean_mask(parts.flat_values, tf.logical_not(tf.gather(blank, parts.value_rowids()))),
                tf.where(blank, tf.zeros_like(parts.row_lengths()), parts.row_lengths()))
            lengths = tf.cast(parts.row_lengths(), tf.int32)
            keep = tf.minimum(lengths, spec.max_len)
            starts = tf.cast(parts.row_starts(), tf.int32)
            first = starts + lengths - keep if spec.ordered else starts
            src = tf.ragged.range(first, first + keep)
            col = tf.ragged.range(spec.max_len - keep if spec.ordered else tf.zeros_like(keep),
                                  spec.max_len if spec.ordered else keep)
            row_ids = tf.cast(src.value_rowids(), tf.int32)
            vals = self.ids(name, tf.gather(parts.flat_values, src.flat_values))
            dense = tf.fill([tf.shape(text)[0], spec.max_len], tf.constant(-1, tf.int32))
            return tf.tensor_scatter_nd_update(dense, tf.stack([row_ids, col.flat_values], axis=1), vals)

        @tf.function(input_signature=[signature])
        def serve(self, features):
            packed = {}
            for dim, names in layout.categorical_by_dim.items():
                cols = [self.ids(n, features[n]) for n in names]
                packed[layout.input_name(dim)] = tf.stack(cols, axis=1)
            for name in layout.lists:
                packed[layout.list_input(name)] = self.padded(name, features[name])
            if layout.numeric:
                cols = []
                for n in layout.numeric:
                    stats = pre.numeric[n]
                    col = tf.cast(features[n], tf.float32)
                    if stats["log1p"]:
                        col = tf.math.log1p(tf.maximum(col, 0.0))
                    cols.append(tf.where(tf.math.is_nan(col), tf.constant(stats["mean"], tf.float32), col))
                packed["numeric"] = tf.stack(cols, axis=1)
            if layout.scenario:
                ids = tf.cast(self.scenario_table.lookup(features[layout.scenario]), tf.int32)
                # an undeclared scenario fails the request; it must never borrow another's weights
                tf.debugging.assert_non_negative(
                    ids, message=f"{layout.scenario}: a value outside the declared scenarios "
                    f"{pre.scenario['values']}")
                packed["scenario"] = tf.reshape(ids, [-1, 1])
            out = self.model(packed, training=False)
            return {task: tf.reshape(out[task], [-1]) for task in exp.tasks}

    module = Serving()
    out = Path(path)
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})
    return out


def raw_features(frame, layout) -> dict:
    """Rows of a frame as the serving signature's raw inputs (strings and float32 numbers)."""
    import numpy as np

    from .data.preprocess import as_text

    out = {}
    for names in layout.categorical_by_dim.values():
        for n in names:
            out[n] = as_text(frame[n]).fillna("").to_numpy(dtype=object).astype(str)
    for n in layout.lists:
        out[n] = _delimited(frame[n])
    for n in layout.numeric:
        out[n] = frame[n].to_numpy(dtype="float32")
    if layout.scenario and layout.scenario not in out:
        out[layout.scenario] = as_text(frame[layout.scenario]).fillna("").to_numpy(dtype=object).astype(str)
    return {k: np.asarray(v) for k, v in out.items()}


def _delimited(values):
    """Each list cell as one comma-delimited string of the texts training encoded (ints without
    '.0', a missing value as an empty part); the column converted in one pass."""
    import numpy as np

    from .data.lists import flatten
    from .data.preprocess import as_text

    flat, lengths = flatten(values)
    texts = as_text(flat).fillna("").tolist() if len(flat) else []
    ends = np.cumsum(lengths)
    return np.array([",".join(texts[end - n:end]) for n, end in zip(lengths, ends)], dtype=object).astype(str)
