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
MAX_NODES = 200_000  # bounds alias expansion ("billion laughs")

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

    def location(self, path: Path, *, at_key: bool = False) -> Location:
        """The position of ``path``, or of its deepest ancestor that exists."""
        path = tuple(path)
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
    try:
        size = os.path.getsize(file)
    except OSError as exc:
        raise BlueprintError(f"cannot read file: {exc.strerror}", location=Location(file)) from None
    if size > MAX_BYTES:
        raise BlueprintError(
            f"file is {size / 2**20:.1f} MiB; a blueprint must be under {MAX_BYTES // 2**20} MiB",
            location=Location(file), hint="is this really a blueprint?")
    try:
        with open(file, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BlueprintError(f"file is not UTF-8 text ({exc.reason} at byte {exc.start})",
                             location=Location(file)) from None
    return load_text(text, file)


def load_text(text: str, file: str = "<string>") -> Document:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise BlueprintError(f"YAML error: {exc}", location=Location(file)) from None
    if node is None:
        raise BlueprintError("file is empty", location=Location(file, 1, 1),
                             hint="a blueprint is a mapping with name, features, tasks, blocks and outputs")
    doc = Document(file, None)
    doc.data = _Builder(doc).build(node, ())
    return doc


def _syntax_error(exc: yaml.MarkedYAMLError, file: str) -> BlueprintError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    hint = "fix the YAML syntax"
    if "'\\t'" in problem or "\t" in problem:
        problem, hint = "a tab character is not allowed here", "indent YAML with spaces, not tabs"
    elif exc.context:
        problem = f"{problem} ({exc.context})"
    loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
    return BlueprintError(f"YAML syntax error: {problem}", location=loc, hint=hint)


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
        if self.count > MAX_NODES:
            raise self._error(node, f"document expands to more than {MAX_NODES} nodes",
                              "anchors/aliases nest too deeply (an alias bomb?)", path)
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
