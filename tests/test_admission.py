"""Admission for large vocabularies (composer/data/preprocess.py): on a planted train split,
how many distinct ids and values min_count sends to the out-of-vocabulary row and hashing merges,
per table; `composer train` prints them and records them in the run folder."""
from __future__ import annotations

import json

import farmhash
import pandas as pd

from cli_helpers import composer
from composer.data.preprocess import Preprocessor, admission_table


def _planted():
    # 'a' x5, 'b' x3, 'c' x2, then 4 values seen once: min_count 2 drops 4 ids (4 values), keeps 3
    cat = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d", "e", "f", "g"]
    # 15 distinct tags (t0..t14; t1..t13 twice) hashed into 8 rows (7 usable): at least 8 collide
    tags = [[f"t{i}", f"t{i + 1}"] for i in range(len(cat))] + [[] for _ in range(26)]
    return pd.DataFrame({"cat": cat + ["a"] * 26, "tags": pd.Series(tags, dtype=object)})


def test_min_count_drops_rare_ids_to_oov():
    frame = _planted()
    pre = Preprocessor.fit(frame, ["cat"], [], min_count=2)
    a = pre.admission["cat"]
    assert a == {"features": ["cat"], "distinct": 7, "occurrences": 40, "rule": "vocabulary", "min_count": 2,
                 "kept": 3, "dropped_ids": 4, "dropped_rows": 4}
    # the 4 dropped values are exactly the rows that encode to the OOV row
    assert int((pre.encode_categorical("cat", frame["cat"]) == 0).sum()) == 4


def test_hashing_collisions_merge_ids():
    frame = _planted()
    pre = Preprocessor.fit(frame, [], [], lists={"tags": {"max_len": 2, "ordered": False}}, hashed={"tags": 8})
    a = pre.admission["tags"]
    values = [v for cell in frame["tags"] for v in cell]
    buckets = {v: farmhash.fingerprint64(v) % 7 + 1 for v in set(values)}
    used = len(set(buckets.values()))
    per_bucket = pd.Series(buckets).value_counts()
    shared = {v for v, b in buckets.items() if per_bucket[b] > 1}
    assert a["rule"] == "hash" and a["distinct"] == 15 and a["buckets"] == 8
    assert a["buckets_used"] == used and a["collisions"] == 15 - used >= 8
    assert a["merged_ids"] == len(shared) and a["merged_rows"] == sum(v in shared for v in values)
    assert a["occurrences"] == len(values) == 28


def test_table_says_so_when_nothing_is_dropped():
    pre = Preprocessor.fit(pd.DataFrame({"cat": ["a", "b", "a"]}), ["cat"], [])
    assert admission_table(pre.admission).startswith("admission: every distinct train id has its own row")


def test_train_prints_and_records_admission(tmp_path):
    blueprint = tmp_path / "admit.yaml"
    blueprint.write_text("""
name: admit
data: synthetic
features:
  - {name: user_id, kind: categorical, dim: 4, hash_buckets: 64}
  - {name: item_id, kind: categorical, dim: 4}
  - {name: price, kind: numeric}
groups: {all: ["*"]}
tasks: from_data
blocks:
  x: {type: embed, group: all}
  tower: {type: tower, for_each: task, input: x, units: [4]}
outputs: "tower.{task}"
training: {epochs: 1, min_count: 3, batch_size: 256}
""")
    out = tmp_path / "run"
    proc = composer("train", blueprint, "--data", "synthetic:rows=3000", "--out", out, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recorded = json.loads((out / "preprocessing.json").read_text())["admission"]
    item, user = recorded["item_id"], recorded["user_id"]
    assert item["rule"] == "vocabulary" and item["dropped_ids"] > 0 and item["kept"] + item["dropped_ids"] == item["distinct"]
    assert user["rule"] == "hash" and user["collisions"] == user["distinct"] - user["buckets_used"] > 0
    lines = proc.stdout.splitlines()
    at = lines.index("admission (train split):")
    rows = {line.split()[0]: line for line in lines[at + 3: at + 5]}
    assert rows["item_id"].split()[1:] == [f"{item['distinct']:,}", "min_count", "3", f"{item['dropped_ids']:,}",
                                           "ids", "to", "OOV", f"({item['kept']:,}", "kept)",
                                           f"{item['dropped_rows']:,}", "of", f"{item['occurrences']:,}"]
    assert f"{user['collisions']:,} collisions: {user['merged_ids']:,} ids share a row" in rows["user_id"]
