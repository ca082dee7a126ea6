"""UCI Adult (1994 census): ``adult`` and ``adult-msl`` (scenario = sex).

Protocol (../shared/data/DATA.md): UCI's own files, ``adult_train.csv`` (32,561 rows) and
``adult_test.csv`` (16,281 rows, labels ending in '.'); tasks ``income`` (>50K) and
``never_married`` (marital-status ``Never-married``); marital-status and relationship are not
features (they give never_married away). The test file is the test split. The valid split is
carved from the train file with the census rule: ``b = int(md5(line)[:8], 16) % 10`` over each
non-empty raw line without its newline; b == 8 -> valid, every other b -> train (about 10 %).
No GAUC group.
"""
from __future__ import annotations

import numpy as np

from .dataset import DataSpec, Dataset
from .errors import DataError, Location

COLUMNS = ("age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
           "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
           "hours_per_week", "native_country", "income_class")
NUMERIC = ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week")
CATEGORICAL = ("workclass", "education", "occupation", "race", "sex", "native_country")
LABELS = {"income": "income", "never_married": "never_married"}
INCOME_CLASSES = {"<=50K": 0, ">50K": 1}  # the test file's trailing '.' is removed first

VARIANTS = {"adult": None, "adult-msl": "sex"}


def describe(name: str = "adult") -> DataSpec:
    scenario = VARIANTS[name]
    what = "income > 50K and never married" + ("; scenario = sex" if scenario else "")
    return DataSpec(name=name, categorical=CATEGORICAL, numeric=NUMERIC, labels=dict(LABELS),
                    scenario=scenario, scenario_values=("Female", "Male") if scenario else None,
                    group=None,
                    description=f"UCI Adult, UCI's train/test files (valid = md5 bucket 8 of train): {what}.")


def load(name: str = "adult", rows: int | None = None, *, root=None) -> Dataset:
    import pandas as pd

    from .tables import bucket_split, data_root, require_dir, require_file

    spec = describe(name)
    folder = require_dir((root or data_root()) / "adult", name)
    parts = []
    for fname, is_test in (("adult_train.csv", False), ("adult_test.csv", True)):
        path = require_file(folder / fname, name)
        frame, lines = _read(str(path), rows)
        split = np.full(len(frame), "test") if is_test else bucket_split(lines, valid=(8,), test=())
        parts.append((frame, split))
    frame = pd.concat([p[0] for p in parts], ignore_index=True)
    split = np.concatenate([p[1] for p in parts])
    return Dataset(spec, frame, split, source=f"{folder / 'adult_train.csv'}, {folder / 'adult_test.csv'}",
                   meta={"split": "test = UCI test file; valid = train-file lines with "
                                  "int(md5(line)[:8], 16) % 10 == 8; train = the other train-file lines"})


def _read(file: str, rows: int | None):
    import io

    import pandas as pd

    from .tables import as_text

    try:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read file: {exc}", location=Location(file)) from None
    # UCI's adult.test starts with a '|1x3 Cross validator' comment line; skip such lines.
    numbered = [(i + 1, line) for i, line in enumerate(text.split("\n")) if line and not line.startswith("|")]
    if rows is not None:
        numbered = numbered[:rows]
    if not numbered:
        raise DataError("file is empty", location=Location(file, 1))
    lines = [line for _, line in numbered]
    line_no = np.fromiter((n for n, _ in numbered), dtype=np.int64, count=len(numbered))
    fields = np.fromiter((line.count(",") + 1 for line in lines), dtype=np.int64, count=len(lines))
    wrong = np.flatnonzero(fields != len(COLUMNS))
    if len(wrong):
        i = int(wrong[0])
        raise DataError(f"line has {fields[i]} fields, expected {len(COLUMNS)}",
                        location=Location(file, int(line_no[i])), hint="UCI Adult rows have 15 comma-separated fields")
    raw = pd.read_csv(io.StringIO("\n".join(lines)), header=None, names=list(COLUMNS), skipinitialspace=True,
                      keep_default_na=False, na_values=["?"])

    def bad(col, mask, message, hint=None):
        i = int(np.flatnonzero(mask)[0])
        return DataError(f"{message.format(value=raw[col].iloc[i])} on line {line_no[i]}",
                         location=Location(file, int(line_no[i])), key=col, hint=hint)

    out = {}
    for col in CATEGORICAL:
        out[col] = as_text(raw[col]).str.strip()
    for col in NUMERIC:
        values = raw[col] if pd.api.types.is_numeric_dtype(raw[col]) else pd.to_numeric(raw[col], errors="coerce")
        wrong = (raw[col].notna() & values.isna()).to_numpy()
        if wrong.any():
            raise bad(col, wrong, "expected a number, got '{value}'")
        out[col] = values.astype("float32")
    income = raw["income_class"].str.strip().str.rstrip(".").map(INCOME_CLASSES)
    if income.isna().any():
        raise bad("income_class", income.isna().to_numpy(), "unknown income class '{value}'",
                  "expected '<=50K' or '>50K' (a trailing '.' is allowed)")
    marital = raw["marital_status"].str.strip()
    if marital.isna().any():
        raise bad("marital_status", marital.isna().to_numpy(), "missing marital-status",
                  "never_married is derived from it; every row needs one")
    out["income"] = income.astype("int64")
    out["never_married"] = (marital == "Never-married").astype("int64")
    return pd.DataFrame(out), lines
