"""Data larger than memory: a data YAML's file read in chunks, with the in-memory path's rules.

``open_stream(data_yaml)`` reads the file once, chunk by chunk (CSV: up to 8 MB of text cut at a
row's end, parsed by ``pyarrow.csv.read_csv``; Parquet: ``ParquetFile.iter_batches``). Every chunk
goes through ``files.convert``, the same conversion ``files.load`` applies to the whole table, so
types, split rules and bad-cell reports are the in-memory ones (``FILE:LINE: column: ...``; a row
is never dropped; a chunk with several bad cells of a column counts those of the chunk). The converted rows are
written, one Arrow IPC file per split, to a cache folder in the system temp folder (``$TMPDIR``)
that is removed when the dataset is closed: the file is parsed and checked once, and each epoch
then reads only its split's typed rows, one batch at a time.

``StreamingDataset.fit_preprocessor`` fits the preprocessing in one pass over the train rows:
vocabulary counts are summed over chunks and numeric moments merged (Chan et al. 1979, Pébay
2008), giving the vocabularies, out-of-vocabulary bucket and log1p choices of
``Preprocessor.fit`` exactly, and its means and variances up to float rounding of the sums.

Memory holds one chunk at a time, the vocabulary counts and, while training, the shuffle buffer
(``composer.training.streamed``): not the file. Nothing here imports TensorFlow or Keras.
"""
from __future__ import annotations

import csv
import math
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import SPLITS
from .errors import DataError, Location
from .tables import (TRAILING, Table, _open_text, _read_error, _scan_line_numbers, check_path,
                     check_trailing, check_unique_columns, locate_row, row_shape)

ROW = "_row"  # the cache's column holding each row's 0-based position in the file
MAX_BLOCK_BYTES = 8 << 20  # a CSV chunk's text; transient memory is about 15 times this


# -- chunks of a file, located like the whole file ------------------------------------------------
@dataclass
class ChunkTable(Table):
    """Rows ``offset`` .. ``offset + len - 1`` of a file. Locations are the file's own (the line
    of a CSV row, found by scanning the file only when a cell is bad; the row of a Parquet file);
    a bad cell's count is that of this chunk."""

    offset: int = 0
    text_rules: dict | None = None  # Parquet: column -> how the whole file's column becomes text

    def line_of(self, row: int) -> int | None:
        if self.kind != "csv":
            return None
        if self.line_numbers is not None:
            return int(self.line_numbers[row])
        want = self.offset + row + 1
        numbers = _scan_line_numbers(self.file, self.delimiter, want)
        return int(numbers[-1]) if numbers is not None and len(numbers) == want else None

    def where(self, row: int) -> str:
        line = self.line_of(row)
        return f"line {line}" if line is not None else f"row {self.offset + row + 1}"

    def bad_cell(self, col, mask, message, hint=None):
        rows = np.flatnonzero(mask)
        first = int(rows[0])
        value = self.frame[col].iloc[first]
        more = ""
        if len(rows) > 1:
            more = (f" ({len(rows)} rows like this in rows {self.offset + 1}-{self.offset + len(self.frame)}, "
                    "the chunk being read; the first is shown)")
        loc = self.location(first)
        at = "" if loc.line is not None else f" in {self.where(first)}"
        return DataError(message.format(value=value) + at + more, location=loc, key=col, hint=hint)

    def categorical(self, col: str) -> pd.Series:
        rule = (self.text_rules or {}).get(col)
        if rule is None:
            return super().categorical(col)
        values = self.frame[col].astype("float64")
        return values.astype("Int64").astype("str") if rule == "whole" else values.astype("str")


class _TypedNumbersFailed(Exception):
    """A numeric column held a cell pyarrow could not read as a number: read again as text,
    so that the cell is reported like the in-memory path reports it."""


def _first_record(reader) -> list[str] | None:
    """The first non-blank record of a csv.reader (blank lines before the header are skipped,
    as pandas skips them)."""
    header = next(reader, None)
    while header == []:
        header = next(reader, None)
    return header


