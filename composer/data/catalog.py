"""What every built-in dataset is, without reading it: ``composer datasets``.

For each name of the registry: its tasks, scenario column and how many scenario values, how many
categorical, list and numeric features, its rows (known statically for the generated data and
the fixed public files; "read on load" otherwise), the files it reads under ``data_root()``
(``$COMPOSER_DATA_DIR``, else the first of ``./shared/data``, ``../shared/data`` and the
checkout's ``../shared/data`` that exists) and whether they are there, and the options its
name takes (``synthetic:rows=5000``). Everything comes from the loaders' own ``describe`` and
constants; no data is read, no TensorFlow or Keras is imported. ``markdown()`` is
docs/datasets.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .dataset import DataSpec

GENERATED = "generated in memory (nothing to read)"
ON_LOAD = "read on load"


def _files(name: str) -> tuple[str, ...] | None:
    """The files (globs under data_root()) a built-in name reads with its options (None:
    generated); from the loaders' own constants."""
    base = name.partition(":")[0].strip()
    if base.startswith("synthetic"):
        return None
    if base in ("census-mtl", "census-msl"):
        from . import census

        return (census.FILE,)
    if base in ("adult", "adult-msl"):
        return ("adult/adult_train.csv", "adult/adult_test.csv")
    if base == "kuairand":
        return ("kuairand/*log*.csv",)
    if base == "kuairand-pure":
        from . import kuairand_pure as kp

        files = (f"kuairand_pure/{kp.LOG_GLOB}", "kuairand/user_features_pure.csv",
                 "kuairand/video_features_basic_pure.csv")
        return files + ((f"kuairand_pure/{kp.PREWINDOW_FILE}",) if kp.parse(name).histories else ())
    if base in ("aliexpress", "ali-ccp", "ali-ccp-scenarios"):
        from .ali import FOLDERS

        return (f"{FOLDERS[base]}/*train*", f"{FOLDERS[base]}/*test*")
    return None


def _options(name: str) -> dict | None:
    """The options in effect for a name that takes options (its defaults when it gives none)."""
    base = name.partition(":")[0].strip()
    if base == "synthetic-seq":
        from .synthetic_seq import parse

        return asdict(parse(name)[1])
    if base.startswith("synthetic"):
        from .synthetic import parse

        return asdict(parse(name)[1])
    if base == "kuairand-pure":
        from .kuairand_pure import parse

        return asdict(parse(name))
    return None


def _static_rows(name: str) -> int | None:
    """Rows of the whole dataset when known without reading it."""
    base = name.partition(":")[0].strip()
    if base.startswith("synthetic"):
        if base == "synthetic-seq":
            from .synthetic_seq import parse
        else:
            from .synthetic import parse
        return parse(name)[1].rows
    if base in ("census-mtl", "census-msl"):
        return 99_762  # the UCI test file (census.py's protocol)
    if base in ("adult", "adult-msl"):
        return 32_561 + 16_281  # UCI's train and test files
    if base == "kuairand-pure":
        from .kuairand_pure import SPLIT_ROWS

        return sum(SPLIT_ROWS.values())
    return None


@dataclass
class Entry:
    name: str
    spec: DataSpec
    rows: int | None
    files: list[tuple[str, bool]] | None  # (glob under the data root, present); None: generated
    options: dict | None  # option -> value in effect; None: the name takes none

    @property
    def scenario_count(self) -> int | None:
        return len(self.spec.scenario_values) if self.spec.scenario_values else None

    @property
    def present(self) -> bool:
        return self.files is None or all(ok for _, ok in self.files)

    def scenario_text(self) -> str:
        if not self.spec.scenario:
            return "-"
        n = self.scenario_count
        return f"{self.spec.scenario} ({n if n is not None else 'values ' + ON_LOAD})"

    def features_text(self) -> str:
        s = self.spec
        return f"{len(s.categorical)} / {len(s.lists)} / {len(s.numeric)}"

    def rows_text(self) -> str:
        return f"{self.rows:,}" if self.rows is not None else ON_LOAD

    def folders_text(self) -> str:
        """The folders its files are in (``composer datasets NAME`` lists the files)."""
        if self.files is None:
            return "generated"
        folders = dict.fromkeys(p.rsplit("/", 1)[0] + "/" for p, _ in self.files)
        return ", ".join(folders)

    def present_text(self) -> str:
        if self.files is None:
            return "-"
        missing = [p for p, ok in self.files if not ok]
        return "yes" if not missing else f"no ({', '.join(missing)} missing)"


def entry(name: str, root: Path | None = None) -> Entry:
    """One dataset name (options allowed: ``synthetic:rows=5000``) described; nothing read."""
    from .registry import describe
    from .tables import data_root

    spec = describe(name)
    files = _files(name)
    found = None
    if files is not None:
        root = root or data_root()
        found = [(p, any(root.glob(p))) for p in files]
    return Entry(name, spec, _static_rows(name), found, _options(name))


def entries(root: Path | None = None) -> list[Entry]:
    from .registry import names

    return [entry(n, root) for n in names()]


def _root_line(root: Path) -> str:
    import os

    why = "$COMPOSER_DATA_DIR" if os.environ.get("COMPOSER_DATA_DIR") else \
        "the first of ./shared/data, ../shared/data and the checkout's ../shared/data that exists; " \
        "set COMPOSER_DATA_DIR to read another folder"
    return f"data root: {root} ({why})"


