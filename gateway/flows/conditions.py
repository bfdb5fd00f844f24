"""A small, safe expression language for the `if:` of survey rules (never Python eval).

    value <= 6 and language in ["fa", "ar"]
    answers.resolved == false or not (context.tier == "gold")

Names: value, language, channel, answers.<question_id>, context.<key>. An absent name is null.
Ordering comparisons between different types (or with null) are false, never an error, and
booleans are never numbers. A bare name or literal holds only when it is `true`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_LENGTH = 1000
MAX_NESTING = 32
ROOTS = ("value", "language", "channel")
SCOPES = {"answers": "question id", "context": "key"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]*)*")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"-?[0-9]+")
_WORDS = {"and", "or", "not", "in", "true", "false", "null"}
_CONSTANTS: dict[str, object] = {"true": True, "false": False, "null": None}
_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_COMPARE = ("==", "!=", *_ORDER)


class ConditionError(ValueError):
    """A syntax error in a condition, at a 1-based column of its source."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column


@dataclass(frozen=True)
class Const:
    """A literal: int, str, bool or None."""

    value: object
    column: int = field(default=0, compare=False)  # 1-based in the source; 0 if unknown


@dataclass(frozen=True)
class Name:
    """A dotted name looked up in the environment."""

    path: str
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    """Logical negation."""

    operand: Node


@dataclass(frozen=True)
class Logic:
    """`and` / `or` of two operands."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Compare:
    """One comparison: == != < <= > >=."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Member:
    """`item in [...]`, or `item not in [...]` when negated."""

    negated: bool
    item: Node
    options: tuple[object, ...]
    columns: tuple[int, ...] = field(default=(), compare=False)  # where each option is


Node = Const | Name | Not | Logic | Compare | Member


class Expression:
    """A parsed condition: satisfies model.Condition and lists the names it reads."""

    __slots__ = ("names", "node", "source")

    def __init__(self, source: str, node: Node) -> None:
        self.source = source
        self.node = node
        self.names = frozenset(_names(node))

    def evaluate(self, env: Mapping[str, object]) -> bool:
        """True when the condition holds for env (a flat map of dotted names to values)."""
        return _value(self.node, env) is True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.node == self.node

    def __hash__(self) -> int:
        return hash(self.node)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def parse(source: str) -> Expression:
    """Parse a condition; raise ConditionError with a 1-based column on any syntax error."""
    if len(source) > MAX_LENGTH:
        raise ConditionError(f"condition is longer than {MAX_LENGTH} characters", 1)
    return Expression(source, _Parser(source).parse())


# Evaluation


def _kind(value: object) -> str:
    if value is None or isinstance(value, bool | str):
        return type(value).__name__
    return "number" if isinstance(value, int | float) else "other"


def _equal(left: object, right: object) -> bool:
    return _kind(left) == _kind(right) and left == right


def _compare(op: str, left: object, right: object) -> bool:
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    kind = _kind(left)
    if kind != _kind(right) or kind not in ("number", "str"):
        return False
    return bool(_ORDER[op](left, right))


def _value(node: Node, env: Mapping[str, object]) -> object:
    match node:
        case Const(value):
            return value
        case Name(path):
            return env.get(path)
        case Not(operand):
            return _value(operand, env) is not True
        case Logic("and", left, right):
            return _value(left, env) is True and _value(right, env) is True
        case Logic(_, left, right):
            return _value(left, env) is True or _value(right, env) is True
        case Compare(op, left, right):
            return _compare(op, _value(left, env), _value(right, env))
        case Member(negated, item, options):
            found = any(_equal(_value(item, env), option) for option in options)
            return found is not negated
    raise AssertionError(node)  # pragma: no cover


def _names(node: Node) -> Iterator[str]:
    match node:
        case Name(path):
            yield path
        case Not(operand):
            yield from _names(operand)
        case Logic(_, left, right) | Compare(_, left, right):
            yield from _names(left)
            yield from _names(right)
        case Member(_, item, _):
            yield from _names(item)


# Tokens and parsing


@dataclass(frozen=True)
class _Token:
    kind: str  # "int", "str", "name", "word", "op", "end"
    text: str
    column: int
    value: object = None

    def describe(self) -> str:
        return "the end" if self.kind == "end" else repr(self.text)