def _csv_header(path: str, delimiter: str) -> tuple[list[str], bool]:
    """The column names and whether every row ends with the delimiter (``tables.row_shape``, as
    the in-memory path reads them)."""
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            header = _first_record(reader)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise _read_error(path, exc) from None
    if not header:
        raise DataError("file is empty", location=Location(path, 1),
                        hint="a data file starts with a header line naming its columns, then one row per line")
    return row_shape(path, delimiter, header)


def _block_size(path: str, chunk_rows: int) -> int:
    """Bytes of CSV text holding about ``chunk_rows`` rows (from the first MiB of the file)."""
    try:
        with _open_text(path) as fh:
            sample = fh.read(1 << 20)
    except (OSError, EOFError, UnicodeDecodeError):
        return 1 << 20
    rows = sample.split("\n")
    per_row = len(sample.encode("utf-8")) / max(len(rows) - 1, 1)
    longest = max(len(r.encode("utf-8")) for r in rows)
    # pyarrow needs a block to hold whole rows: keep it well above the longest row seen
    return int(min(max(per_row * chunk_rows, 16 * longest, 4096), MAX_BLOCK_BYTES))


def _open_bytes(path: str):
    import gzip

    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _row_end(buf: bytes) -> int:
    """The length of the longest prefix of ``buf`` that ends a row: just after its last newline
    outside double quotes (the chunk starts outside quotes; a doubled quote counts twice)."""
    end = buf.rfind(b"\n")
    quotes = buf.count(b'"', 0, end) if end >= 0 else 0
    while end >= 0 and quotes % 2:  # inside a quoted value: try the newline before
        before = buf.rfind(b"\n", 0, end)
        quotes -= buf.count(b'"', before + 1, end) if before >= 0 else quotes
        end = before
    return end + 1


# A row may span this many blocks before streaming gives up on finding its end (memory bound).
ROW_LIMIT_BLOCKS = 8


def _byte_chunks(path: str, block: int):
    """(first line number, bytes) of the data rows, about ``block`` bytes at a time, each cut at a
    row's end. Read by this loop alone, so memory holds one chunk (pyarrow's streaming CSV reader
    reads many blocks ahead: 170 MB of its pool for 4 MB blocks of a 310 MB file, measured)."""
    with _open_bytes(path) as fh:
        line = 0
        while True:  # up to and including the header: the first line that is not blank
            raw = fh.readline()
            line += 1
            if not raw or raw.lstrip(b"\xef\xbb\xbf").strip():
                break
        rest, first = b"", line + 1
        while True:
            data = fh.read(block)
            buf = rest + data
            if not buf:
                return
            cut = len(buf) if not data else _row_end(buf)
            if cut == 0:  # a row longer than the block: read on, but not without bound
                if len(buf) > ROW_LIMIT_BLOCKS * block:
                    raise DataError(
                        f"no row ends within {len(buf) >> 20} MB after line {first}: streaming cuts "
                        f"the file at newlines outside double quotes, and an unmatched '\"' (e.g. "
                        f"12\" screen in an unquoted value) makes every later newline look quoted",
                        location=Location(path, first),
                        hint="quote values that contain '\"' (and double it inside), or train in "
                        "memory without --stream")
                rest = buf
                continue
            chunk, rest = buf[:cut], buf[cut:]
            yield first, chunk
            first += chunk.count(b"\n")


def _numbered_lines(chunk: bytes, first: int) -> list:
    """(line number, text) of the non-empty lines of a chunk, as ``tables._attach_lines`` numbers
    them (split on newlines only, a trailing carriage return dropped)."""
    out = []
    for i, line in enumerate(chunk.decode("utf-8").split("\n")):
        line = line[:-1] if line.endswith("\r") else line
        if line.strip():
            out.append((first + i, line))
    return out


def _ragged_line(path: str, delimiter: str) -> DataError:
    """The first row whose field count differs from the header's, located as pandas counts lines."""
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            header = _first_record(reader)
            width = len(header or [])
            for record in reader:
                if record and len(record) != width:  # the in-memory path's words for each case
                    hint = ("quote values that contain the delimiter; every row has one field per column"
                            if len(record) > width else "every row has one field per column; leave a field "
                            "empty (a,,c) for a missing value")
                    return DataError(f"line has {len(record)} fields, the header has {width}",
                                     location=Location(path, reader.line_num), hint=hint)
    except (OSError, csv.Error, UnicodeDecodeError):
        pass
    return DataError("a row has a different number of fields than the header", location=Location(path))


