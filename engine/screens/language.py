"""The screen expression language: a lark LALR grammar, a typed tree, and its checker.

User text is only ever tokenised and parsed by the grammar below; the tree is checked against
``engine.screens.catalogue`` and evaluated over arrays by ``engine.screens.evaluate``. Nothing of
it reaches ``eval``, attribute access or a template. Every problem is a ``ScreenError`` carrying
the character offset, what was expected there and the nearest names.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from engine.errors import ConfigError
from engine.screens.catalogue import FIELDS, FUNCTIONS, MAX_DEPTH, MAX_LENGTH, MAX_WINDOW, NAMES, Type

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: NOT not_expr -> negation
         | comparison
?comparison: sum (COMP_OP sum)?
?sum: product ((PLUS | MINUS) product)*
?product: unary ((STAR | SLASH) unary)*
?unary: MINUS unary -> minus
      | atom
?atom: NUMBER -> number
     | TRUE -> true
     | FALSE -> false
     | NAME LPAR [or_expr (COMMA or_expr)*] RPAR -> call
     | NAME -> name
     | LPAR or_expr RPAR -> parens
_OR: "or"i
_AND: "and"i
NOT: "not"i
TRUE: "true"i
FALSE: "false"i
COMP_OP: "<=" | ">=" | "==" | "!=" | "<" | ">"
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"
LPAR: "("
RPAR: ")"
COMMA: ","
NAME: /[a-z_][a-z0-9_]*/i
NUMBER: /(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/
%ignore /[ \t\r\n]+/
"""

# What each terminal looks like to a user, in the "expected" list of an error.
SHOWN = {
    "NAME": "a field or function name",
    "NUMBER": "a number",
    "TRUE": "true",
    "FALSE": "false",
    "NOT": "not",
    "_AND": "and",
    "_OR": "or",
    "COMP_OP": "a comparison (< <= > >= == !=)",
    "PLUS": "+",
    "MINUS": "-",
    "STAR": "*",
    "SLASH": "/",
    "LPAR": "(",
    "RPAR": ")",
    "COMMA": ",",
    "$END": "the end of the expression",
}
_SHOWN_ORDER = list(SHOWN)
START_OF_OPERAND = ["a field or function name", "a number", "true", "false", "not", "-", "("]


class ScreenError(ConfigError):
    """An expression that does not parse or check. ``position`` is the character offset of the
    problem, ``expected`` what would have been accepted there (may be empty)."""

    def __init__(
        self,
        field_name: str,
        message: str,
        position: int,
        expected: list[str] | None = None,
        suggestions: list[str] | None = None,
    ) -> None:
        super().__init__(field_name, message, suggestions)
        self.position = position
        self.expected = expected or []

    def details(self) -> dict[str, Any]:
        return {"position": self.position, "expected": self.expected}


@dataclass(eq=False)
class Node:
    """A node of the tree: ``kind`` is number, boolean, name, call, minus, not, arith, compare,
    and, or; ``start``/``end`` its span in the text. The checker sets ``type``, ``last_only``
    (it can be read on the last bar only), ``cross`` (it needs the scan's other symbols) and
    ``daily_only``."""

    kind: str
    start: int
    end: int
    value: Any = None  # a literal's value, a name's or call's lower-cased name, the operator(s)
    args: list[Node] = field(default_factory=list)
    depth: int = 0
    type: Type = "number"
    last_only: bool = False
    cross: bool = False
    daily_only: bool = False


def _node(kind: str, start: int, end: int, value: Any = None, args: list[Node] | None = None) -> Node:
    """Nesting (``depth``) counts parentheses, calls, ``not`` and unary ``-`` (a bare field or
    literal is 0, ``(close)`` and ``abs(close)`` are 1); an operator chain is one n-ary node at
    its operands' depth, so a long chain is not deep."""
    args = args or []
    inner = max((a.depth for a in args), default=0)
    return Node(kind, start, end, value, args, inner + 1 if kind in ("call", "minus", "not") else inner)


