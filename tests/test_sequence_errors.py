"""Every error path of list features, shared tables, sequence blocks and the data YAML's list
keys: one located message (FILE:LINE:COL: key: message; hint), a did-you-mean where one fits,
exit status 2 from the CLI and never a traceback."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from composer.cli import main
from composer.data import registry
from composer.data.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}

DATA = """\
source: log.csv
categorical: [user_id, item_id]
numeric: [price]
multi:
  tags: {max_len: 4}
sequences:
  hist_item: {max_len: 6, share: item_id}
  hist_cat: {max_len: 6, aligned_with: hist_item}
histories:
  - {key: user_id, time: ts, items: {recent_item: item_id}, max_len: 3, where: click}
labels: {click: click, like: like}
outcomes: {play_time: known only after the impression}
split: {hash: user_id, valid: 0.2, test: 0.2}
"""

BLUEPRINT = """\
name: seq_errors
data: data.yaml
features:
  - {name: user_id, kind: categorical, dim: 4}
  - {name: item_id, kind: categorical, dim: 8}
  - {name: hist_item, kind: sequence, share: item_id, max_len: 6}
  - {name: hist_cat, kind: sequence, aligned_with: hist_item, max_len: 6, dim: 4}
  - {name: tags, kind: multi, max_len: 4, dim: 4}
  - {name: price, kind: numeric}
groups:
  cand: [item_id]
  ctx: [user_id, tags, price]
tasks:
  - {name: click, label: click}
  - {name: like, label: like}
blocks:
  q:      {type: embed, group: cand}
  c:      {type: embed, group: ctx}
  hist:   {type: sequence, features: [hist_item]}
  side:   {type: sequence, features: [hist_item, hist_cat]}
  din:    {type: target_attention, input: hist, query: q, units: [8]}
  pooled: {type: pool, input: side}
  self:   {type: attention, input: side, heads: 2}
  asked:  {type: attention, input: self, query: c, heads: 1}
  cat:    {type: concat, inputs: [q, c, din, pooled, asked]}
  tower:  {type: tower, for_each: task, input: cat, units: [8]}