def _arrow_error(path: str, delimiter: str, exc: Exception) -> Exception:
    text = str(exc)
    if "conversion error to double" in text or "conversion error to int64" in text:
        return _TypedNumbersFailed()
    if "Expected" in text and "columns" in text:
        return _ragged_line(path, delimiter)
    if "UTF8" in text or "UTF-8" in text:
        try:  # decode as the in-memory path does, for its exact reason
            with _open_text(path) as fh:
                for _ in fh:
                    pass
        except UnicodeDecodeError as decode:
            return _read_error(path, decode)
        return _read_error(path, UnicodeDecodeError("utf-8", b"", 0, 1, "invalid UTF-8 data"))
    return DataError(f"not a readable CSV file: {text}", location=Location(path))


def _csv_chunks(path, m, header, chunk_rows, rows, typed_numbers, trailing=False):
    """ChunkTables of a CSV file: the declared columns, every one read as text except numeric
    features, labels and a numeric time column, which pyarrow reads as float64 when
    ``typed_numbers`` (a cell it cannot read raises ``_TypedNumbersFailed``). With ``trailing``
    every row ends with the delimiter: the empty field after the last column is read, checked
    empty and dropped (``tables.check_trailing`` reports a row that breaks the rule)."""
    import gzip

    import pyarrow as pa
    import pyarrow.csv as pacsv

    from . import files

    delimiter = files.delimiter(m, Path(path))
    declared = files._declarations(m)
    wanted = [c for c in header if c in declared] + ([TRAILING] if trailing else [])
    types = {c: pa.string() for c in wanted}
    time_as_dates = files.split_mode(m) == "time" and not all(
        isinstance(b, (int, float)) and not isinstance(b, bool) for b in (m.split.valid_from, m.split.test_from))
    if typed_numbers:  # numbers as pyarrow reads them: several times faster than text in pandas
        numbers = [*m.numeric] + ([m.split.time] if m.split.time and not time_as_dates else [])
        types.update({c: pa.float64() for c in numbers if c not in files.text_columns(m)})
        types.update({c: pa.int64() for c in m.labels.values() if c not in files.text_columns(m)})
    whole_row = files.whole_row_hash(m)
    block = _block_size(path, chunk_rows)
    options = dict(
        read_options=pacsv.ReadOptions(column_names=header + ([TRAILING] if trailing else []),
                                       block_size=max(block // 2, 1 << 16)),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types=types, include_columns=wanted,
                                             null_values=list(m.missing_values), strings_can_be_null=True,
                                             quoted_strings_can_be_null=True))
    offset = 0
    try:
        for first_line, chunk in _byte_chunks(path, block):
            if rows is not None and offset >= rows:
                return
            try:
                batch = pacsv.read_csv(pa.py_buffer(chunk), **options)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                error = _arrow_error(path, delimiter, exc)
                if trailing and not isinstance(error, _TypedNumbersFailed):
                    check_trailing(path, delimiter, header)  # its words for a row that breaks the rule
                raise error from None
            if rows is not None and offset + batch.num_rows > rows:
                batch = batch.slice(0, rows - offset)
            if batch.num_rows == 0:
                continue
            frame = batch.to_pandas()
            if trailing:
                after = frame.pop(TRAILING)
                if (after.notna() & after.ne("")).any():
                    check_trailing(path, delimiter, header)
            table = ChunkTable(frame, path, header, "csv", delimiter, offset=offset)
            if whole_row:
                numbered = _numbered_lines(chunk, first_line)
                if len(numbered) < len(frame) or rows is None and len(numbered) != len(frame):
                    last = first_line + chunk.count(b"\n")
                    raise DataError(f"{len(frame)} rows but {len(numbered)} non-empty lines in lines "
                                    f"{first_line}-{last}", location=Location(path),
                                    hint="splitting by a hash of each line needs one row per line "
                                    "(no line breaks inside quoted values)")
                table.line_numbers = np.asarray([n for n, _ in numbered[:len(frame)]], dtype=np.int64)
                table.lines = [text for _, text in numbered[:len(frame)]]
            if time_as_dates:
                _as_pandas_reads_numbers(frame, m.split.time)
            yield table
            offset += len(frame)
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise _read_error(path, exc) from None


def _as_pandas_reads_numbers(frame, col):
    """pandas reads a time column of numbers as numbers; so does a chunk read as text (the
    in-memory check that date boundaries do not meet a numeric column then applies)."""
    values = frame[col]
    if values.notna().any():
        try:
            frame[col] = pd.to_numeric(values)
        except (ValueError, TypeError):
            pass


def _parquet_chunks(path, m, chunk_rows, rows):
    """ChunkTables of a Parquet file. pandas types a column from the whole file (an integer
    column with a null anywhere is float64; a float column is categorical text without '.0' only
    when all of it is whole), so those facts are found first and applied to every chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import files

    try:
        # column chunks are read page by page, not a whole row group at once
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        names = list(pf.schema_arrow.names)
    except Exception as exc:  # pyarrow raises its own exception types for a corrupt file
        raise DataError(f"not a readable Parquet file: {exc}", location=Location(path)) from None
    check_unique_columns(path, names)
    if not names:
        raise DataError("file is empty (no columns)", location=Location(path))
    declared = files._declarations(m)
    columns = names if files.whole_row_hash(m) else [c for c in names if c in declared]
    types = {f.name: f.type for f in pf.schema_arrow}
    nullable_ints = [c for c in columns if pa.types.is_integer(types[c]) and _has_nulls(pf, c)]
    text_rules = {}
    for col in files.text_columns(m):
        if col in types and (pa.types.is_floating(types[col]) or col in nullable_ints):
            text_rules[col] = "whole" if _all_whole(pf, col) else "str"
    offset = 0
    try:
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=columns):
            if rows is not None and offset >= rows:
                break
            if rows is not None and offset + batch.num_rows > rows:
                batch = batch.slice(0, rows - offset)
            frame = batch.to_pandas()
            for col in nullable_ints:
                frame[col] = frame[col].astype("float64")
            yield ChunkTable(frame.reset_index(drop=True), path, names, "parquet", offset=offset,
                             text_rules=text_rules)
            offset += len(frame)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet file: {exc}", location=Location(path)) from None


def _has_nulls(pf, col) -> bool:
    meta = pf.metadata
    j = pf.schema_arrow.get_field_index(col)
    counts = []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(j).statistics
        if stats is None or not stats.has_null_count:
            counts = None
            break
        counts.append(stats.null_count)
    if counts is not None:
        return sum(counts) > 0
    return any(b.column(0).null_count for b in pf.iter_batches(columns=[col]))


def _all_whole(pf, col) -> bool:
    """Every present value whole, and at least one present (``tables.as_text``'s rule)."""
    present = False
    for batch in pf.iter_batches(columns=[col]):
        values = batch.column(0).to_numpy(zero_copy_only=False).astype("float64")
        values = values[~np.isnan(values)]
        if len(values):
            present = True
            if not np.all(np.mod(values, 1) == 0):
                return False
    return present


# -- the streamed dataset ------------------------------------------------------------------------
def open_stream(name_or_path: str, *, rows: int | None = None, chunk_rows: int = 65536) -> "StreamingDataset":
    """Read, check and split a data YAML's file chunk by chunk; see the module docstring."""
    from .registry import _resolve

    kind, target = _resolve(name_or_path)
    if kind != "yaml":
        raise DataError(f"'{name_or_path}' cannot be streamed: streaming reads the CSV or Parquet file of a data YAML",
                        key="stream", hint="describe the file with a data YAML and pass it with --data, or "
                        "train without --stream (built-in datasets are read into memory)")
    if rows is not None and rows < 1:
        raise DataError(f"rows must be a positive integer, got {rows}", key="rows")
    return StreamingDataset(target, rows=rows, chunk_rows=chunk_rows)


class StreamingDataset:
    """A data YAML's rows, checked and split, kept per split in Arrow files on disk.

    Answers what ``Dataset`` answers without holding the rows: ``spec``, ``source``, ``meta``,
    ``counts()``, ``len()``; ``frames(split)`` yields the converted rows one batch at a time.
    """

    streaming = True

    def __init__(self, yaml_file: str, *, rows: int | None = None, chunk_rows: int = 65536):
        from . import files

        m, doc = files.read_yaml(yaml_file)
        for key in ("histories", "counts", "sequences", "multi"):
            if getattr(m, key):
                # a history built chunk by chunk must carry each key's tail across chunks
                # (composer.data.histories.HistoryState does); the chunk cache and the one-pass
                # fit do not hold list columns yet, so refuse rather than build per-chunk histories
                raise DataError(f"streaming does not read '{key}' yet", location=doc.location((key,)),
                                key=key, hint="train in memory (drop --stream / training.stream)")
        self.spec = files._spec(m, yaml_file)
        source = files.source_path(m, yaml_file)
        self.source = str(source)
        self.meta_delimiter = files.delimiter(m, source)
        self.chunk_rows = int(chunk_rows)
        try:
            self.kind = check_path(self.source)
        except DataError as exc:
            if "no such file" in exc.message:
                exc.hint = f"'source: {m.source}' is relative to the data YAML ({doc.file}); {exc.hint}"
                exc.args = (exc.render(),)
            raise
        self.cache = Path(tempfile.mkdtemp(prefix="composer-stream-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.cache), True)
        try:
            rule = self._scan(m, doc, rows)
        except BaseException:
            self.close()
            raise
        self.meta = {"split": rule, "missing_labels": m.missing_labels, "yaml": str(yaml_file),
                     "stream": {"chunk_rows": self.chunk_rows, "cache": str(self.cache)}}

    # -- the one pass over the file --------------------------------------------------------------
    def _scan(self, m, doc, rows) -> str:
        from . import files

        declared = files._declarations(m)
        if self.kind == "csv":
            header, trailing = _csv_header(self.source, files.delimiter(m, Path(self.source)))
            _require(self.source, header, "csv", declared, doc)
            try:
                return self._write(_csv_chunks(self.source, m, header, self.chunk_rows, rows, True, trailing),
                                   m, doc)
            except _TypedNumbersFailed:  # read as text, so the bad cell is reported as in memory
                return self._write(_csv_chunks(self.source, m, header, self.chunk_rows, rows, False, trailing),
                                   m, doc)
        chunks = _parquet_chunks(self.source, m, self.chunk_rows, rows)
        first = next(chunks, None)
        if first is not None:
            _require(self.source, first.header, "parquet", declared, doc)
        return self._write(_chained(first, chunks), m, doc)

    def _write(self, chunks, m, doc) -> str:
        import pyarrow as pa

        from . import files

        for path in self.cache.glob("*.arrow"):
            path.unlink()
        writers, sinks, schema = {}, [], None
        pending = {name: [] for name in SPLITS}  # a split's rows wait until they fill a chunk
        self._counts = {s: 0 for s in SPLITS}
        rule = None

        def flush(name):
            if name not in writers:
                sink = pa.OSFile(str(self.cache / f"{name}.arrow"), "wb")
                sinks.append(sink)
                writers[name] = pa.ipc.new_stream(sink, schema)
            writers[name].write_table(pa.concat_tables(pending[name]).combine_chunks())
            pending[name] = []

        scenarios = None
        if m.scenario_values is not None:  # the data YAML's own set, blueprint or not
            scenarios = ScenarioCheck(None, self.source, self.kind, self.meta_delimiter, column=m.scenario,
                                      declared=m.scenario_values, hint=files.scenario_values_hint(doc))
        try:
            for table in chunks:
                frame, split, rule = files.convert(table, m, doc)
                frame[ROW] = np.arange(table.offset, table.offset + len(frame), dtype=np.int64)
                if scenarios is not None:
                    scenarios.add(frame[m.scenario], frame[ROW].to_numpy())
                if schema is None:
                    schema = _cache_schema(frame, m)
                typed = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
                for name in SPLITS:
                    keep = split == name
                    if not keep.any():
                        continue
                    pending[name].append(typed.filter(pa.array(keep)))
                    self._counts[name] += int(keep.sum())
                    if sum(t.num_rows for t in pending[name]) >= self.chunk_rows:
                        flush(name)
            for name in SPLITS:
                if pending[name]:
                    flush(name)
        finally:
            for writer in writers.values():
                writer.close()
            for sink in sinks:
                sink.close()
        if scenarios is not None:
            scenarios.raise_if_bad()
        if sum(self._counts.values()) == 0:
            if self.kind == "csv":
                raise DataError("the file has a header but no data rows", location=Location(self.source, 2),
                                hint="add one row per line below the header")
            raise DataError("the file has columns but no data rows", location=Location(self.source))
        return rule

    # -- what a Dataset answers ------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def __len__(self) -> int:
        return sum(self._counts.values())

    def frames(self, split: str, columns=None):
        """The rows of one split, in file order, one pandas DataFrame per cached batch."""
        import pyarrow as pa

        path = self.cache / f"{split}.arrow"
        if not path.exists():
            return
        with pa.OSFile(str(path), "rb") as source:
            for batch in pa.ipc.open_stream(source):
                if columns is not None:
                    batch = batch.select(list(columns))
                yield batch.to_pandas()

    def head(self, split: str, n: int) -> pd.DataFrame:
        """The first ``n`` rows of a split."""
        parts, got = [], 0
        for frame in self.frames(split):
            parts.append(frame.head(n - got))
            got += len(parts[-1])
            if got >= n:
                break
        return pd.concat(parts, ignore_index=True).drop(columns=[ROW]) if parts else pd.DataFrame()

    def fit_preprocessor(self, categorical, numeric, min_count: int = 1, scenario=None):
        """``Preprocessor.fit`` on the train split, in one pass over its rows; with a scenario,
        every split's scenario values are checked too (as the in-memory path checks them)."""
        fit = StreamFit(categorical, numeric, min_count, scenario)
        for frame in self.frames("train", columns=list(dict.fromkeys([*categorical, *numeric]))):
            fit.add(frame)
        pre = fit.result()
        if scenario is not None:
            check = ScenarioCheck(pre, self.source, self.kind, self.meta_delimiter)
            for split in SPLITS:
                for frame in self.frames(split, columns=[scenario[0], ROW]):
                    check.add(frame[scenario[0]], frame[ROW].to_numpy())
            check.raise_if_bad()
        return pre

    def close(self) -> None:
        self._finalizer()


def _chained(first, rest):
    if first is not None:
        yield first
        yield from rest


def _require(source: str, header: list[str], kind: str, declared: dict, doc) -> None:
    probe = Table(pd.DataFrame(columns=header), source, header, kind)
    probe.require(declared, lambda col: doc.location(declared[col]))


def _cache_schema(frame: pd.DataFrame, m):
    import pyarrow as pa

    numeric, labels = set(m.numeric), set(m.labels.values())
    fields = []
    for col in frame.columns:
        if col == ROW or col in labels:
            kind = pa.int64()
        elif col in numeric:
            kind = pa.float32()
        else:
            kind = pa.string()
        fields.append(pa.field(col, kind))
    return pa.schema(fields)


# -- fitting in one pass -------------------------------------------------------------------------
class Moments:
    """Count, mean and central moment sums M2, M3 of a stream of numbers, merged chunk by chunk
    with the pairwise update (Chan, Golub and LeVeque 1979; third moment: Pébay 2008)."""

    def __init__(self):
        self.n, self.mean, self.m2, self.m3 = 0, 0.0, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        nb = len(x)
        if nb == 0:
            return
        mb = float(x.mean())
        d = x - mb
        m2b, m3b = float((d * d).sum()), float((d * d * d).sum())
        na = self.n
        if na == 0:
            self.n, self.mean, self.m2, self.m3 = nb, mb, m2b, m3b
            return
        n = na + nb
        delta = mb - self.mean
        self.m3 += m3b + delta ** 3 * na * nb * (na - nb) / n ** 2 + 3 * delta * (na * m2b - nb * self.m2) / n
        self.m2 += m2b + delta ** 2 * na * nb / n
        self.mean += delta * nb / n
        self.n = n

    def variance(self) -> float:
        return self.m2 / self.n

    def skew(self) -> float:
        """pandas' ``Series.skew``: the adjusted Fisher-Pearson coefficient G1."""
        n = self.n
        if n < 3:
            return float("nan")
        m2, m3 = self.m2 / n, self.m3 / n
        if m2 <= 1e-14 * max(self.mean * self.mean, 1e-300):
            return 0.0
        return math.sqrt(n * (n - 1)) / (n - 2) * m3 / m2 ** 1.5


class StreamFit:
    """``Preprocessor.fit`` over chunks of the train rows: ``add`` each, then ``result``."""

    COMPACT_EVERY = 32  # merge the per-chunk value counts after this many chunks

    def __init__(self, categorical, numeric, min_count=1, scenario=None):
        self.categorical, self.numeric = list(categorical), list(numeric)
        self.min_count, self.scenario = min_count, scenario
        self.counts = {name: [] for name in self.categorical}
        self.raw = {name: Moments() for name in self.numeric}
        self.logs = {name: Moments() for name in self.numeric}
        self.low = {name: math.inf for name in self.numeric}

    def add(self, frame: pd.DataFrame) -> None:
        from .preprocess import as_text

        for name in self.categorical:
            parts = self.counts[name]
            parts.append(as_text(frame[name]).dropna().value_counts(sort=False))
            if len(parts) >= self.COMPACT_EVERY:
                self.counts[name] = [_merge(parts)]
        for name in self.numeric:
            col = pd.to_numeric(frame[name], errors="raise").astype("float64").to_numpy()
            present = col[~np.isnan(col)]
            if not len(present):
                continue
            self.raw[name].add(present)
            self.low[name] = min(self.low[name], float(present.min()))
            if self.low[name] >= 0:  # log1p is only ever chosen for non-negative columns
                self.logs[name].add(np.log1p(present))

    def result(self):
        from .preprocess import SKEW_FOR_LOG, Preprocessor, admission_counts

        pre = Preprocessor(min_count=self.min_count)
        if self.scenario is not None:
            pre.scenario = {"column": self.scenario[0], "values": list(self.scenario[1])}
        for name in self.categorical:
            counts = _merge(self.counts[name])
            pre.admission[name] = admission_counts(counts, [name], self.min_count, None)  # as in-memory fit
            counts = counts[counts >= self.min_count]
            order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            pre.vocabularies[name] = [str(k) for k, _ in order]
        for name in self.numeric:
            raw = self.raw[name]
            use_log = bool(raw.n and self.low[name] >= 0 and raw.skew() > SKEW_FOR_LOG)
            moments = self.logs[name] if use_log else raw
            mean = moments.mean if moments.n else 0.0
            var = moments.variance() if moments.n > 1 else 1.0
            pre.numeric[name] = {"mean": float(mean), "variance": float(var) if var > 1e-12 else 1.0,
                                 "log1p": use_log}
        return pre


def _merge(parts: list) -> pd.Series:
    if not parts:
        return pd.Series([], dtype="int64")
    if len(parts) == 1:
        return parts[0]
    return pd.concat(parts).groupby(level=0, sort=False).sum()


class ScenarioCheck:
    """``Preprocessor.encode_scenario``'s check over chunks: the values outside the declared set,
    how many rows carry each, and the first such row of the file (its line, for a CSV)."""

    def __init__(self, pre, source: str, kind: str = "csv", delimiter: str = ",", *, column=None,
                 declared=None, hint=None):
        self.column = column if column is not None else pre.scenario["column"]
        self.declared = list(declared if declared is not None else pre.scenario["values"])
        self.source, self.kind, self.delimiter, self.hint = source, kind, delimiter, hint
        self.bad: list[pd.Series] = []
        self.first: int | None = None

    def add(self, values: pd.Series, rows: np.ndarray) -> None:
        from .preprocess import as_text

        text = as_text(values)
        bad = pd.Index(self.declared, dtype="string").get_indexer(text) < 0
        if bad.any():
            self.bad.append(text[bad].fillna("<missing>").value_counts())
            first = int(rows[np.flatnonzero(bad)[0]])
            self.first = first if self.first is None else min(self.first, first)

    def raise_if_bad(self) -> None:
        if not self.bad:
            return
        from .preprocess import scenario_error

        counts = _merge(self.bad).sort_values(ascending=False, kind="stable")
        location, where = locate_row(self.source, self.kind, self.delimiter, self.first)
        raise scenario_error(self.column, self.declared, counts, location, where, self.hint)
