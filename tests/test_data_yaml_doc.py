"""docs/data.md, the data YAML reference, cannot drift from composer/data/files.py: every key
of the data YAML models is documented, the worked example parses and builds the columns the
page shows, and the error messages the page quotes are the ones the code prints. Pure pandas:
no TensorFlow."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from composer.blueprint.errors import BlueprintError
from composer.data import files
from composer.data.dataset import ListSpec

PAGE = Path(__file__).resolve().parents[1] / "docs" / "data.md"
MODELS = (files.DataFile, files.SplitSection, files.ListColumn, files.HistorySection, files.CountSection)

# Mistakes the page quotes: (YAML replacements or a whole YAML text, CSV replacements) applied to
# the worked example, loaded as my_data/clicks.yaml from the folder above it. ``None`` for the
# CSV: read the YAML only (as `composer validate` does); a list: load the data too.
SPLIT = "split: {time: ts, valid_from: 2024-05-03, test_from: 2024-05-04}"
CASES = {
    "unknown key": ([("numeric:", "numerics:")], None),
    "missing key": ([("labels: {click: click, like: like}  # task name -> its 0/1 label column\n", "")], None),
    "listed twice": ([("numeric: [price]", "numeric: [price, item_id]")], None),
    "label as feature": ([("numeric: [price]", "numeric: [price, like]")], None),
    "task name": ([("labels: {click: click", "labels: {click-through: click")], None),
    "no features": ("source: clicks.csv\nlabels: {click: click}\n", None),
    "scenario not categorical": ([("group: user_id", "scenario: tab\ngroup: user_id")], None),
    "scenario_values alone": ([("group: user_id", "scenario_values: [home, search]\ngroup: user_id")], None),
    "scenario_values booleans": ([("group: user_id", "scenario: category\nscenario_values: [yes, 2]\ngroup: user_id")],
                                 None),
    "scenario outside scenario_values": ([("group: user_id", "scenario: category\nscenario_values: [shoes, hats]\n"
                                           "group: user_id")], []),
    "dates declared numeric": ([("numeric: [price]", "numeric: [price, ts]")], []),
    "two split modes": ([(SPLIT, "split: {time: ts, hash: user_id}")], None),
    "no split mode": ([(SPLIT, "split: {valid: 0.2}")], None),
    "split key of another mode": ([(SPLIT, "split: {hash: user_id, valid_from: 2024-05-03}")], None),
    "hash shares": ([(SPLIT, "split: {hash: user_id, valid: 0.5, test: 0.5}")], None),
    "time split bound": ([(SPLIT, "split: {time: ts, valid_from: 2024-05-03}")], None),
    "missing_labels value": ([("group: user_id", "group: user_id\nmissing_labels: drop")], None),
    "delimiter length": ([("group: user_id", "group: user_id\ndelimiter: \"||\"")], None),
    "source type": ([("source: clicks.csv", "source: clicks.xlsx")], None),
    "share": ([("tags: {max_len: 4}", "tags: {max_len: 4, share: tag}")], None),
    "multi aligned": ([("tags: {max_len: 4}", "tags: {max_len: 4, aligned_with: hist_item}")], None),
    "max_len missing": ([("tags: {max_len: 4}", "tags: {separator: \"|\"}")], None),
    "aligned max_len": ([("multi:\n  tags: {max_len: 4}", "sequences:\n  seq_a: {max_len: 4}\n"
                          "  seq_b: {max_len: 5, aligned_with: seq_a}")], None),
    "where collected": ([("where: click", "where: item_id")], None),
    "history output taken": ([("hist_category: category", "category: category")], None),
    "count column taken": ([("numeric: [price]", "numeric: [price, item_n]")], None),
    "outcome as feature": ([("group: user_id", "group: user_id\noutcomes: {price: paid after the click}")], None),
    "column not in file": ([("numeric: [price]", "numeric: [prize]")], []),
    "no such file": ([("source: clicks.csv", "source: click.csv")], []),
    "bad number": ([], [("42.0,2024-05-01", "n/a,2024-05-01")]),
    "missing label": ([], [("11:00:00,1,0", "11:00:00,,0")]),
    "bad label": ([], [("11:00:00,1,0", "11:00:00,yes,0")]),
    "bad time": ([], [("2024-05-02 08:00:00", "yesterday")]),
    "missing time": ([], [("2024-05-02 08:00:00", "")]),
    "short row": ([], [("u2,i3,shoes,b,42.0,2024-05-02 08:00:00,0,0", "u2,i3,shoes,b,42.0,2024-05-02 08:00:00,0")]),
    "split column value": ([(SPLIT, "split: {column: category}")], []),
    "bounds order": ([("valid_from: 2024-05-03, test_from: 2024-05-04", "valid_from: 2024-05-05, test_from: 2024-05-04")],
                     []),
    "number bounds on dates": ([("valid_from: 2024-05-03, test_from: 2024-05-04", "valid_from: 105, test_from: 107")],
                               []),
    # current limits, quoted as such: when one is fixed, update the page and this list
    "history key missing": ([], [("u2,i3", ",i3")]),
}


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def example(name: str) -> str:
    """The fenced block after ``<!-- example: NAME -->``."""
    m = re.search(rf"<!-- example: {re.escape(name)} -->\s*\n```[a-z]*\n(.*?)```", page(), re.S)
    assert m, f"docs/data.md has no fenced block marked <!-- example: {name} -->"
    return m.group(1)


def write_example(root: Path, yaml_text: str | None = None, csv_text: str | None = None) -> Path:
    folder = root / "my_data"
    folder.mkdir(exist_ok=True)
    (folder / "clicks.csv").write_text(example("clicks.csv") if csv_text is None else csv_text)
    (folder / "clicks.yaml").write_text(example("data.yaml") if yaml_text is None else yaml_text)
    return folder / "clicks.yaml"


def test_every_key_is_documented():
    """A heading or a table row names every field of every data YAML model (add a key, document it)."""
    lines = [line for line in page().splitlines() if line.startswith(("#", "|"))]
    missing = [f"{model.__name__}.{name}" for model in MODELS for name in model.model_fields
               if not any(f"`{name}`" in line for line in lines)]
    assert not missing, f"docs/data.md does not document: {', '.join(missing)}"
    headings = [line for line in page().splitlines() if line.startswith("###")]
    no_heading = [name for name in files.DataFile.model_fields if not any(f"`{name}`" in h for h in headings)]
    assert not no_heading, f"every top-level key has its own ### heading in docs/data.md: {no_heading}"


def test_example_yaml_parses_and_describes(tmp_path):
    file = write_example(tmp_path)
    model, _ = files.read_yaml(str(file))
    assert model.source == "clicks.csv"
    (tmp_path / "my_data" / "clicks.csv").unlink()  # describe reads only the YAML
    spec = files.describe(str(file))
    assert spec.name == "clicks"
    assert spec.categorical == ("user_id", "item_id", "category")
    assert spec.numeric == ("price", "item_n", "item_click_rate", "item_like_rate")
    assert spec.labels == {"click": "click", "like": "like"}
    assert spec.lists == {
        "tags": ListSpec(ordered=False, max_len=4),
        "hist_item": ListSpec(ordered=True, max_len=20, share="item_id"),
        "hist_category": ListSpec(ordered=True, max_len=20, share="category", aligned_with="hist_item"),
    }


def _cell(text: str):
    text = text.strip()
    if text.startswith("["):
        return [v.strip() for v in text[1:-1].split(",") if v.strip()]
    if text == "NaN":
        return math.nan
    return text


def test_example_builds_the_columns_the_page_shows(tmp_path):
    """The table after ``<!-- example: built columns -->`` is what loading the example gives."""
    file = write_example(tmp_path)
    data = files.load(str(file))
    text = page()
    start = text.index("<!-- example: built columns -->")
    rows = [line for line in text[start:].splitlines()[1:] if line.startswith("|")]
    header = [h.strip().strip("`") for h in rows[0].strip("|").split("|")]
    body = [[_cell(c) for c in r.strip("|").split("|")] for r in rows[2:]]
    assert len(body) == len(data.frame), "one table row per data row"
    frame = data.frame.assign(split=data.split)
    for i, row in enumerate(body):
        for col, shown in zip(header, row):
            if col in ("line", "ts"):
                continue
            value = frame[col].iloc[i]
            if isinstance(shown, list):
                assert list(map(str, value)) == shown, (i, col)
            elif isinstance(shown, float):
                assert pd.isna(value), (i, col)
            else:
                assert str(value) == shown or float(value) == float(shown), (i, col, value, shown)


@pytest.mark.parametrize("case", sorted(CASES))
def test_quoted_errors_are_the_real_ones(case, tmp_path, monkeypatch):
    yaml_edits, csv_edits = CASES[case]
    yaml_text, csv_text = example("data.yaml"), example("clicks.csv")
    if isinstance(yaml_edits, str):
        yaml_text, yaml_edits = yaml_edits, []
    for old, new in yaml_edits:
        assert old in yaml_text, f"{case}: the example no longer contains {old!r}"
        yaml_text = yaml_text.replace(old, new)
    for old, new in csv_edits or []:
        assert old in csv_text, f"{case}: the example CSV no longer contains {old!r}"
        csv_text = csv_text.replace(old, new, 1)
    write_example(tmp_path, yaml_text, csv_text)
    monkeypatch.chdir(tmp_path)
    try:
        if csv_edits is None:
            files.read_yaml("my_data/clicks.yaml")
        else:
            files.load("my_data/clicks.yaml")
    except BlueprintError as exc:
        error = exc
    else:
        pytest.fail(f"'{case}' is no longer an error: update docs/data.md and CASES")
    for line in str(error).splitlines():
        assert line in page(), f"docs/data.md should quote the error of '{case}':\n{line}"