outputs: {click: tower.click, like: tower.like}
training: {batch_size: 32, epochs: 1, seed: 1}
"""


def log(rows=120, seed=0) -> pd.DataFrame:
    """Histories of 0..9 items (longer than max_len 6 on some rows), aligned categories as text
    cells, 0..3 tags, a time column for the built history."""
    rng = np.random.default_rng(seed)
    out = []
    for r in range(rows):
        hist = [f"i{k}" for k in rng.integers(0, 20, int(rng.integers(0, 10))).tolist()]
        out.append(dict(user_id=f"u{r % 10}", item_id=f"i{int(rng.integers(0, 20))}", hist_item=",".join(hist),
                        hist_cat=",".join(f"c{h[1:]}" for h in hist),
                        tags=",".join(f"t{k}" for k in rng.integers(0, 6, int(rng.integers(0, 4))).tolist()),
                        price=float(rng.gamma(2.0, 3.0)), ts=r, click=int(rng.random() < 0.3),
                        like=int(rng.random() < 0.2), play_time=float(rng.random() * 60)))
    return pd.DataFrame(out)


def write(folder, data=DATA, blueprint=BLUEPRINT, frame=None):
    (log() if frame is None else frame).to_csv(folder / "log.csv", index=False)
    (folder / "data.yaml").write_text(data)
    (folder / "bp.yaml").write_text(blueprint)
    return folder


def at(text, line_has, token):
    """'LINE:COL' of ``token`` on the first line of ``text`` containing ``line_has``; a '|' in
    the token marks the column (``"where: |click"``: the value, not the key)."""
    before, _, after = token.rpartition("|")
    for n, line in enumerate(text.splitlines(), start=1):
        if line_has in line:
            assert before + after in line, (token, line)
            return f"{n}:{line.index(before + after) + len(before) + 1}"
    raise AssertionError(f"no line has {line_has!r}")


def replaced(text, old, new):
    assert text.count(old) == 1, old
    return text.replace(old, new)


def cli(capsys, *args):
    code = main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def test_the_base_files_are_good(tmp_path, capsys):
    write(tmp_path)
    code, err = cli(capsys, "validate", str(tmp_path / "bp.yaml"))
    assert code == 0, err
    data = registry.load(str(tmp_path / "data.yaml"))
    assert {"hist_item", "hist_cat", "tags", "recent_item"} <= set(data.spec.lists)
    assert max(len(v) for v in data.frame["hist_item"]) > 6  # the truncate case below has rows to refuse


# -- blueprint errors, found by `composer validate` --------------------------------------------
# (case, old text, new text, (line has, token the error points at), key, regex of the message)
H = "{name: hist_item,"
BLUEPRINT_CASES = [
    ("share_unknown", "share: item_id, max_len", "share: item_idd, max_len", (H, "item_idd"), "features[2].share",
     r"'item_idd' is not a feature; share needs an id feature \(categorical, multi or sequence\); "
     r"did you mean 'item_id'\?"),
    ("share_numeric", "share: item_id, max_len", "share: price, max_len", (H, "price"), "features[2].share",
     r"'price' is a numeric feature; share needs an id feature .*id features: hist_cat, item_id, tags, user_id"),
    ("share_itself", "share: item_id, max_len", "share: hist_item, max_len", (H, "hist_item, max"),
     "features[2].share", r"'hist_item' shares its own table; name another id feature, or remove share"),
    ("share_cycle", "{name: item_id, kind: categorical, dim: 8}",
     "{name: item_id, kind: categorical, dim: 8, share: hist_item}", ("{name: item_id,", "hist_item"),
     "features[1].share", r"'item_id' shares a table in a cycle \(item_id -> hist_item -> item_id\); "
     r"let one feature own the table"),
    ("vocab_size_on_a_sharer", "share: item_id, max_len: 6}", "share: item_id, max_len: 6, vocab_size: 50}",
     (H, "vocab_size: |50"), "features[2].vocab_size",
     r"'hist_item' shares the table of 'item_id', so its vocab_size is the owner's; remove vocab_size "
     r"\(set it on 'item_id'\)"),
    ("hash_buckets_on_a_sharer", "share: item_id, max_len: 6}", "share: item_id, max_len: 6, hash_buckets: 64}",
     (H, "hash_buckets: |64"), "features[2].hash_buckets", r"so its hash_buckets is the owner's; remove hash_buckets"),
    ("dim_on_a_sharer", "share: item_id, max_len: 6}", "share: item_id, max_len: 6, dim: 4}", (H, "dim: |4}"),
     "features[2].dim", r"'hist_item' shares the table of 'item_id' \(dim 8\) but sets dim 4; remove dim: "
     r"a shared table has one width \(8\)"),
    ("aligned_with_a_multi", "aligned_with: hist_item", "aligned_with: tags", ("{name: hist_cat,", "tags"),
     "features[3].aligned_with", r"'tags' is not another sequence feature; sequences: hist_item"),
    ("aligned_with_a_typo", "aligned_with: hist_item", "aligned_with: hist_iten", ("{name: hist_cat,", "hist_iten"),
     "features[3].aligned_with", r"'hist_iten' is not another sequence feature; did you mean 'hist_item'\?"),
    ("aligned_other_max_len", "aligned_with: hist_item, max_len: 6", "aligned_with: hist_item, max_len: 5",
     ("{name: hist_cat,", "max_len: |5"), "features[3].max_len",
     r"'hist_cat' is aligned with 'hist_item' \(max_len 6\) but has max_len 5; aligned sequences share one "
     r"length: set max_len: 6"),
    ("sequence_block_on_a_categorical", "features: [hist_item]}", "features: [item_id]}",
     ("hist:   {", "[item_id]"), "blocks.hist.features", r"'item_id' is a categorical feature; a sequence "
     r"block reads sequence or multi-valued features; list features: hist_cat, hist_item, tags"),
    ("sequence_block_typo", "features: [hist_item]}", "features: [hist_itme]}", ("hist:   {", "[hist_itme]"),
     "blocks.hist.features", r"'hist_itme' is not a feature; .*did you mean 'hist_item'\?"),
    ("side_feature_not_aligned", "aligned_with: hist_item, ", "", ("side:   {", "[hist_item, hist_cat]"),
     "blocks.side.features", r"'hist_cat' is not aligned with 'hist_item': their positions could hold "
     r"different events; declare 'hist_cat' with aligned_with: hist_item"),
    ("target_attention_query_width", "query: q, units", "query: c, units", ("din:    {", "c, units"),
     "blocks.din.query", r"the query is 9 wide but each history position is 8 wide; embed the candidate"),
    ("pool_on_a_vector", "{type: pool, input: side}", "{type: pool, input: q}", ("pooled: {", "q}"),
     "blocks.pooled.input", r"expects a sequence \(B, L, d\) from a `sequence` block or an `attention` "
     r"block with pool: none, got \(B, 8\) \(hidden\); embed the history first"),
    ("attention_with_query_and_pool", "query: c, heads: 1}", "query: c, heads: 1, pool: mean}",
     ("asked:  {", "mean"), "blocks.asked.pool", r"pool applies to self-attention; with a query the output "
     r"is already one vector; remove pool"),
    ("target_attention_over_a_vector", "input: hist, query", "input: q, query", ("din:    {", "q, query"),
     "blocks.din.input", r"expects a sequence \(B, L, d\)"),
    # bound to the data YAML the blueprint names (read from the YAML alone)
    ("list_declared_categorical", "{name: tags, kind: multi, max_len: 4, dim: 4}",
     "{name: tags, kind: categorical, dim: 4}", ("{name: tags,", "categorical"), "features[4].kind",
     r"'tags' is a list \(multi\) in dataset 'data'; declare it kind: multi \(with max_len\)"),
    ("single_value_declared_a_list", "{name: user_id, kind: categorical, dim: 4}",
     "{name: user_id, kind: sequence, max_len: 3, dim: 4}", ("{name: user_id,", "sequence"), "features[0].kind",
     r"'user_id' holds one value per row in dataset 'data', not a list; declare it kind: categorical"),
    ("sequence_declared_numeric", "{name: price, kind: numeric}", "{name: price, kind: numeric}\n"
     "  - {name: recent_item, kind: numeric}", ("{name: recent_item,", "numeric"), "features[6].kind",
     r"'recent_item' is sequence in dataset 'data'; declare it kind: sequence"),
    ("outcome_as_a_feature", "{name: price, kind: numeric}", "{name: price, kind: numeric}\n"
     "  - {name: play_time, kind: numeric}", ("{name: play_time,", "play_time"), "features[6].name",
     r"'play_time' is an outcome of dataset 'data', never a feature: known only after the impression; "
     r"remove it from the features"),
]


@pytest.mark.parametrize("case,old,new,where,key,pattern", BLUEPRINT_CASES, ids=[c[0] for c in BLUEPRINT_CASES])
def test_blueprint_error_is_located(tmp_path, capsys, case, old, new, where, key, pattern):
    text = replaced(BLUEPRINT, old, new)
    write(tmp_path, blueprint=text)
    code, err = cli(capsys, "validate", str(tmp_path / "bp.yaml"))
    assert code == 2
    head = f"{tmp_path / 'bp.yaml'}:{at(text, *where)}: {key}: "
    assert err.startswith(head), err
    assert re.search(pattern, err.splitlines()[0]), err


def test_a_cycle_is_reported_at_both_features(tmp_path, capsys):
    text = replaced(BLUEPRINT, "{name: item_id, kind: categorical, dim: 8}",
                    "{name: item_id, kind: categorical, dim: 8, share: hist_item}")
    write(tmp_path, blueprint=text)
    code, err = cli(capsys, "validate", str(tmp_path / "bp.yaml"))
    assert code == 2
    lines = err.splitlines()
    assert lines[1].startswith(f"{tmp_path / 'bp.yaml'}:{at(text, H, 'item_id')}: features[2].share: "
                               "'hist_item' shares a table in a cycle (hist_item -> item_id -> hist_item)"), err


def test_list_kinds_are_checked_against_the_data_given_on_the_command_line(tmp_path, capsys):
    text = replaced(BLUEPRINT.replace("data: data.yaml\n", ""), "{name: tags, kind: multi, max_len: 4, dim: 4}",
                    "{name: tags, kind: categorical, dim: 4}")
    write(tmp_path, blueprint=text)
    assert cli(capsys, "validate", str(tmp_path / "bp.yaml"))[0] == 0  # no data: nothing to check against
    code, err = cli(capsys, "validate", str(tmp_path / "bp.yaml"), "--data", str(tmp_path / "data.yaml"))
    assert code == 2
    assert err.startswith(f"{tmp_path / 'bp.yaml'}:{at(text, '{name: tags,', 'categorical')}: features[4].kind: "
                          "'tags' is a list (multi) in dataset 'data'"), err


def test_a_sequence_over_max_len_with_truncate_error_points_at_the_blueprints_max_len(tmp_path, capsys):
    text = replaced(BLUEPRINT, "share: item_id, max_len: 6}", "share: item_id, max_len: 6, truncate: error}")
    write(tmp_path, blueprint=text)
    code, err = cli(capsys, "train", str(tmp_path / "bp.yaml"), "--out", str(tmp_path / "run"), "--verbose", "0")
    assert code == 2
    lengths = np.array([len(v.split(",")) if isinstance(v, str) else 0 for v in log()["hist_item"]])
    over = np.flatnonzero(lengths > 6)
    assert err.startswith(f"{tmp_path / 'bp.yaml'}:{at(text, H, '6, truncate')}: features[2].max_len: "
                          f"'hist_item' holds more than max_len = 6 values on {len(over)} rows of "
                          f"{tmp_path / 'log.csv'} (longest {lengths.max()}; first at data row {over[0]}); "
                          f"raise max_len to {lengths.max()}, or let it truncate (remove truncate: error)"), err
    assert not (tmp_path / "run").exists()


# -- data YAML errors ---------------------------------------------------------------------------
# (case, old text, new text, (line has, token the error points at), key, regex of the message)
DATA_CASES = [
    ("history_key_not_a_column", "key: user_id", "key: user_idd", ("key: user_idd", "user_idd"), "user_idd",
     r"column 'user_idd' is not in log\.csv; did you mean 'user_id'\?"),
    ("history_items_source_not_a_column", "recent_item: item_id}", "recent_item: item_idd}",
     ("- {key", "item_idd"), "item_idd", r"column 'item_idd' is not in log\.csv; did you mean 'item_id'\?"),
    ("history_time_not_a_column", "time: ts,", "time: t,", ("- {key", "t,"), "t",
     r"column 't' is not in log\.csv; did you mean 'ts'\?"),
    ("share_not_categorical", "share: item_id}", "share: price}", ("hist_item: {", "price"), "price",
     r"'price' is not a categorical column; categorical columns: item_id, user_id"),
    ("share_typo", "share: item_id}", "share: itemid}", ("hist_item: {", "itemid"), "itemid",
     r"'itemid' is not a categorical column; did you mean 'item_id'\?"),
    ("aligned_with_a_multi", "aligned_with: hist_item}", "aligned_with: tags}", ("hist_cat: {", "tags"), "tags",
     r"'tags' is not another sequence column; sequences: hist_item"),
    ("aligned_with_itself", "aligned_with: hist_item}", "aligned_with: hist_cat}", ("hist_cat: {", "hist_cat}"),
     "hist_cat", r"'hist_cat' is not another sequence column"),
    ("aligned_other_max_len", "hist_cat: {max_len: 6", "hist_cat: {max_len: 5", ("hist_cat: {", "5"), None,
     r"aligned with 'hist_item' \(max_len 6\) but max_len is 5; aligned sequences share one max_len"),
    ("where_also_collected", "items: {recent_item: item_id}", "items: {recent_item: item_id, recent_click: click}",
     ("- {key", "where: |click"), None, r"'click' is both collected and the filter; every collected value "
     r"would be 1; collect another column, or drop where"),
    ("outcome_as_categorical", "categorical: [user_id, item_id]", "categorical: [user_id, item_id, play_time]",
     ("categorical:", "play_time"), "play_time", r"'play_time' is an outcome, never a feature: known only after "
     r"the impression; remove it from the features"),
    ("outcome_as_a_sequence", "  hist_cat: {max_len: 6, aligned_with: hist_item}\n",
     "  hist_cat: {max_len: 6, aligned_with: hist_item}\n  play_time: {max_len: 2}\n", ("play_time: {", "{max_len: 2}"),
     "play_time", r"'play_time' is an outcome, never a feature"),
    ("list_column_twice", "categorical: [user_id, item_id]", "categorical: [user_id, item_id, tags]",
     ("tags: {", "{max_len: 4}"), "tags", r"column 'tags' is listed twice \(first as categorical\[2\]\)"),
]


def _data_error(tmp_path, capsys, text, **kw):
    """The message `composer train` prints for this data YAML (and the same DataError from load)."""
    write(tmp_path, data=text, **kw)
    with pytest.raises(DataError) as info:
        registry.load(str(tmp_path / "data.yaml"))
    code, err = cli(capsys, "train", str(tmp_path / "bp.yaml"), "--out", str(tmp_path / "run"), "--verbose", "0")
    assert code == 2
    assert err.splitlines()[0] == str(info.value).splitlines()[0]
    return err


@pytest.mark.parametrize("case,old,new,where,key,pattern", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_yaml_error_is_located(tmp_path, capsys, case, old, new, where, key, pattern):
    text = replaced(DATA, old, new)
    err = _data_error(tmp_path, capsys, text)
    head = f"{tmp_path / 'data.yaml'}:{at(text, *where)}: " + (f"{key}: " if key else "")
    assert err.startswith(head), err
    assert re.search(pattern, err.splitlines()[0]), err


def test_yaml_only_data_errors_are_found_by_validate(tmp_path, capsys):
    text = replaced(DATA, "share: item_id}", "share: itemid}")
    write(tmp_path, data=text)
    code, err = cli(capsys, "validate", str(tmp_path / "bp.yaml"))
    assert code == 2
    assert err.startswith(f"{tmp_path / 'data.yaml'}:{at(text, 'hist_item: {', 'itemid')}: itemid: "), err


def test_a_side_sequence_shorter_than_its_sequence_is_a_bad_cell(tmp_path, capsys):
    frame = log()
    row = int(np.flatnonzero(frame["hist_item"].str.count(",") >= 2)[0])
    frame.loc[row, "hist_cat"] = "c1"
    n = frame.loc[row, "hist_item"].count(",") + 1
    err = _data_error(tmp_path, capsys, DATA, frame=frame)
    # line 1 is the header
    assert err.startswith(f"{tmp_path / 'log.csv'}:{row + 2}: hist_cat: 1 values where 'hist_item' has {n}: "
                          "an aligned sequence holds one value per position"), err


def test_parquet_cells_that_are_not_lists_are_bad_cells(tmp_path, capsys):
    frame = log()
    for col in ("hist_item", "hist_cat"):
        frame[col] = [v.split(",") if v else [] for v in frame[col].fillna("")]
    frame["tags"] = [len(str(v)) for v in frame["tags"]]  # numbers, not lists
    frame.to_parquet(tmp_path / "log.parquet")
    text = DATA.replace("log.csv", "log.parquet")
    (tmp_path / "data.yaml").write_text(text)
    (tmp_path / "bp.yaml").write_text(BLUEPRINT)
    with pytest.raises(DataError) as info:
        registry.load(str(tmp_path / "data.yaml"))
    assert str(info.value).startswith(
        f"{tmp_path / 'log.parquet'}: tags: expected a list of ids, got '{frame['tags'][0]}' in row 1 "
        f"({len(frame)} rows like this; the first is shown); a list column holds list cells (Parquet) or "
        'delimited text (CSV: "39,43")'), str(info.value)
    code, err = cli(capsys, "train", str(tmp_path / "bp.yaml"), "--out", str(tmp_path / "run"), "--verbose", "0")
    assert code == 2 and err.splitlines()[0] == str(info.value).splitlines()[0]


# -- the real command line: exit status 2, no traceback ---------------------------------------
def _run(*args):
    return subprocess.run([sys.executable, "-m", "composer", *args], capture_output=True, text=True,
                          cwd=ROOT, env=ENV)


def test_cli_validate_exits_2_without_a_traceback(tmp_path):
    write(tmp_path, blueprint=replaced(BLUEPRINT, "share: item_id, max_len", "share: item_idd, max_len"))
    proc = _run("validate", str(tmp_path / "bp.yaml"))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{tmp_path / 'bp.yaml'}:6:")
    assert "did you mean 'item_id'?" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("case", ["outcome_feature", "history_key"])
def test_cli_train_exits_2_without_a_traceback(tmp_path, case):
    if case == "outcome_feature":  # the blueprint's own data YAML, no --data
        write(tmp_path, blueprint=replaced(BLUEPRINT, "{name: price, kind: numeric}",
                                           "{name: price, kind: numeric}\n  - {name: play_time, kind: numeric}"))
        expected = f"{tmp_path / 'bp.yaml'}:10:12: features[6].name: 'play_time' is an outcome"
    else:
        write(tmp_path, data=replaced(DATA, "key: user_id", "key: user_idd"))
        expected = f"{tmp_path / 'data.yaml'}:10:11: user_idd: column 'user_idd' is not in log.csv"
    proc = _run("train", str(tmp_path / "bp.yaml"), "--out", str(tmp_path / "run"), "--verbose", "0")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(expected), proc.stderr
    assert "Traceback" not in proc.stderr