def _span(token: Token) -> tuple[int, int]:
    return int(token.start_pos or 0), int(token.end_pos or 0)


class _Build(Transformer[Token, Node]):
    """Builds ``Node``s while the parser reduces (one pass, no intermediate tree)."""

    def number(self, c: list[Token]) -> Node:
        return _node("number", *_span(c[0]), float(c[0]))

    def true(self, c: list[Token]) -> Node:
        return _node("boolean", *_span(c[0]), True)

    def false(self, c: list[Token]) -> Node:
        return _node("boolean", *_span(c[0]), False)

    def name(self, c: list[Token]) -> Node:
        return _node("name", *_span(c[0]), str(c[0]).lower())

    def call(self, c: list[Any]) -> Node:
        args = [a for a in c[2:-1] if isinstance(a, Node)]
        return _node("call", _span(c[0])[0], _span(c[-1])[1], str(c[0]).lower(), args)

    def parens(self, c: list[Any]) -> Node:
        inner: Node = c[1]
        inner.start, inner.end, inner.depth = _span(c[0])[0], _span(c[2])[1], inner.depth + 1
        return inner

    def minus(self, c: list[Any]) -> Node:
        return _node("minus", _span(c[0])[0], c[1].end, None, [c[1]])

    def negation(self, c: list[Any]) -> Node:
        return _node("not", _span(c[0])[0], c[1].end, None, [c[1]])

    def comparison(self, c: list[Any]) -> Node:
        return _node("compare", c[0].start, c[2].end, str(c[1]), [c[0], c[2]])

    def sum(self, c: list[Any]) -> Node:
        return self._left(c, "arith")

    def product(self, c: list[Any]) -> Node:
        return self._left(c, "arith")

    def and_expr(self, c: list[Node]) -> Node:
        return self._chain(c, "and")

    def or_expr(self, c: list[Node]) -> Node:
        return self._chain(c, "or")

    @staticmethod
    def _left(c: list[Any], kind: str) -> Node:
        """``a op b op c ...`` as one node: ``value`` holds the operators, applied left to right."""
        return _node(kind, c[0].start, c[-1].end, [str(op) for op in c[1::2]], c[0::2])

    @staticmethod
    def _chain(c: list[Node], kind: str) -> Node:
        return _node(kind, c[0].start, c[-1].end, kind, c)


# The basic lexer: a keyword is a keyword everywhere (the contextual one would read a misplaced
# "not" or "and" as a name, and report the error later, at the wrong place).
_PARSER = Lark(GRAMMAR, parser="lalr", lexer="basic", transformer=_Build(), maybe_placeholders=False)


@dataclass(frozen=True, eq=False)
class Expression:
    """A checked expression. ``clauses`` are the top-level ``and`` operands in order (the whole
    expression when it is not an ``and``); ``leaves`` every field and call it names (not those
    inside ``weekly(...)``, whose bars differ), once per text as written, in order."""

    text: str
    root: Node
    clauses: tuple[Node, ...]
    leaves: tuple[Node, ...]

    def source(self, node: Node) -> str:
        return self.text[node.start : node.end]


def parse(text: str, field_name: str = "filter", want: Type = "boolean") -> Expression:
    """Parse and check ``text`` as a ``want`` expression; raises ScreenError."""
    return _parse(text, field_name, want)