def _tokens(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(source):
        ch, column = source[i], i + 1
        if ch.isspace():
            i += 1
        elif source.startswith(("==", "!=", "<=", ">="), i):
            tokens.append(_Token("op", source[i : i + 2], column))
            i += 2
        elif ch in "()[],<>":
            tokens.append(_Token("op", ch, column))
            i += 1
        elif ch in "=!":
            hint = "use == to compare" if ch == "=" else "use 'not' or !="
            raise ConditionError(f"unexpected {ch!r}; {hint}", column)
        elif ch in "'\"":
            token = _string(source, i)
            tokens.append(token)
            i += len(token.text)
        elif (match := _INT.match(source, i)) is not None:
            text = match.group()
            if re.fullmatch(r"-?0[0-9]+", text):
                raise ConditionError(f"{text} has a leading zero; write {int(text)}", column)
            tokens.append(_Token("int", text, column, int(text)))
            i = match.end()
        elif (match := _NAME.match(source, i)) is not None:
            text = match.group()
            tokens.append(_Token("word" if text in _WORDS else "name", text, column))
            i = match.end()
        elif ch.isdigit():
            raise ConditionError(f"use ASCII digits 0-9, not {ch!r}", column)
        else:
            raise ConditionError(f"unexpected character {ch!r}", column)
    tokens.append(_Token("end", "", len(source) + 1))
    return tokens


def _string(source: str, start: int) -> _Token:
    quote, chars, i = source[start], [], start + 1
    while i < len(source):
        ch = source[i]
        if ch == "\\" and source[i + 1 : i + 2] in (quote, "\\"):
            chars.append(source[i + 1])
            i += 2
        elif ch == quote:
            return _Token("str", source[start : i + 1], start + 1, "".join(chars))
        else:
            chars.append(ch)
            i += 1
    raise ConditionError("string is not closed", start + 1)


def _check_name(token: _Token, compared: bool = False) -> str:
    root, *rest = token.text.split(".")
    if root in ROOTS and not rest:
        return token.text
    if root in ROOTS:
        raise ConditionError(f"{root} has no fields; write just {root}", token.column)
    if root in SCOPES:
        if len(rest) == 1 and _IDENT.fullmatch(rest[0]):
            return token.text
        raise ConditionError(f"write {root}.<{SCOPES[root]}>", token.column)
    names = "value, language, channel, answers.<question id>, context.<key>"
    hint = ""
    if token.text.lower() in _CONSTANTS:
        hint = f"; write {token.text.lower()} in lower case"
    elif compared and not rest:
        hint = f"; to compare with text, quote it: '{token.text}'"
    raise ConditionError(f"unknown name {root!r}{hint}; use one of {names}", token.column)


class _Parser:
    """Recursive descent: or > and > not > comparison > operand."""

    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.index = 0
        self.nesting = 0

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def at(self, text: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind in ("word", "op") and token.text == text

    def expect(self, text: str, context: str) -> None:
        if not self.at(text):
            token = self.peek()
            raise ConditionError(
                f"expected {text!r} {context}, found {token.describe()}", token.column
            )
        self.index += 1

    def parse(self) -> Node:
        node = self.either()
        token = self.peek()
        if token.kind != "end":
            message = f"expected 'and', 'or' or the end, found {token.describe()}"
            raise ConditionError(message, token.column)
        return node

    def either(self) -> Node:
        node = self.both()
        while self.at("or"):
            self.take()
            node = Logic("or", node, self.both())
        return node

    def both(self) -> Node:
        node = self.negation()
        while self.at("and"):
            self.take()
            node = Logic("and", node, self.negation())
        return node

    def negation(self) -> Node:
        if self.at("not"):
            self.take()
            return Not(self.negation())
        return self.comparison()

    def comparison(self) -> Node:
        left = self.operand()
        node: Node
        if self.peek().kind == "op" and self.peek().text in _COMPARE:
            node = Compare(self.take().text, left, self.operand(compared=True))
        elif self.at("in"):
            self.take()
            node = Member(False, left, *self.options())
        elif self.at("not") and self.at("in", 1):
            self.index += 2
            node = Member(True, left, *self.options())
        else:
            return left
        token = self.peek()
        if (
            (token.kind == "op" and token.text in _COMPARE)
            or self.at("in")
            or (self.at("not") and self.at("in", 1))
        ):
            message = "chained comparisons are not supported; join them with 'and'"
            raise ConditionError(message, token.column)
        return node

    def operand(self, compared: bool = False) -> Node:
        token = self.take()
        if token.kind in ("int", "str"):
            return Const(token.value, token.column)
        if token.kind == "word" and token.text in _CONSTANTS:
            return Const(_CONSTANTS[token.text], token.column)
        if token.kind == "name":
            return Name(_check_name(token, compared), token.column)
        if token.kind == "op" and token.text == "(":
            self.nesting += 1
            if self.nesting > MAX_NESTING:
                raise ConditionError(f"more than {MAX_NESTING} nested parentheses", token.column)
            node = self.either()
            self.expect(")", f"to close the '(' at column {token.column}")
            self.nesting -= 1
            return node
        message = f"expected a value, a name or '(', found {token.describe()}"
        raise ConditionError(message, token.column)

    def options(self) -> tuple[tuple[object, ...], tuple[int, ...]]:
        self.expect("[", "after 'in'")
        options: list[object] = []
        columns: list[int] = []
        while not self.at("]"):
            token = self.take()
            columns.append(token.column)
            if token.kind in ("int", "str"):
                options.append(token.value)
            elif token.kind == "word" and token.text in _CONSTANTS:
                options.append(_CONSTANTS[token.text])
            else:
                kinds = "numbers, strings, true, false or null"
                message = f"list items must be {kinds}, found {token.describe()}"
                if token.kind == "name" and token.text.split(".")[0] not in (*ROOTS, *SCOPES):
                    message += f"; to use text, quote it: '{token.text}'"
                raise ConditionError(message, token.column)
            if not self.at(","):
                break
            self.take()
        self.expect("]", "to close the list")
        return tuple(options), tuple(columns)
