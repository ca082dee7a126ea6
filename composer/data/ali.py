"""Alibaba's public CTR/CVR logs in the layouts the multi-task literature uses, already split
into files (``*train*``, ``*val*``, ``*test*`` in the name): those files are the splits.

``aliexpress`` (AliExpress search log, as in Li et al., "Improving Multi-Scenario Learning to
Rank in E-commerce by Exploiting Task Relationships in the Label Space", CIKM 2020): columns
``search_id``, ``categorical_1..16``, ``numerical_1..63``, ``click``, ``conversion``. Tasks click
and conversion, labels as given (conversion is only ever 1 on a clicked row, so it is the
CTCVR-style label). ``search_id`` is not a feature. The release has no valid file: valid is
carved from the train file by ``int(md5(search_id)[:8], 16) % 10 == 8``, so a search's
impressions stay together. Scenario ``country`` only when the files have such a column.

``ali-ccp`` (Alibaba Click and Conversion Prediction, Ma et al., "Entire Space Multi-Task
Model", SIGIR 2018): columns ``click``, ``purchase``, sparse fields (``101`` user id, ``205``
item id, ``301`` position, ...) and dense fields ``D...``. Field names that start with a digit
are not valid feature names in a blueprint, so they get an ``f`` prefix: ``101`` -> ``f101``,
``109_14`` -> ``f109_14``. Tasks click and purchase (purchase only on clicked rows); GAUC group
``f101`` (the user). ``ali-ccp-scenarios``: the same with ``f301`` (3 values) as the scenario.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import DataSpec, Dataset
from .errors import DataError, Location

AE_CATEGORICAL = tuple(f"categorical_{i}" for i in range(1, 17))
AE_NUMERIC = tuple(f"numerical_{i}" for i in range(1, 64))
AE_LABELS = {"click": "click", "conversion": "conversion"}

CCP_SPARSE = ("101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206", "207", "210",
              "216", "508", "509", "702", "853", "301", "109_14", "110_14", "127_14", "150_14")
CCP_DENSE = ("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853")
CCP_LABELS = {"click": "click", "purchase": "purchase"}

FOLDERS = {"aliexpress": "fixtures/aliexpress", "ali-ccp": "fixtures/ali_ccp",
           "ali-ccp-scenarios": "fixtures/ali_ccp_scenarios"}
SPLIT_WORDS = (("train", "train"), ("val", "valid"), ("test", "test"))


def feature_name(column: str) -> str:
    """A blueprint-safe name for a raw field: '101' -> 'f101'."""
    return f"f{column}" if column[:1].isdigit() else column


def folder(name: str) -> Path:
    from .tables import data_root

    return data_root() / FOLDERS[name]


def split_files(directory: Path, dataset: str) -> dict[str, Path]:
    found: dict[str, list[Path]] = {}
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        if not path.name.lower().endswith((".csv", ".csv.gz", ".parquet")):
            continue
        for word, split in SPLIT_WORDS:
            if word in path.name.lower():
                found.setdefault(split, []).append(path)
                break
    for split, paths in found.items():
        if len(paths) > 1:
            raise DataError(f"several {split} files: {', '.join(p.name for p in paths)}",
                            location=Location(str(directory)), key=dataset, hint="keep one file per split")
    for split in ("train", "test"):
        if split not in found:
            raise DataError(f"no {split} file in the folder", location=Location(str(directory)), key=dataset,
                            hint="the files are named with 'train', 'val' and 'test' "
                            "(e.g. ali_ccp_train_sample.csv)")
    return {s: p[0] for s, p in found.items()}


def describe(name: str) -> DataSpec:
    if name == "aliexpress":
        from .tables import read_header

        scenario = None
        directory = folder(name)
        train = next(iter(sorted(directory.glob("*train*.csv"))), None) if directory.is_dir() else None
        if train is not None and "country" in (read_header(train) or []):
            scenario = "country"
        categorical = AE_CATEGORICAL + ((scenario,) if scenario else ())
        return DataSpec(name=name, categorical=categorical, numeric=AE_NUMERIC, labels=dict(AE_LABELS),
                        scenario=scenario, group=None,
                        description="AliExpress search log: click and conversion (CTCVR-style labels)"
                                    + ("; scenario = country." if scenario else "."))
    scenario = "f301" if name == "ali-ccp-scenarios" else None
    return DataSpec(name=name, categorical=tuple(feature_name(c) for c in CCP_SPARSE),
                    numeric=CCP_DENSE, labels=dict(CCP_LABELS), scenario=scenario, group="f101",
                    scenario_values=("1", "2", "3") if scenario else None,
                    description="Ali-CCP: click and purchase (ESMM, SIGIR 2018)"
                                + ("; scenario = field 301 (f301)." if scenario else "."))


def load(name: str, rows: int | None = None, *, directory: Path | None = None) -> Dataset:
    import pandas as pd

    from .tables import require_dir

    spec = describe(name)
    directory = require_dir(Path(directory) if directory else folder(name), name)
    files = split_files(directory, name)
    raw_columns = _raw_columns(name, spec)
    frames, splits = [], []
    for split_name in ("train", "valid", "test"):
        if split_name not in files:
            continue
        frame, table = _read(files[split_name], spec, raw_columns, rows)
        if split_name == "train" and "valid" not in files:
            from .tables import bucket_split

            table.require(["search_id"])
            split = bucket_split(table.categorical("search_id").fillna("").tolist(), valid=(8,), test=())
        else:
            split = np.full(len(frame), split_name)
        frames.append(frame)
        splits.append(split)
    rule = "the files: " + ", ".join(f"{s} = {files[s].name}" for s in ("train", "valid", "test") if s in files)
    if "valid" not in files:
        rule += "; valid = train rows with int(md5(search_id)[:8], 16) % 10 == 8"
    return Dataset(spec, pd.concat(frames, ignore_index=True), np.concatenate(splits),
                   source=", ".join(str(p) for p in files.values()), meta={"split": rule})


def _raw_columns(name: str, spec: DataSpec) -> dict[str, str]:
    """Feature / label name -> the column name in the file."""
    if name == "aliexpress":
        return {c: c for c in spec.features + tuple(spec.labels.values())}
    out = {feature_name(c): c for c in CCP_SPARSE}
    out.update({c: c for c in CCP_DENSE + tuple(CCP_LABELS.values())})
    return out


def _read(path: Path, spec: DataSpec, raw: dict[str, str], rows):
    import pandas as pd

    from .tables import read_table

    table = read_table(path, rows=rows, text_columns=[raw[c] for c in spec.categorical] + ["search_id"])
    table.require(list(raw.values()))
    out = {}
    for col in spec.categorical:
        out[col] = table.categorical(raw[col])
    for col in spec.numeric:
        out[col] = table.numeric(raw[col])
    for col in spec.labels.values():
        out[col] = table.label(raw[col])
    return pd.DataFrame(out), table