@lru_cache(maxsize=256)
def _parse(text: str, field_name: str, want: Type) -> Expression:
    if len(text) > MAX_LENGTH:
        raise ScreenError(
            field_name, f"{field_name} is {len(text)} characters long; at most {MAX_LENGTH} are allowed", MAX_LENGTH
        )
    if not text.strip():
        raise ScreenError(field_name, f"{field_name} is empty", 0, START_OF_OPERAND)
    try:
        root = cast(Node, _PARSER.parse(text))
    except UnexpectedInput as err:
        raise _syntax_error(field_name, text, err) from None
    _check_depth(field_name, root)
    _check(field_name, text, root)
    if root.type != want:
        article = "a condition (true or false)" if want == "boolean" else "a number"
        hint = ["compare it, e.g. close > 20"] if want == "boolean" else ["rank by a number, e.g. rsi_14"]
        raise ScreenError(field_name, f"{field_name} must be {article}, but it is a {root.type}", 0, [], hint)
    clauses: list[Node] = []
    _conjuncts(root, clauses)
    leaves: dict[str, Node] = {}
    _leaves(text, root, leaves)
    return Expression(text, root, tuple(clauses), tuple(leaves.values()))


def _syntax_error(field_name: str, text: str, err: UnexpectedInput) -> ScreenError:
    names: set[str] | list[str]
    if isinstance(err, UnexpectedCharacters):
        position, names = int(err.pos_in_stream or 0), err.allowed
        what = f"unexpected character {text[position]!r}"
    elif isinstance(err, UnexpectedToken) and err.token.type != "$END":
        position, names = _span(err.token)[0], err.accepts or err.expected
        what = f"unexpected {str(err.token)!r}"
    elif isinstance(err, UnexpectedToken | UnexpectedEOF):
        position = len(text)
        names = (err.accepts or err.expected) if isinstance(err, UnexpectedToken) else [str(t) for t in err.expected]
        what = "the expression ends too early"
    else:  # pragma: no cover - lark raises only the three above
        raise err
    names = _accepted(text, position) or names or []
    expected = [SHOWN[n] for n in sorted(names, key=_SHOWN_ORDER.index) if n in SHOWN]
    suggestions = []
    if isinstance(err, UnexpectedToken) and err.token.type == "COMP_OP":
        suggestions.append("a comparison has one operator: write a < b and b < c")
    elif isinstance(err, UnexpectedToken) and err.token.type in ("NAME", "NUMBER", "LPAR"):
        suggestions.append("join conditions with and / or, and terms with an operator")
    return ScreenError(
        field_name,
        f"{field_name}: {what} at position {position}; expected {', '.join(expected) or 'nothing more'}",
        position,
        expected,
        suggestions,
    )


def _accepted(text: str, position: int) -> set[str] | None:
    """The terminals the parser accepts after ``text[:position]``. Lark's own lists are not
    exact: an LALR parser reduces before it notices an error (so ``close > (1`` would expect only
    ``)``), and a lexer error lists terminals of merged parser states (so ``close $`` would
    expect ``)`` and ``,``). Replaying the prefix and trying each terminal is exact."""
    try:
        replay = _PARSER.parse_interactive(text[:position])
        replay.exhaust_lexer()
        return set(replay.accepts())
    except UnexpectedInput:  # pragma: no cover - the prefix up to an error always parses
        return None


def _check_depth(field_name: str, root: Node) -> None:
    if root.depth <= MAX_DEPTH:
        return
    node = root
    while any(a.depth > MAX_DEPTH for a in node.args):  # down to the innermost node too deep
        node = max(node.args, key=lambda a: a.depth)
    raise ScreenError(field_name, f"{field_name} is nested more than {MAX_DEPTH} levels deep", node.start)


