"""Reading a CSV (plain or gzip) or Parquet table, with every mistake located in the file.

The loaders share this: a table is read with every cell as text (``NaN`` for missing), then the
columns a dataset uses are converted one by one (numbers, 0/1 labels, categorical strings) and
the first bad cell of each is reported as ``FILE:LINE: column: ...``. No bad row is dropped.
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, Location, did_you_mean

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz", ".gz")


DATA_ENV = "COMPOSER_DATA_DIR"


def data_candidates() -> list[tuple[str, Path]]:
    """Where the built-in datasets' files are looked for, in order: ``$COMPOSER_DATA_DIR`` (when
    set: then it alone), ``./shared/data`` and ``../shared/data`` from the current folder, then
    ``../shared/data`` beside the source checkout this package was imported from (a plain
    ``pip install .`` puts the package in site-packages, where that last one means nothing)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return [(f"${DATA_ENV}", Path(env).expanduser())]
    here = Path.cwd()
    checkout = Path(__file__).resolve().parents[2]  # the folder holding composer/ (a checkout)
    found = [("./shared/data", here / "shared" / "data"), ("../shared/data", here.parent / "shared" / "data"),
             ("beside the source checkout", checkout.parent / "shared" / "data")]
    out, seen = [], set()
    for label, path in found:
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            out.append((label, path))
    return out


def data_root() -> Path:
    """The folder of the shared real data: the first of ``data_candidates()`` that exists (the
    first candidate when none does, so a message can name it)."""
    candidates = data_candidates()
    return next((path for _, path in candidates if path.is_dir()), candidates[0][1])


def require_dir(path: Path, dataset: str) -> Path:
    if not path.is_dir():
        looked = "; ".join(f"{label} = {where}" for label, where in data_candidates())
        raise DataError(f"data folder not found: {path}", location=Location(str(path)), key=dataset,
                        hint=f"'{dataset}' reads its files from the shared data folder; looked in: {looked} "
                        f"(unset {DATA_ENV}: the first that exists). Point {DATA_ENV} at the folder "
                        "holding it")
    return path


def require_file(path: Path, dataset: str | None = None) -> Path:
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "not a file",
                        location=Location(str(path)), key=dataset,
                        hint=f"expected it in {path.parent}")
    return path


def md5_bucket(text: str) -> int:
    """``int(md5(text as UTF-8).hexdigest()[:8], 16)``: the hash every split rule here uses."""
    return int(hashlib.md5(text.encode("utf-8")).hexdigest()[:8], 16)


def bucket_split(texts, valid=(8,), test=(9,)) -> np.ndarray:
    """The DATA.md rule: ``b = md5_bucket(text) % 10``; b in ``valid`` -> valid, in ``test`` ->
    test, else train."""
    b = np.fromiter((md5_bucket(t) % 10 for t in texts), dtype=np.int64, count=len(texts))
    return np.where(np.isin(b, test), "test", np.where(np.isin(b, valid), "valid", "train"))


def fraction_split(texts, valid: float, test: float) -> np.ndarray:
    """``u = md5_bucket(text) / 16**8`` in [0, 1): the last ``test`` of the unit interval is test,
    the ``valid`` before it valid, the rest train."""
    u = np.fromiter((md5_bucket(t) for t in texts), dtype=np.float64, count=len(texts)) / 16.0**8
    return np.where(u >= 1 - test, "test", np.where(u >= 1 - test - valid, "valid", "train"))