def _table(rows: list[Entry], fmt: str, with_present: bool) -> str:
    from tabulate import tabulate

    headers = ["name", "tasks", "scenario (values)", "features cat/list/num", "rows", "read from"]
    if with_present:
        headers.append("present")
    body = []
    for e in rows:
        row = [e.name, ", ".join(e.spec.labels), e.scenario_text(), e.features_text(), e.rows_text(),
               e.folders_text()]
        if with_present:
            row.append(e.present_text())
        body.append(row)
    return tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)


def options_lines(rows: list[Entry]) -> list[str]:
    """'names: key=default, ...' for every option set, names sharing one set grouped."""
    groups: dict[str, list[str]] = {}
    for e in rows:
        if e.options:
            text = ", ".join(f"{k}={v}" for k, v in e.options.items())
            groups.setdefault(text, []).append(e.name)
    return [f"{', '.join(names)}: {text}" for text, names in groups.items()]


def text(rows: list[Entry] | None = None, root: Path | None = None) -> str:
    """The ``composer datasets`` listing."""
    from .tables import data_root

    root = root or data_root()
    rows = entries(root) if rows is None else rows
    takes_none = [e.name for e in rows if not e.options]
    out = [_root_line(root), "", _table(rows, "simple", with_present=True), "",
           "options, as NAME:key=value,... (shown with their defaults):"]
    out += [f"  {line}" for line in options_lines(rows)]
    if takes_none:
        out.append(f"  {', '.join(takes_none)}: none")
    out += ["", "`composer datasets NAME` shows one in full (its features, scenario values, group column, "
            "files); --data NAME (or a data YAML) binds a blueprint to it."]
    return "\n".join(out)


def detail(name: str, root: Path | None = None) -> str:
    """One dataset (a name with options, or a data YAML) in full."""
    from .registry import _is_path, describe
    from .tables import data_root

    root = root or data_root()
    if _is_path(name):
        spec, e = describe(name), None
    else:
        e = entry(name, root)
        spec = e.spec
    lines = [f"{spec.name}: {spec.description}".rstrip()]
    scenario = "-"
    if spec.scenario:
        values = ", ".join(spec.scenario_values) if spec.scenario_values else f"values {ON_LOAD}"
        scenario = f"{spec.scenario} ({values})"
    lines += [f"  tasks: {', '.join(f'{t} (label {c})' if c != t else t for t, c in spec.labels.items())}",
              f"  scenario: {scenario}",
              f"  GAUC group: {spec.group or '-'}",
              f"  categorical ({len(spec.categorical)}): {', '.join(spec.categorical) or '-'}",
              f"  lists ({len(spec.lists)}): "
              + (", ".join(f"{n} ({ls.kind}, max_len {ls.max_len}" + (f", shares {ls.share}" if ls.share else "") + ")"
                           for n, ls in spec.lists.items()) or "-"),
              f"  numeric ({len(spec.numeric)}): {', '.join(spec.numeric) or '-'}"]
    if spec.outcomes:
        lines.append(f"  never features ({len(spec.outcomes)} outcome columns): {', '.join(spec.outcomes)}")
    if e is None:
        from .files import read_yaml, source_path

        lines.append(f"  file: {source_path(read_yaml(name)[0], name)}")
        return "\n".join(lines)
    lines.append(f"  rows: {e.rows_text()}")
    if e.files is None:
        lines.append(f"  files: {GENERATED}")
    else:
        lines.append(f"  files ({_root_line(root)}):")
        for pattern, ok in e.files:
            lines.append(f"    {root / pattern}: {'present' if ok else 'missing'}")
    if e.options:
        lines.append("  options: " + ", ".join(f"{k}={v}" for k, v in e.options.items())
                     + f" (write {name.partition(':')[0]}:key=value,... to change them)")
    else:
        lines.append("  options: none")
    return "\n".join(lines)


DOC_HEADER = ("<!-- Generated by `composer datasets --markdown > docs/datasets.md`; edit composer/data/catalog.py, "
              "not this file. -->")


def markdown() -> str:
    """docs/datasets.md: every built-in dataset, described as on a machine without the data
    (``kuairand`` and ``aliexpress`` read a header line when their files are there), so the page
    is the same everywhere; presence is left out."""
    import os
    import tempfile

    saved = os.environ.get("COMPOSER_DATA_DIR")
    with tempfile.TemporaryDirectory() as empty:
        os.environ["COMPOSER_DATA_DIR"] = empty
        try:
            rows = entries()
        finally:
            if saved is None:
                del os.environ["COMPOSER_DATA_DIR"]
            else:
                os.environ["COMPOSER_DATA_DIR"] = saved
    out = [DOC_HEADER, "", "# Built-in datasets", "",
           "`composer datasets` prints this table on your machine, with whether each one's files are "
           "present; `composer datasets NAME` shows one in full. Files are read from the data root: "
           "`$COMPOSER_DATA_DIR`, else the first of `./shared/data`, `../shared/data` (from the current "
           "folder) and `../shared/data` beside the source checkout that exists. A blueprint binds to a "
           "dataset with `data: NAME` or `--data NAME`; a data YAML describes any other file "
           "([data.md](data.md)).", "",
           _table(rows, "github", with_present=False), "",
           "Features: categorical / list (multi-valued and sequence) / numeric columns; a scenario "
           "column that is also a feature counts as categorical.", "",
           "## Options", "", "Written after the name, as `NAME:key=value,...`; the defaults:", ""]
    out += [f"- {line}" for line in options_lines(rows)]
    out += ["- every other name takes none.", "", "## Descriptions", ""]
    out += [f"- `{e.name}`: {e.spec.description}" for e in rows]
    return "\n".join(out) + "\n"