def _check(field_name: str, text: str, node: Node) -> None:
    """Type ``node`` and its arguments, bottom up; raises ScreenError at the first problem."""
    for arg in node.args:
        _check(field_name, text, arg)
    kind, args = node.kind, node.args
    node.last_only = any(a.last_only for a in args)
    node.cross = any(a.cross for a in args)
    node.daily_only = any(a.daily_only for a in args)

    def fail(message: str, at: Node, expected: list[str] | None = None, suggestions: list[str] | None = None) -> None:
        raise ScreenError(
            field_name, f"{field_name}: {message} at position {at.start}", at.start, expected, suggestions
        )

    def want(arg: Node, type_: Type, role: str) -> None:
        if arg.type != type_:
            fail(f"{role} must be a {type_}, but {text[arg.start : arg.end]!r} is a {arg.type}", arg)

    if kind == "number":
        if not math.isfinite(node.value):
            fail("the number is too large", node)
        node.type = "number"
    elif kind == "boolean":
        node.type = "boolean"
    elif kind == "name":
        if node.value in FUNCTIONS:
            fail(f"{node.value} is a function: {FUNCTIONS[node.value].signature}", node, ["("])
        spec = FIELDS.get(node.value)
        if spec is None:
            fail(f"unknown field {text[node.start : node.end]!r}", node, ["a field"], _nearest(node.value))
            return
        node.type, node.last_only, node.cross, node.daily_only = (
            spec.type,
            spec.last_only,
            spec.cross_sectional,
            spec.daily_only,
        )
    elif kind == "call":
        _check_call(node, text, fail, want)
    elif kind == "minus":
        want(args[0], "number", "the operand of -")
        node.type = "number"
    elif kind == "not":
        want(args[0], "boolean", "the operand of not")
        node.type = "boolean"
    elif kind == "arith":
        for arg, op in zip(args, [node.value[0], *node.value], strict=True):
            want(arg, "number", f"each side of {op}")
        node.type = "number"
    elif kind == "compare":
        if node.value in ("==", "!="):
            if args[0].type != args[1].type:
                fail(
                    f"both sides of {node.value} must have the same type (a {args[0].type} and a {args[1].type})", node
                )
        else:
            for arg in args:
                want(arg, "number", f"each side of {node.value}")
        node.type = "boolean"
    else:  # and, or
        for arg in args:
            want(arg, "boolean", f"each side of {kind}")
        node.type = "boolean"


def _check_call(node: Node, text: str, fail: Any, want: Any) -> None:
    name, args = node.value, node.args
    if name in FIELDS:
        fail(f"{name} is a field, not a function", node, [], [name])
    spec = FUNCTIONS.get(name)
    if spec is None:
        fail(f"unknown function {text[node.start : node.start + len(name)]!r}", node, ["a function"], _nearest(name))
        return
    if len(args) != len(spec.params):
        fail(f"{spec.signature} takes {len(spec.params)} argument(s), got {len(args)}", node, [], [spec.signature])
    for arg, param in zip(args, spec.params, strict=True):
        if param == "window":
            if arg.kind != "number" or arg.value != int(arg.value) or not 1 <= arg.value <= MAX_WINDOW:
                fail(f"n of {spec.signature} must be a whole number from 1 to {MAX_WINDOW}", arg, ["a number"])
            continue
        if param != "any":
            want(arg, param, f"x of {spec.signature}")
        if arg.last_only and (spec.history or spec.last_only):
            what = "weekly(...)" if spec.last_only else f"{name}(...) reads past bars"
            fail(f"{text[arg.start : arg.end]!r} exists on the last bar only; {what}", arg)
        if spec.last_only and arg.daily_only:
            fail(f"{text[arg.start : arg.end]!r} cannot be computed on weekly bars", arg)
    node.type = args[0].type if spec.returns == "same" else spec.returns
    node.last_only = node.last_only or spec.last_only
    if spec.last_only:
        node.daily_only = False  # weekly(x) is computed from the symbol's own bars


def _nearest(name: str) -> list[str]:
    return difflib.get_close_matches(name, NAMES, n=3, cutoff=0.6)


def _conjuncts(node: Node, out: list[Node]) -> None:
    if node.kind == "and":
        for arg in node.args:
            _conjuncts(arg, out)
    else:
        out.append(node)


def _leaves(text: str, node: Node, out: dict[str, Node]) -> None:
    if node.kind in ("name", "call"):
        out.setdefault(text[node.start : node.end], node)
        if node.kind == "call" and node.value == "weekly":
            return
    for arg in node.args:
        _leaves(text, arg, out)
