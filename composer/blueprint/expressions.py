"""The two small expression languages of a blueprint, parsed to one immutable AST.

Probability expressions chain task probabilities, as ESMM (Ma et al., SIGIR 2018) and ESM2
(Wen et al., SIGIR 2020) do: ``ctr * cvr``, ``y1 * (y2 * y3 + (1 - y2) * y4)``. They have
numbers, names, ``+ - *``, unary minus and parentheses; ``*`` binds tighter than ``+ -``, all
left-associative; division is refused (dividing by a probability is unstable).

Label expressions derive labels and masks from 0/1 label columns: ``click & buy``,
``!(cart | wish)``, ``click == 1 & buy != 1``. They have names, ``&``, ``|``, ``!`` (or ``not``),
parentheses and comparisons ``name == 0|1`` / ``name != 0|1``; precedence ``!`` > ``&`` > ``|``.

Example:
    >>> e = parse_probability("y1 * (y2 * y3 + (1 - y2) * y4)")
    >>> e.names()
    ['y1', 'y2', 'y3', 'y4']
    >>> evaluate(e, {"y1": 0.5, "y2": 0.5, "y3": 0.25, "y4": 0.75}, PYTHON_OPS)
    0.25

The tokenizer and Pratt parser are hand-rolled: user text must never reach ``eval``, and every
error must point at its column. ``evaluate`` takes the array operations as an argument (the
``numpy`` module, ``keras.ops`` or ``PYTHON_OPS``), so this module stays pure Python and runs
at validate time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .errors import BlueprintError, Location, did_you_mean

__all__ = [
    "Expr", "Num", "Name", "Unary", "Binary", "ExpressionError", "PythonOps", "PYTHON_OPS",
    "parse_probability", "parse_label", "check_names", "evaluate", "to_text", "MAX_DEPTH",
]

# Deeper expressions are refused: no blueprint needs them, and recursion must stay bounded.
MAX_DEPTH = 200


class ExpressionError(BlueprintError):
    """A malformed expression or an unknown name in one.

    ``offset`` is the 0-based position of the problem inside ``text``; the location's column is
    the expression's starting column plus ``offset``.
    """

    def __init__(self, message: str, *, offset: int = 0, text: str | None = None,
                 location: Location | None = None, key: str | None = None,
                 hint: str | None = None):
        self.offset = offset
        self.text = text
        super().__init__(message, location=location, key=key, hint=hint)


# ---------------------------------------------------------------------------------------------
# AST

class Expr:
    """Base of the AST nodes. Equality and hashing ignore ``offset`` (the position in the text),
    so ``parse(to_text(e)) == e``."""

    def names(self) -> list[str]:
        """Referenced names, each once, in order of first appearance in the text."""
        return list(dict.fromkeys(n.id for n in self.name_nodes()))

    def name_nodes(self) -> list["Name"]:
        """Every Name node in text order, repeats included."""
        out, stack = [], [self]
        while stack:
            node = stack.pop()
            if isinstance(node, Name):
                out.append(node)
            elif isinstance(node, Unary):
                stack.append(node.operand)
            elif isinstance(node, Binary):
                stack.extend((node.right, node.left))
        return out

    def __str__(self) -> str:
        return to_text(self)


@dataclass(frozen=True)
class Num(Expr):
    """A non-negative number literal (the parser turns ``-1`` into ``Unary('-', Num(1))``)."""
    value: int | float
    offset: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Name(Expr):
    """A task probability or a label column."""
    id: str
    offset: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Unary(Expr):
    """``-`` (negation of a number) or ``!`` (logical not)."""
    op: str
    operand: Expr
    offset: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Binary(Expr):
    """``+ - *`` (probabilities) or ``& | == !=`` (labels)."""
    op: str
    left: Expr
    right: Expr
    offset: int = field(default=0, compare=False, repr=False)


# Binding strength, shared by the parser and to_text (the two languages use disjoint operators).
_BINARY_PREC = {"+": 1, "-": 1, "*": 2, "|": 1, "&": 2, "==": 4, "!=": 4}
_UNARY_PREC = 3
_ATOM_PREC = 5


# ---------------------------------------------------------------------------------------------
# Tokens

@dataclass(frozen=True)
class _Language:
    what: str
    symbols: tuple[str, ...]  # operator tokens, longest first
    binary: frozenset[str]
    prefix: Mapping[str, str]  # token text -> the Unary op it builds
    keywords: frozenset[str]  # words that are operators, not names
    numbers_are_operands: bool  # False: a number may only follow == or !=
    valid: str


_PROBABILITY = _Language(
    what="probability expression", symbols=("+", "-", "*", "(", ")"),
    binary=frozenset("+-*"), prefix={"-": "-"}, keywords=frozenset(),
    numbers_are_operands=True,
    valid="valid: names, numbers, + - * and parentheses, e.g. 'y1 * (1 - y2)'")
_LABEL = _Language(
    what="label expression", symbols=("==", "!=", "&", "|", "!", "(", ")"),
    binary=frozenset({"&", "|", "==", "!="}), prefix={"!": "!", "not": "!"},
    keywords=frozenset({"not"}), numbers_are_operands=False,
    valid="valid: names, & (and), | (or), ! or not, name == 0|1, name != 0|1 and parentheses")

_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOOKALIKES = {"\u2212": "-", "\u2013": "-", "\u00d7": "*", "\u00b7": "*", "\u2227": "&",
               "\u2228": "|", "\u00ac": "!"}


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "num", "op", "end" or "bad"
    text: str
    offset: int
    value: Any = None  # a number's value; a bad token's (message, hint)


def _tokenize(text: str, lang: _Language) -> list[_Token]:
    """Tokens up to the end or up to the first bad character, which becomes a "bad" token so
    that the parser reports problems left to right."""
    tokens, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        m = _NUMBER.match(text, i)
        if m:
            t = m.group()
            value = int(t) if t.isdigit() else float(t)
            tokens.append(_Token("num", t, i, value))
            i = m.end()
            continue
        m = _NAME.match(text, i)
        if m:
            kind = "op" if m.group() in lang.keywords else "name"
            tokens.append(_Token(kind, m.group(), i, None))
            i = m.end()
            continue
        if ch in "&|" and text.startswith(ch * 2, i) and ch in lang.symbols:
            tokens.append(_Token("bad", ch * 2, i,
                                 (f"'{ch * 2}' is not an operator", f"use a single '{ch}'")))
            return tokens
        symbol = next((s for s in lang.symbols if text.startswith(s, i)), None)
        if symbol:
            tokens.append(_Token("op", symbol, i))
            i += len(symbol)
            continue
        tokens.append(_Token("bad", ch, i, _bad_character(ch, lang)))
        return tokens
    tokens.append(_Token("end", "", n))
    return tokens


def _bad_character(ch: str, lang: _Language) -> tuple[str, str]:
    if ch == "/" and lang is _PROBABILITY:
        return ("division is not allowed: division by a probability is unstable",
                "write the chain with * + - only, e.g. 'ctr * cvr'")
    shown = repr(ch) if ch.isascii() else f"{ch!r} (U+{ord(ch):04X})"
    like = _LOOKALIKES.get(ch) or ("==" if ch == "=" else None)
    if like and like in lang.symbols:
        return f"unexpected character {shown}", f"did you mean '{like}'?"
    return f"unexpected character {shown} in a {lang.what}", lang.valid


# ---------------------------------------------------------------------------------------------
# Parser

@dataclass(frozen=True)
class _Source:
    text: str | None
    file: str
    line: int | None
    column: int | None
    key: str | None

    def error(self, message: str, offset: int, hint: str | None = None) -> ExpressionError:
        column = None if self.column is None else self.column + offset
        return ExpressionError(message, offset=offset, text=self.text,
                               location=Location(self.file, self.line, column),
                               key=self.key, hint=hint)


class _Parser:
    """Pratt parser: ``expr(p)`` parses operators that bind tighter than ``p``."""

    def __init__(self, source: _Source, lang: _Language):
        self.src = source
        self.lang = lang
        self.tokens = _tokenize(source.text, lang)
        self.i = 0
        self.nesting = 0

    def peek(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind == "bad":
            raise self.src.error(tok.value[0], tok.offset, tok.value[1])
        return tok

    def advance(self) -> _Token:
        tok = self.peek()
        self.i += 1
        return tok

    def previous(self) -> _Token | None:
        return self.tokens[self.i - 1] if self.i else None

    def parse(self) -> Expr:
        if self.peek().kind == "end":
            raise self.src.error(f"empty {self.lang.what}", 0, self.lang.valid)
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "end":  # only ')' stops expr(0) before the end
            raise self.src.error("unmatched ')'", tok.offset, "remove it or add a '(' before")
        _check_depth(node, self.src)
        return node

    def expr(self, min_prec: int) -> Expr:
        left = self.prefix()
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.text in self.lang.binary:
                prec = _BINARY_PREC[tok.text]
                if prec <= min_prec:
                    return left
                self.advance()
                if tok.text in ("==", "!="):
                    left = self.comparison(left, tok)
                else:
                    left = Binary(tok.text, left, self.expr(prec), tok.offset)
            elif tok.kind in ("name", "num") or tok.text == "(" or tok.text in self.lang.prefix:
                raise self.missing_operator(tok)
            else:  # ')' or the end
                return left

    def prefix(self) -> Expr:
        tok = self.peek()
        if tok.kind == "name":
            self.advance()
            return Name(tok.text, tok.offset)
        if tok.kind == "num":
            if not self.lang.numbers_are_operands:
                raise self.src.error(f"a number can only follow '==' or '!=' in a {self.lang.what}",
                                     tok.offset, "write e.g. 'click == 1'")
            self.advance()
            return Num(tok.value, tok.offset)
        if tok.text == "(":
            self.enter(tok)
            self.advance()
            if self.peek().text == ")":
                raise self.src.error("empty parentheses", tok.offset, self.lang.valid)
            if self.peek().kind == "end":
                raise self.src.error("unmatched '('", tok.offset, "close it with ')'")
            inner = self.expr(0)
            if self.peek().text != ")":  # expr(0) stops only at ')' or the end
                raise self.src.error("unmatched '('", tok.offset, "close it with ')'")
            self.advance()
            self.nesting -= 1
            return inner
        if tok.kind == "op" and tok.text in self.lang.prefix:
            self.enter(tok)
            self.advance()
            operand = self.expr(_UNARY_PREC)
            self.nesting -= 1
            return Unary(self.lang.prefix[tok.text], operand, tok.offset)
        raise self.missing_operand(tok)

    def comparison(self, left: Expr, op: _Token) -> Expr:
        if not isinstance(left, Name):
            raise self.src.error(f"only a label name can be compared with '{op.text}'", op.offset,
                                 "write e.g. 'click == 1', or combine with & and |")
        num = self.peek()
        if num.kind != "num":
            where = op.offset if num.kind == "end" else num.offset
            raise self.src.error(f"'{op.text}' must be followed by 0 or 1", where,
                                 f"write e.g. '{left.id} {op.text} 1'")
        if num.value not in (0, 1):
            raise self.src.error(f"a label can only be compared with 0 or 1, not {num.text}",
                                 num.offset, "labels are 0/1 columns")
        self.advance()
        nxt = self.peek()
        if nxt.text in ("==", "!="):
            raise self.src.error("comparisons cannot be chained", nxt.offset,
                                 "join them with & or |")
        return Binary(op.text, left, Num(num.value, num.offset), op.offset)

    def enter(self, tok: _Token) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.src.error(f"expression nested too deeply (more than {MAX_DEPTH} levels)",
                                 tok.offset)

    def missing_operator(self, tok: _Token) -> ExpressionError:
        if tok.kind == "name" and tok.text in ("and", "or") and self.lang is _LABEL:
            op = "&" if tok.text == "and" else "|"
            return self.src.error(f"'{tok.text}' is not an operator", tok.offset, f"use '{op}'")
        prev = self.previous()
        if tok.text == "(" and prev.kind == "name":
            return self.src.error(f"'{prev.text}(' looks like a function call; "
                                  "calls are not allowed", tok.offset, self.lang.valid)
        ops = "& or |" if self.lang is _LABEL else "+, - or *"
        return self.src.error(f"missing operator between '{prev.text}' and '{tok.text}'",
                              tok.offset, f"join operands with {ops}")

    def missing_operand(self, tok: _Token) -> ExpressionError:
        prev = self.previous()
        if tok.kind == "end" or tok.text == ")":
            if prev is None:
                return self.src.error("unmatched ')'", tok.offset, "remove it or add a '(' before")
            return self.src.error(f"missing operand after '{prev.text}'", prev.offset,
                                  self.lang.valid)
        return self.src.error(f"missing operand before '{tok.text}'", tok.offset, self.lang.valid)


def _check_depth(root: Expr, src: _Source) -> None:
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise src.error(f"expression nested too deeply (more than {MAX_DEPTH} levels)",
                            node.offset)
        if isinstance(node, Unary):
            stack.append((node.operand, depth + 1))
        elif isinstance(node, Binary):
            stack.extend(((node.left, depth + 1), (node.right, depth + 1)))


def _parse(text: Any, lang: _Language, file: str, line: int | None, column: int | None,
           key: str | None) -> Expr:
    if not isinstance(text, str):
        src = _Source("", file, line, column, key)
        raise src.error(f"expected a {lang.what} as a string, got {type(text).__name__}", 0,
                        lang.valid)
    return _Parser(_Source(text, file, line, column, key), lang).parse()


def parse_probability(text: str, file: str = "<expression>", line: int | None = 1,
                      column: int | None = 1, key: str | None = None) -> Expr:
    """Parse a probability chain such as ``y1 * (y2 * y3 + (1 - y2) * y4)``.

    ``line`` and ``column`` (1-based) are where the text starts in ``file`` (inside the quotes
    of a quoted YAML value); errors are located at ``column`` + the problem's offset.
    Raises ExpressionError.
    """
    return _parse(text, _PROBABILITY, file, line, column, key)


def parse_label(text: str, file: str = "<expression>", line: int | None = 1,
                column: int | None = 1, key: str | None = None) -> Expr:
    """Parse a label or mask expression such as ``click & !(cart | wish)`` or ``buy == 0``.

    Locations as in parse_probability. Raises ExpressionError.
    """
    return _parse(text, _LABEL, file, line, column, key)


def check_names(expr: Expr, known: Iterable[str], *, what: str = "name",
                file: str = "<expression>", line: int | None = 1, column: int | None = 1,
                key: str | None = None) -> None:
    """Raise ExpressionError at the first name of ``expr`` not in ``known``, with a
    did-you-mean; ``what`` names the kind of thing (e.g. "task", "label column")."""
    known = list(known)
    allowed = set(known)
    for node in expr.name_nodes():
        if node.id not in allowed:
            src = _Source(None, file, line, column, key)  # offsets are into the parsed text
            raise src.error(f"unknown {what} '{node.id}'", node.offset,
                            did_you_mean(node.id, known))


# ---------------------------------------------------------------------------------------------
# Evaluation and printing

class PythonOps:
    """``evaluate``'s operations on plain Python numbers and bools; the ``numpy`` module and
    ``keras.ops`` provide the same names for arrays and tensors."""

    @staticmethod
    def add(a, b):
        return a + b

    @staticmethod
    def subtract(a, b):
        return a - b

    @staticmethod
    def multiply(a, b):
        return a * b

    @staticmethod
    def negative(a):
        return -a

    @staticmethod
    def logical_and(a, b):
        return bool(a) and bool(b)

    @staticmethod
    def logical_or(a, b):
        return bool(a) or bool(b)

    @staticmethod
    def logical_not(a):
        return not a

    @staticmethod
    def equal(a, b):
        return a == b

    @staticmethod
    def not_equal(a, b):
        return a != b


PYTHON_OPS = PythonOps()

_BINARY_OPS = {"+": "add", "-": "subtract", "*": "multiply", "&": "logical_and",
               "|": "logical_or", "==": "equal", "!=": "not_equal"}
_UNARY_OPS = {"-": "negative", "!": "logical_not"}


def evaluate(expr: Expr, env: Mapping[str, Any], ops: Any) -> Any:
    """The value of ``expr`` with names bound by ``env``, computed with ``ops`` (an object
    with add, subtract, multiply, negative, logical_and, logical_or, logical_not, equal and
    not_equal: ``numpy``, ``keras.ops`` or PYTHON_OPS). Numbers stay Python numbers, which
    both libraries broadcast."""
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Name):
        if expr.id not in env:
            raise KeyError(f"expression needs '{expr.id}', which has no value "
                           f"(given: {', '.join(sorted(env)) or 'none'})")
        return env[expr.id]
    if isinstance(expr, Unary):
        return getattr(ops, _UNARY_OPS[expr.op])(evaluate(expr.operand, env, ops))
    if isinstance(expr, Binary):
        fn = getattr(ops, _BINARY_OPS[expr.op])
        return fn(evaluate(expr.left, env, ops), evaluate(expr.right, env, ops))
    raise TypeError(f"not an expression node: {expr!r}")


def _prec(expr: Expr) -> int:
    if isinstance(expr, Binary):
        return _BINARY_PREC[expr.op]
    return _UNARY_PREC if isinstance(expr, Unary) else _ATOM_PREC


def to_text(expr: Expr) -> str:
    """Canonical text with the fewest parentheses; ``parse(to_text(e)) == e`` for parsed ``e``.
    Negation prints as ``!`` (never ``not``)."""
    if isinstance(expr, Num):
        return str(expr.value) if isinstance(expr.value, int) else repr(float(expr.value))
    if isinstance(expr, Name):
        return expr.id
    if isinstance(expr, Unary):
        inner = to_text(expr.operand)
        return f"{expr.op}({inner})" if _prec(expr.operand) < _UNARY_PREC else f"{expr.op}{inner}"
    if isinstance(expr, Binary):
        prec = _BINARY_PREC[expr.op]
        left, right = to_text(expr.left), to_text(expr.right)
        if _prec(expr.left) < prec:
            left = f"({left})"
        if _prec(expr.right) <= prec:  # left-associative: a - (b - c) keeps its parentheses
            right = f"({right})"
        return f"{left} {expr.op} {right}"
    raise TypeError(f"not an expression node: {expr!r}")
