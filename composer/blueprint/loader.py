"""Safe YAML loading that remembers where every key and value came from.

PyYAML's ``compose`` gives nodes with marks but no Python values; we construct the values
ourselves (instead of ``safe_load``) so that we can keep positions, refuse duplicate keys and
unknown tags, and bound alias expansion.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import yaml

from .errors import BlueprintError, Location

MAX_BYTES = 2 * 1024 * 1024  # blueprints are a few KB; refuse before reading a huge file
# Blueprints and data YAMLs hold a few hundred values and nest a few levels. The bounds stop
# PyYAML early (it composes about 60k values a second, recursively) and bound alias expansion.
MAX_NODES = 50_000
MAX_DEPTH = 64

Path = tuple  # a YAML path: keys and list indices from the document root

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp",
}
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class Document:
    """Plain Python data from a YAML file plus the position of every path in it."""

    file: str
    data: object
    values: dict = field(default_factory=dict)  # path -> (line, col) of the value
    keys: dict = field(default_factory=dict)  # path -> (line, col) of the key naming it
    overrides: dict = field(default_factory=dict)  # path -> the `--set KEY=VALUE` that wrote it

    def location(self, path: Path, *, at_key: bool = False) -> Location:
        """The position of ``path``, or of its deepest ancestor that exists; a value written by
        a ``--set`` override has no position in the file: its location names the override."""
        path = tuple(path)
        for n in range(len(path), -1, -1):
            if path[:n] in self.overrides:
                return Location(f"--set {self.overrides[path[:n]]}")
        while True:
            table = self.keys if at_key and path in self.keys else self.values
            if path in table:
                line, col = table[path]
                return Location(self.file, line, col)
            if not path:
                return Location(self.file, 1, 1)
            path = path[:-1]


def path_text(path: Path) -> str:
    """``('blocks', 'x', 'units', 0)`` -> ``blocks.x.units[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


def load_file(file: str) -> Document:
    if os.path.isdir(file):
        raise BlueprintError("is a folder, not a YAML file", location=Location(file),
                             hint="name a .yaml file (composer validate FOLDER checks every .yaml in it)")
    too_big = f"a blueprint must be under {MAX_BYTES // 2**20} MiB"
    try:
        size = os.path.getsize(file)
        if size > MAX_BYTES:
            raise BlueprintError(f"file is {size / 2**20:.1f} MiB; {too_big}", location=Location(file),
                                 hint="is this really a blueprint?")
        with open(file, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)  # not read(): devices and pipes report size 0
    except OSError as exc:
        raise BlueprintError(f"cannot read file: {exc.strerror}", location=Location(file)) from None
    if len(raw) > MAX_BYTES:
        raise BlueprintError(f"file holds more than {MAX_BYTES // 2**20} MiB; {too_big}",
                             location=Location(file), hint="is this really a blueprint?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BlueprintError(f"file is not UTF-8 text ({exc.reason} at byte {exc.start})",
                             location=Location(file)) from None
    return load_text(text, file)


def load_text(text: str, file: str = "<string>") -> Document:
    node = compose(text, file)
    if node is None:
        raise BlueprintError("file is empty", location=Location(file, 1, 1),
                             hint="a blueprint is a mapping with name, features, tasks, blocks and outputs")
    doc = Document(file, None)
    doc.data = _Builder(doc).build(node, ())
    return doc


def compose(text: str, file: str):
    """PyYAML's node tree of ``text`` (None when empty), bounded in size and depth; every YAML
    mistake as a located BlueprintError."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # reads the whole text now: a NUL byte fails here
        return loader.get_single_node()
    except _TooBig as exc:
        raise BlueprintError(exc.message, location=Location(file, exc.mark.line + 1, exc.mark.column + 1),
                             hint=exc.hint) from None
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file, text) from None
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        name = "NUL" if exc.character == 0 else f"U+{exc.character:04X}"
        raise BlueprintError(f"character {name} is not allowed in YAML", location=Location(file, line, col),
                             hint="a blueprint is plain text; remove the character") from None
    except yaml.YAMLError as exc:
        raise BlueprintError(f"YAML error: {exc}", location=Location(file)) from None
    finally:
        if loader is not None:
            loader.dispose()


class _TooBig(Exception):
    def __init__(self, message, hint, mark):
        self.message, self.hint, self.mark = message, hint, mark


class _BoundedLoader(yaml.SafeLoader):
    """Stops composing past MAX_NODES values or MAX_DEPTH levels: PyYAML's composer recurses
    once per level (RecursionError near 300) and would compose a huge flat list whole."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth = 0
        self.composed = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):  # an alias adds no node here (the builder counts expansion)
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        self.composed += 1
        if self.composed > MAX_NODES:
            raise _TooBig(f"the document holds more than {MAX_NODES:,} values",
                          "blueprints and data YAMLs hold a few hundred; is this really one?", mark)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels", "blueprints and data YAMLs nest a few "
                          "levels; look for unbalanced brackets or runaway indentation", mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _line_col(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


_FOUND = {"<block mapping start>": "a key", "?": "a key", "<block sequence start>": "a list item ('-')",
          "-": "a list item ('-')", "<scalar>": "a value"}
_LINE_UP = "keys of one mapping start in one column, and so do the '-' of one list; indent with spaces"


def _syntax_error(exc: yaml.MarkedYAMLError, file: str, text: str = "") -> BlueprintError:
    mark = exc.problem_mark or exc.context_mark
    loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
    problem = exc.problem or "invalid YAML"
    if "'\\t'" in problem or "\t" in problem:
        return BlueprintError("YAML syntax error: a tab character is not allowed here", location=loc,
                              hint="indent YAML with spaces, not tabs")
    said = _in_words(exc, text)
    if said:
        return BlueprintError(said[0], location=loc, hint=said[1])
    if exc.context:
        problem = f"{problem} ({exc.context})"
    return BlueprintError(f"YAML syntax error: {problem}", location=loc, hint="fix the YAML syntax")


def _in_words(exc, text: str) -> tuple[str, str] | None:
    """(message, hint) for PyYAML's words for the usual indentation mistakes, or None."""
    problem, pm, cm = exc.problem or "", exc.problem_mark, exc.context_mark
    if problem.startswith("expected <block end>, but found") and pm and cm:
        found = _FOUND.get(problem.rsplit("found ", 1)[-1].strip("'"), "this")
        what = "list" if "collection" in (exc.context or "") else "mapping"
        return (f"YAML indentation: {found} at column {pm.column + 1} does not line up with the {what} "
                f"above it (the {what} starting at line {cm.line + 1}, column {cm.column + 1})", _LINE_UP)
    lines = text.splitlines()
    if problem != "mapping values are not allowed here" or not pm or pm.line >= len(lines):
        return None
    line = lines[pm.line]
    indent = len(line) - len(line.lstrip(" "))
    head = line[indent:pm.column].strip()
    if ":" in head or head.startswith("-") or not head:
        return (f"YAML syntax error: unexpected ': ' after '{head}'",
                "quote a value that holds ': ' (e.g. description: \"a: b\"); or is a ':' missing before it?")
    above = next((i for i in range(pm.line - 1, -1, -1)
                  if lines[i].strip() and not lines[i].lstrip().startswith("#")), None)
    if above is None:
        return None
    if indent > len(lines[above]) - len(lines[above].lstrip(" ")):
        return (f"YAML indentation: '{head}' is indented more than line {above + 1} above it, so it reads "
                "as the rest of that line's value", f"line '{head}:' up with the keys it belongs with")
    return (f"YAML syntax error: line {above + 1} above is not 'key: value', so it and '{head}' read as "
            "one text", "a missing ':' on that line?")


class _Builder:
    def __init__(self, doc: Document):
        self.doc = doc
        self.count = 0
        self.constructor = yaml.SafeLoader.__new__(yaml.SafeLoader)  # only for scalar conversion
        yaml.constructor.SafeConstructor.__init__(self.constructor)

    def _loc(self, node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def _error(self, node, message, hint=None, path=()):
        line, col = self._loc(node)
        return BlueprintError(message, location=Location(self.doc.file, line, col),
                              key=path_text(path) if path else None, hint=hint)

    def build(self, node, path):
        self.count += 1
        if self.count > MAX_NODES:  # composing stopped at MAX_NODES: aliases expanded the rest
            raise self._error(node, f"anchors and aliases expand the document to more than {MAX_NODES:,} "
                              "values", "aliases repeat anchored values; so many is an alias bomb", path)
        if len(path) > MAX_DEPTH:  # an anchor holding an alias to itself nests without end
            raise self._error(node, f"anchors and aliases nest deeper than {MAX_DEPTH} levels",
                              "an anchored value cannot contain an alias to itself", path[:1])
        self.doc.values.setdefault(path, self._loc(node))
        if isinstance(node, yaml.ScalarNode):
            if node.tag not in _SCALAR_TAGS:
                raise self._tag_error(node, path)
            try:
                return self.constructor.construct_object(node, deep=True)
            except yaml.constructor.ConstructorError as exc:
                raise self._error(node, f"bad value: {exc.problem}", path=path) from None
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise self._tag_error(node, path)
            return [self.build(child, path + (i,)) for i, child in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                raise self._tag_error(node, path)
            return self._mapping(node, path)
        raise self._error(node, "unsupported YAML node", path=path)

    def _tag_error(self, node, path):
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        return self._error(node, f"YAML tag '{tag}' is not allowed",
                           "blueprints are plain data: mappings, lists, strings, numbers, booleans", path)

    def _mapping(self, node, path):
        out: dict = {}
        seen: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged = self.build(value_node, path)
                sources = merged if isinstance(merged, list) else [merged]
                for source in sources:
                    if not isinstance(source, dict):
                        raise self._error(value_node, "'<<' merges only mappings", path=path)
                    for k, v in source.items():
                        out.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_TAGS:
                raise self._error(key_node, "mapping keys must be plain scalars", path=path)
            key = self.constructor.construct_object(key_node)
            if isinstance(key, float) or key is None or isinstance(key, bool):
                key = key_node.value  # 'on', 'null' etc. as keys mean their text
            if key in seen:
                first = seen[key]
                raise self._error(key_node, f"duplicate key '{key}'",
                                  f"first defined at line {first[0]}; each key may appear once",
                                  path + (key,))
            seen[key] = self._loc(key_node)
            self.doc.keys[path + (key,)] = self._loc(key_node)
            out[key] = self.build(value_node, path + (key,))
        return out