@dataclass
class Table:
    """A table as read, with where each row came from. ``lines`` (the raw text of each data row)
    is kept when asked for."""

    frame: pd.DataFrame
    file: str
    header: list[str]
    kind: str  # "csv" or "parquet"
    delimiter: str = ","
    lines: list[str] | None = None
    line_numbers: np.ndarray | None = None  # the file line of each data row, when known
    _scanned: bool = field(default=False, repr=False)

    def __len__(self) -> int:
        return len(self.frame)

    def line_of(self, row: int) -> int | None:
        if self.kind != "csv":
            return None
        if self.line_numbers is None and not self._scanned:
            self._scanned = True
            self.line_numbers = _scan_line_numbers(self.file, self.delimiter, len(self.frame))
        if self.line_numbers is not None and row < len(self.line_numbers):
            return int(self.line_numbers[row])
        return None

    def location(self, row: int) -> Location:
        return Location(self.file, self.line_of(row))

    def where(self, row: int) -> str:
        """'line 7' for a CSV, 'row 6' (1-based, no header) for Parquet."""
        line = self.line_of(row)
        return f"line {line}" if line is not None else f"row {row + 1}"

    def require(self, columns, declared_at=None) -> None:
        """Every column in ``columns`` exists; ``declared_at(column)`` gives where it was asked for."""
        for col in columns:
            if col not in self.frame.columns:
                loc = declared_at(col) if declared_at else Location(self.file, 1 if self.kind == "csv" else None)
                where = "the file" if loc.file == self.file else os.path.basename(self.file)
                raise DataError(f"column '{col}' is not in {where}", location=loc, key=col,
                                hint=did_you_mean(col, self.header, what="columns in the file"))

    # -- conversions: text -> typed column, first bad cell located --------------------------------
    def bad_cell(self, col: str, mask: np.ndarray, message: str, hint: str | None = None):
        rows = np.flatnonzero(mask)
        first = int(rows[0])
        value = self.frame[col].iloc[first]
        more = f" ({len(rows)} rows like this; the first is shown)" if len(rows) > 1 else ""
        loc = self.location(first)
        at = "" if loc.line is not None else f" in {self.where(first)}"  # Parquet: no lines
        return DataError(message.format(value=value) + at + more, location=loc, key=col, hint=hint)

    def numeric(self, col: str) -> pd.Series:
        s = self.frame[col]
        if pd.api.types.is_bool_dtype(s):
            return s.astype("float32")
        if _is_time(s):  # pd.to_numeric would turn a date into nanoseconds since 1970, silently
            raise self.bad_cell(col, s.notna().to_numpy(), f"'{col}' holds dates or times ({s.dtype}), "
                                "declared numeric; got '{value}'", DATETIME_HINT)
        if pd.api.types.is_numeric_dtype(s):
            out = s.astype("float64")
        else:
            out = pd.to_numeric(s, errors="coerce")
            bad = (s.notna() & out.isna()).to_numpy()
            if bad.any():
                first = s.iloc[int(np.flatnonzero(bad)[0])]
                if _looks_like_time(first):
                    raise self.bad_cell(col, bad, f"'{col}' holds dates or times, declared numeric; "
                                        "got '{value}'", DATETIME_HINT)
                raise self.bad_cell(col, bad, "expected a number, got '{value}'",
                                "a numeric column holds numbers; leave a cell empty for a missing value, "
                                "or declare the column categorical")
        inf = np.isinf(out.to_numpy(dtype="float64", na_value=np.nan))
        if inf.any():
            raise self.bad_cell(col, inf, "expected a finite number, got '{value}'")
        return out.astype("float32")

    def label(self, col: str, missing: str = "error") -> pd.Series:
        """0/1 as int64; a missing label is an error, or -1 when ``missing == 'mask'``."""
        s = self.frame[col]
        if pd.api.types.is_bool_dtype(s):
            return s.astype("int64")
        if pd.api.types.is_numeric_dtype(s):
            out = s.astype("float64")
        else:  # text: numbers, or True/False as pandas reads a whole column of them (a streamed
            # chunk arrives as text, so the two paths must agree)
            words = s.astype("string").str.strip().str.lower()
            out = pd.to_numeric(s, errors="coerce").mask(words.eq("true").fillna(False), 1.0)
            out = out.mask(words.eq("false").fillna(False), 0.0)
        absent = s.isna().to_numpy()
        binary = out.isin([0, 1]).to_numpy()
        bad = ~binary & ~absent
        if bad.any():
            raise self.bad_cell(col, bad, "a label must be 0 or 1, got '{value}'",
                            "labels are binary: 0 (no) or 1 (yes)")
        if absent.any():
            if missing != "mask":
                raise self.bad_cell(col, absent, "missing label",
                                "every row needs a 0/1 label; set 'missing_labels: mask' in the data "
                                "YAML to keep such rows with label -1 (left out of that task's loss)")
            out = out.where(~absent, -1)
        return out.astype("int64")

    def categorical(self, col: str) -> pd.Series:
        return as_text(self.frame[col])

    def lists(self, col: str, separator: str = ",") -> pd.Series:
        """A list column as one array of values per row: list cells (Parquet) as they are, text
        cells split on ``separator`` (empty and missing cells are empty lists)."""
        from .lists import split_text

        s = self.frame[col]
        if pd.api.types.is_string_dtype(s) or s.map(lambda v: isinstance(v, str) or v is None
                                                     or (isinstance(v, float) and v != v)).all():
            return split_text(s, separator)
        bad = s.map(lambda v: not isinstance(v, (list, tuple, np.ndarray)) and v is not None
                    and not (isinstance(v, float) and v != v)).to_numpy()
        if bad.any():
            raise self.bad_cell(col, bad, "expected a list of ids, got '{value}'",
                                "a list column holds list cells (Parquet) or delimited text (CSV: \"39,43\")")
        return s.map(lambda v: np.array([], dtype=object) if v is None or isinstance(v, float)
                     else np.asarray(v).reshape(-1))


