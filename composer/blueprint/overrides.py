"""``--set KEY=VALUE``: change any blueprint setting from the command line.

The override is applied to the YAML document's data before the schema sees it, so an
overridden value is checked exactly like one written in the file; its errors name the
override (``Document.overrides``) instead of a file position.
"""
from __future__ import annotations

import re

from .errors import BlueprintError, Location, did_you_mean
from .loader import Document, load_text, path_text

_NAME = r"[^.\[\]\s=]+"
_KEY = re.compile(rf"(?:{_NAME}|\[\d+\])(?:\.{_NAME}|\[\d+\])*")
_PART = re.compile(rf"({_NAME})|\[(\d+)\]")
_KIND = {"str": "a string", "int": "a number", "float": "a number", "bool": "a boolean",
         "NoneType": "null", "list": "a list", "dict": "a mapping"}


class Override:
    """One ``KEY=VALUE``: the dotted key as parts (``features[0].dim`` -> ``features``, 0,
    ``dim``; a digit part like ``features.0`` stays text and is an index where it meets a list)
    and the value parsed as YAML (a scalar or a flow list / mapping)."""

    def __init__(self, text: str):
        self.text = text
        key, eq, value = text.partition("=")
        key = key.strip()
        if not eq or not key:
            raise self.error("expected KEY=VALUE", "e.g. --set training.epochs=5 or --set blocks.moe.experts=8")
        if not _KEY.fullmatch(key):
            raise self.error(f"'{key}' is not a dotted key",
                             "join keys with '.' and write list items as [0] or .0, e.g. features[0].dim")
        self.parts = [int(index) if index else name for name, index in _PART.findall(key)]
        self.value = self._parse(value)

    def error(self, message, hint=None) -> BlueprintError:
        return BlueprintError(message, location=Location(f"--set {self.text}"), hint=hint)

    def _parse(self, value: str):
        if not value.strip():
            return None  # like an empty value in YAML
        try:
            return load_text(value, self.text).data
        except BlueprintError as exc:
            message = exc.message.removeprefix("YAML syntax error: ")
            raise self.error(f"the value is not valid YAML: {message}", exc.hint) from None


def apply_overrides(doc: Document, sets, model) -> Document:
    """Write every ``--set`` into ``doc.data``, in order (a later one wins)."""
    if not isinstance(doc.data, dict):
        return doc  # check_document reports the top level
    for text in sets or ():
        _apply(doc, Override(text), model)
    return doc


def _apply(doc: Document, ov: Override, model) -> None:
    from .validate import _model_at

    node, path = doc.data, ()
    for i, part in enumerate(ov.parts):
        last = i == len(ov.parts) - 1
        if isinstance(node, list):
            index = _index(node, part, path, ov)
            if last:
                node[index] = ov.value
            path += (index,)
            node = node[index] if not last else None
            continue
        if not isinstance(node, dict):
            what = _KIND.get(type(node).__name__, "a value")
            shown = f"[{part}]" if isinstance(part, int) or part.isdigit() else f"'{part}'"
            raise ov.error(f"{path_text(path)} is {what}, not a mapping or list, so it has no {shown}",
                           f"set it whole: --set {path_text(path)}=VALUE")
        key = _key(node, part)
        if isinstance(part, int) and key not in node:
            raise ov.error(f"{path_text(path)} is a mapping, not a list, so it has no item [{part}]",
                           did_you_mean(str(part), node, what="its keys"))
        if key not in node and not last:
            if _model_at(model, path, doc.data) is None or isinstance(ov.parts[i + 1], int):
                raise ov.error(f"{doc.file} has no {path_text(path + (key,))}",
                               did_you_mean(key, node, what=f"keys of {path_text(path)}"))
            node[key] = {}  # a section the file leaves out (e.g. training:); the schema checks the key
            _own(doc, path + (key,), ov)
        if last:
            node[key] = ov.value
        path += (key,)
        node = node[key]
    _own(doc, path, ov)


def _key(node: dict, part):
    """``loss.weights.0`` may name an integer key; otherwise a part is its text."""
    if isinstance(part, str) and part not in node and part.isdigit() and int(part) in node:
        return int(part)
    return part


def _index(node: list, part, path, ov) -> int:
    if isinstance(part, str) and not part.isdigit():
        named = [i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == part]
        hint = (f"{path_text(path + (named[0],))} is '{part}'" if named
                else f"items count from 0: {path_text(path)}[0] .. [{len(node) - 1}]" if node
                else "the list is empty")
        raise ov.error(f"{path_text(path)} is a list, so '{part}' must be an index", hint)
    index = int(part)
    if index >= len(node):
        raise ov.error(f"{path_text(path)} has {len(node)} item(s), so [{index}] does not exist",
                       f"items count from 0: [0] .. [{len(node) - 1}]" if node else "the list is empty")
    return index


def _own(doc: Document, path: tuple, ov: Override) -> None:
    """``path`` and everything below it now come from ``ov``, not from the file."""
    for owned in [p for p in doc.overrides if p[:len(path)] == path]:
        del doc.overrides[owned]
    doc.overrides[path] = ov.text