DATETIME_HINT = ("a date is not a number here: write the number you mean in the file (e.g. days since "
                 "an event), use the column to split (split: {time: COLUMN, ...}) or declare it categorical")


def _is_time(s: pd.Series) -> bool:
    """A column of dates, times or durations: datetime64/timedelta64 (Parquet timestamps), or
    Python date/time objects (Parquet date32 arrives as datetime.date)."""
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
        return True
    if s.dtype == object:
        present = s.dropna()
        return bool(len(present)) and isinstance(present.iloc[0], (dt.date, dt.time, dt.timedelta))
    return False


def _looks_like_time(value) -> bool:
    """'2022-04-25', '2022-04-25 10:00', '10:30:00', '25/04/2022': text pandas would not read as a number."""
    return isinstance(value, str) and bool(re.fullmatch(
        r"\s*(\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\S*|\d{1,2}:\d{2}(:\d{2})?"
        r"|\d{1,2}[/.]\d{1,2}[/.]\d{2,4})\s*", value))


def locate_row(file: str, kind: str, delimiter: str, row: int) -> tuple[Location, str]:
    """Where data row ``row`` (0-based, file order) of a table file is: (its Location, 'line 7'
    for a CSV or 'row 6' for Parquet). Scans a CSV: run to report an error."""
    table = Table(pd.DataFrame(index=range(row + 1)), file, [], kind, delimiter)
    return table.location(row), table.where(row)


def as_text(values: pd.Series) -> pd.Series:
    """A categorical column as strings: ints and whole floats without '.0'; missing stays NaN."""
    if pd.api.types.is_string_dtype(values):
        return values
    if pd.api.types.is_float_dtype(values):
        present = values.dropna()
        if len(present) and np.all(np.mod(present, 1) == 0):
            return values.astype("Int64").astype("str")
    return values.astype("str")


def _open_text(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _scan_line_numbers(path: str, delimiter: str, rows: int) -> np.ndarray | None:
    """The starting file line of each data row, as pandas counts rows (blank lines skipped,
    quoted newlines inside a row). Only run to locate an error."""
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            header = next(reader, None)
            while header == []:  # pandas skips blank lines before the header too
                header = next(reader, None)
            out, end = [], reader.line_num
            for record in reader:
                if record:
                    out.append(end + 1)
                    if len(out) >= rows:
                        break
                end = reader.line_num
        return np.asarray(out, dtype=np.int64)
    except (OSError, csv.Error, UnicodeDecodeError):
        return None


def _read_error(path: str, exc: Exception) -> DataError:
    if isinstance(exc, UnicodeDecodeError):
        line = _first_undecodable_line(path)
        return DataError(f"file is not UTF-8 text ({exc.reason})", location=Location(path, line),
                         hint="save the file as UTF-8")
    if isinstance(exc, (OSError, EOFError, gzip.BadGzipFile)):
        reason = getattr(exc, "strerror", None) or str(exc)
        return DataError(f"cannot read file: {reason}", location=Location(path))
    return DataError(f"cannot read file: {exc}", location=Location(path))


def _first_undecodable_line(path: str) -> int | None:
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except (OSError, EOFError):
        pass
    return None


def check_path(path: str) -> str:
    """'csv' or 'parquet' for an existing data file; a located DataError otherwise."""
    if os.path.isdir(path):
        raise DataError("is a folder, not a data file", location=Location(path),
                        hint="name a .csv, .csv.gz or .parquet file")
    if not os.path.exists(path):
        folder = os.path.dirname(path) or "."
        raise DataError("cannot read file: no such file", location=Location(path),
                        hint=f"check the path; the folder {folder} "
                        + ("exists" if os.path.isdir(folder) else "does not exist either"))
    lower = path.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if not lower.endswith(CSV_SUFFIXES):
        raise DataError("unknown file type", location=Location(path),
                        hint="a data file is .csv, .csv.gz, .tsv or .parquet")
    return "csv"


def read_table(path, *, delimiter: str = ",", na_values=("",), rows: int | None = None,
               want_lines: bool = False, text_columns=None) -> Table:
    """Read a CSV / gzip CSV (header line first) or a Parquet file.

    ``text_columns`` are read as text exactly as written (categorical columns: '007' stays
    '007'); the other columns get pandas' type inference, several times faster than text, and
    are checked when converted. ``text_columns=None`` reads every column as text.
    ``want_lines`` keeps the raw text of each data row (for hash splits); a trailing carriage
    return is not part of a line.
    """
    path = str(path)
    if check_path(path) == "parquet":
        return _read_parquet(path, rows)
    try:
        with _open_text(path) as fh:
            if want_lines:
                text = fh.read()
                found = re.search(r"[^\r\n]*\S[^\r\n]*", text)
                first = found.group(0) if found else ""
            else:
                first, text = fh.readline(), None
                while first and not first.strip():
                    first = fh.readline()
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise _read_error(path, exc) from None
    if not first.strip():
        raise DataError("file is empty", location=Location(path, 1),
                        hint="a data file starts with a header line naming its columns, then one row per line")
    header = next(csv.reader([first.rstrip("\r\n")], delimiter=delimiter))
    header, trailing = row_shape(path, delimiter, header)
    dtype = str if text_columns is None else {c: str for c in text_columns if c in header}
    columns = header + [TRAILING] if trailing else header
    if trailing and isinstance(dtype, dict):
        dtype[TRAILING] = str
    try:
        # the names given and index_col=False: pandas never takes a column as the index (it does
        # when the rows hold one field more than the header) and never shifts the columns
        frame = pd.read_csv(io.StringIO(text) if text is not None else path, sep=delimiter, dtype=dtype,
                            header=0, names=columns, index_col=False,
                            keep_default_na=False, na_values=list(na_values), nrows=rows, low_memory=False,
                            encoding="utf-8-sig" if text is None else None)
    except pd.errors.ParserError as exc:
        if trailing:
            check_trailing(path, delimiter, header, rows)
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            want, line, saw = map(int, m.groups())
            raise DataError(f"line has {saw} fields, the header has {want}", location=Location(path, line),
                            hint="quote values that contain the delimiter; every row has one field per column") from None
        raise DataError(f"not a readable CSV file: {exc}", location=Location(path)) from None
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", location=Location(path, 1)) from None
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise _read_error(path, exc) from None
    if len(frame) == 0:
        raise DataError("the file has a header but no data rows", location=Location(path, 2),
                        hint="add one row per line below the header")
    if trailing:
        check_trailing(path, delimiter, header, rows)
        frame = frame.drop(columns=[TRAILING])
    table = Table(frame, path, header, "csv", delimiter)
    if text is not None:
        _attach_lines(table, text, rows)
    if not trailing:  # check_trailing has counted every row's fields
        _check_short_rows(table)
    return table


# The name given to the empty field after the last column when every row ends with the delimiter.
TRAILING = "\x00after the last column"


def row_shape(path: str, delimiter: str, header: list[str]) -> tuple[list[str], bool]:
    """The column names of a CSV file and whether its rows end with the delimiter (one empty
    field after the last column, as some exporters write). Read the same way in memory and
    streamed: a header ending with the delimiter loses its empty last name; the first data row
    decides, and then every row must hold the columns plus that one empty field
    (``check_trailing``). A first row with more fields than the header is refused here: pandas
    would otherwise take its first column as the index, or drop the extra values."""
    names = header[:-1] if len(header) > 1 and header[-1] == "" else list(header)
    _check_header(path, names)
    record, line = _first_data_record(path, delimiter)
    if record is None or len(record) <= len(names):
        return names, False
    if len(record) == len(names) + 1 and record[-1] == "":
        return names, True
    raise DataError(f"line has {len(record)} fields, the header has {len(names)}", location=Location(path, line),
                    hint="quote values that contain the delimiter; every row has one field per column "
                    "(a row may end with the delimiter when every row does)")


def check_trailing(path: str, delimiter: str, names: list[str], rows: int | None = None) -> None:
    """In a file whose rows end with the delimiter, every data row (the first ``rows``) holds
    ``len(names)`` fields and an empty one after them; the first that does not is a located
    DataError. Scans the file (csv module): run for such files only."""
    width = len(names)
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            _skip_header(reader)
            count, end = 0, reader.line_num
            for record in reader:
                line, end = end + 1, reader.line_num  # a quoted value may span lines: its first
                if not record:
                    continue
                count += 1
                if len(record) != width + 1:
                    raise DataError(
                        f"line has {len(record)} fields; the rows of this file end with the delimiter, so "
                        f"each holds {width + 1} ({width} columns, then an empty field)",
                        location=Location(path, line),
                        hint="end every row with the delimiter, or none; quote values that contain it")
                if record[-1] != "":
                    raise DataError(
                        f"line holds '{record[-1]}' after its last column '{names[-1]}'; the rows of this "
                        "file end with the delimiter, so the field after the last column is empty",
                        location=Location(path, line),
                        hint=f"the header names {width} columns; quote values that contain the delimiter")
                if rows is not None and count >= rows:
                    break
    except (OSError, csv.Error, UnicodeDecodeError):
        return


def _skip_header(reader) -> list[str] | None:
    header = next(reader, None)
    while header == []:  # pandas skips blank lines before the header too
        header = next(reader, None)
    return header


def _first_data_record(path: str, delimiter: str) -> tuple[list[str] | None, int | None]:
    """The first non-blank record after the header, and its line."""
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            _skip_header(reader)
            end = reader.line_num
            for record in reader:
                if record:
                    return record, end + 1
                end = reader.line_num
    except (OSError, csv.Error, UnicodeDecodeError):
        pass
    return None, None


def _check_header(path: str, header: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if name == "":
            raise DataError(f"column {i} of the header has no name", location=Location(path, 1),
                            hint="every column needs a name (a trailing delimiter makes an empty one)")
        if name in seen:
            raise DataError(f"duplicate column name '{name}' in the header (columns {seen[name]} and {i})",
                            location=Location(path, 1), key=name, hint="column names must be unique")
        seen[name] = i


def check_unique_columns(path: str, names: list[str]) -> None:
    """A Parquet file's column names are unique (pyarrow reads duplicates without a word)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name in seen:
            raise DataError(f"duplicate column name '{name}' (columns {seen[name]} and {i})",
                            location=Location(path), key=name, hint="column names must be unique")
        seen[name] = i


def _attach_lines(table: Table, text: str, rows: int | None) -> None:
    raw = text.split("\n")
    numbered = [(i + 1, line[:-1] if line.endswith("\r") else line) for i, line in enumerate(raw)]
    numbered = [(n, line) for n, line in numbered if line.strip()][1:]  # [0] is the header
    if rows is not None:
        numbered = numbered[:rows]
    if len(numbered) != len(table.frame):
        raise DataError(f"{len(table.frame)} rows but {len(numbered)} non-empty lines",
                        location=Location(table.file),
                        hint="splitting by a hash of each line needs one row per line "
                        "(no line breaks inside quoted values)")
    table.lines = [line for _, line in numbered]
    table.line_numbers = np.asarray([n for n, _ in numbered], dtype=np.int64)


def _check_short_rows(table: Table) -> None:
    """pandas fills a row with too few fields with missing values; never accept that silently."""
    if table.frame.shape[1] < 2 or not table.frame.iloc[:, -1].isna().any():
        return
    width = len(table.header)
    try:
        with _open_text(table.file) as fh:
            reader = csv.reader(fh, delimiter=table.delimiter)
            header = next(reader, None)
            while header == []:
                header = next(reader, None)
            count = 0
            for record in reader:
                if not record:
                    continue
                count += 1
                if len(record) < width:
                    raise DataError(f"line has {len(record)} fields, the header has {width}",
                                    location=Location(table.file, reader.line_num),
                                    hint="every row has one field per column; leave a field empty "
                                    "(a,,c) for a missing value")
                if count >= len(table.frame):
                    break
    except (OSError, csv.Error, UnicodeDecodeError):
        return


def _read_parquet(path: str, rows: int | None) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading Parquet needs pyarrow", location=Location(path),
                        hint="pip install pyarrow") from None
    try:
        schema = pq.read_schema(path)
        names = list(schema.names)
        check_unique_columns(path, names)
        pf = pq.ParquetFile(path)
        if rows is not None:
            batches = []
            got = 0
            for batch in pf.iter_batches(batch_size=min(max(rows, 1), 65536)):
                batches.append(batch)
                got += batch.num_rows
                if got >= rows:
                    break
            import pyarrow as pa

            table = pa.Table.from_batches(batches, schema=pf.schema_arrow) if batches else pf.schema_arrow.empty_table()
            frame = table.to_pandas().head(rows)
        else:
            frame = pf.read().to_pandas()
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises its own exception types for a corrupt file
        raise DataError(f"not a readable Parquet file: {exc}", location=Location(path)) from None
    if len(frame.columns) == 0:
        raise DataError("file is empty (no columns)", location=Location(path))
    if len(frame) == 0:
        raise DataError("the file has columns but no data rows", location=Location(path))
    return Table(frame.reset_index(drop=True), path, names, "parquet")


def read_header(path) -> list[str] | None:
    """The header of a CSV file (one line read), or None if it cannot be read."""
    try:
        with _open_text(str(path)) as fh:
            first = fh.readline()
        return next(csv.reader([first.rstrip("\r\n")])) if first.strip() else None
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile, StopIteration):
        return None
