"""The screen language: precedence, case, every error with its position, expected list and
suggestions, limits, fuzzing of the parser and of well-typed expressions evaluated over real bars,
and no path from user text to eval, exec or attribute access."""

from __future__ import annotations

import ast
import functools
import string
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.panel import build_panel
from engine.screens.catalogue import FIELDS, FUNCTIONS, MAX_DEPTH, MAX_LENGTH, MAX_WINDOW
from engine.screens.evaluate import evaluate
from engine.screens.language import SHOWN, START_OF_OPERAND, Expression, Node, ScreenError, parse
from engine.screens.series import Source, equal_weight_index
from engine.types import Bars

SCREENS = Path(__file__).resolve().parent.parent / "engine" / "screens"
OPERANDS = ["a field or function name", "a number", "true", "false", "-", "("]
AFTER_NUMBER_AT_TOP = ["and", "or", "+", "-", "*", "/", "the end of the expression"]
COMPARISON = "a comparison (< <= > >= == !=)"
AFTER_NAME_AT_TOP = ["and", "or", COMPARISON, "+", "-", "*", "/", "(", "the end of the expression"]
AFTER_NAME_IN_CALL = ["and", "or", COMPARISON, "+", "-", "*", "/", "(", ")", ","]


def tree(node: Node) -> Any:
    """The shape of a tree: leaves as their value, inner nodes as (kind or operators, *args)."""
    if node.kind in ("number", "boolean", "name"):
        return node.value
    label = node.value if node.kind in ("call", "compare", "arith") else node.kind
    return (tuple(label) if isinstance(label, list) else label, *(tree(a) for a in node.args))


def error(text: str, field_name: str = "filter", want: str = "boolean") -> ScreenError:
    with pytest.raises(ScreenError) as caught:
        parse(text, field_name, want)  # type: ignore[arg-type]
    assert caught.value.field == field_name
    return caught.value


# --- Precedence and case -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("nr7 or gap_up and inside_day", ("or", "nr7", ("and", "gap_up", "inside_day"))),
        ("nr7 and gap_up or inside_day", ("or", ("and", "nr7", "gap_up"), "inside_day")),
        ("nr7 and gap_up and inside_day or gap_down", ("or", ("and", "nr7", "gap_up", "inside_day"), "gap_down")),
        ("(nr7 or gap_up) and inside_day", ("and", ("or", "nr7", "gap_up"), "inside_day")),
        ("not nr7 and gap_up", ("and", ("not", "nr7"), "gap_up")),
        ("not nr7 or gap_up", ("or", ("not", "nr7"), "gap_up")),
        ("not close > open", ("not", (">", "close", "open"))),
        ("not not nr7", ("not", ("not", "nr7"))),
        ("close > open and high < low", ("and", (">", "close", "open"), ("<", "high", "low"))),
        ("close + open * high > 1", (">", (("+",), "close", (("*",), "open", "high")), 1.0)),
        ("close * open + high > 1", (">", (("+",), (("*",), "close", "open"), "high"), 1.0)),
        ("close - open - high > 1", (">", (("-", "-"), "close", "open", "high"), 1.0)),
        ("close / open * high > 1", (">", (("/", "*"), "close", "open", "high"), 1.0)),
        ("(close - open) * high > 1", (">", (("*",), (("-",), "close", "open"), "high"), 1.0)),
        ("-close * 2 > 1", (">", (("*",), ("minus", "close"), 2.0), 1.0)),
        ("- -close > 1", (">", ("minus", ("minus", "close")), 1.0)),
        ("close - -1 > 1", (">", (("-",), "close", ("minus", 1.0)), 1.0)),
        ("nr7 == gap_up", ("==", "nr7", "gap_up")),
        ("ago(close, 5) > highest(high, 20)", (">", ("ago", "close", 5.0), ("highest", "high", 20.0))),
    ],
)
def test_and_binds_tighter_than_or_and_arithmetic_follows_the_usual_precedence(text: str, shape: Any) -> None:
    assert tree(parse(text).root) == shape


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 - 2 - 3", -4.0),
        ("2 + 3 * 4", 14.0),
        ("(2 + 3) * 4", 20.0),
        ("8 / 4 / 2", 1.0),
        ("2 * 3 - 4 / 8", 5.5),
        ("-2 * 3", -6.0),
        ("- -2", 2.0),
        ("10 - -2 * 3", 16.0),
        ("1.5e1 + .5", 15.5),
        ("abs(-3) + min(2, 5) * max(2, 5)", 13.0),
    ],
)
def test_arithmetic_evaluates_left_to_right_with_products_first(source: Source, text: str, value: float) -> None:
    got = evaluate(parse(text, "rank_by", "number").root, source)
    assert got.shape == (source.panel.n_symbols, 1)
    assert np.all(got == value)


def test_keywords_and_names_are_case_insensitive(source: Source) -> None:
    lower = parse("close > sma_20 and not nr7 or true and rsi_14 < 70")
    upper = parse("CLOSE > SMA_20 AND NOT NR7 OR TRUE AND RSI_14 < 70")
    mixed = parse("Close > Sma_20 aNd NoT nR7 Or True And Rsi_14 < 70")
    assert tree(lower.root) == tree(upper.root) == tree(mixed.root)
    assert tree(parse("Highest(HIGH, 20) > Weekly(Close)").root) == (
        ">",
        ("highest", "high", 20.0),
        ("weekly", "close"),
    )
    values = [evaluate(e.root, source) for e in (lower, upper, mixed)]
    np.testing.assert_array_equal(values[0], values[1])
    np.testing.assert_array_equal(values[0], values[2])


def test_a_name_that_starts_with_a_keyword_is_one_name() -> None:
    err = error("android > 1")
    assert (err.position, err.expected) == (0, ["a field"])
    assert "'android'" in str(err)
    assert tree(parse("close>1and close<2").root) == ("and", (">", "close", 1.0), ("<", "close", 2.0))


def test_clauses_are_the_top_level_and_operands_and_leaves_each_named_text_once() -> None:
    expr = parse("close > sma_20 and (rsi_14 < 30 or nr7) and weekly(close) > weekly(sma_20) and close > 1")
    assert [expr.source(c) for c in expr.clauses] == [
        "close > sma_20",
        "(rsi_14 < 30 or nr7)",
        "weekly(close) > weekly(sma_20)",
        "close > 1",
    ]
    assert [expr.source(leaf) for leaf in expr.leaves] == [
        "close",
        "sma_20",
        "rsi_14",
        "nr7",
        "weekly(close)",
        "weekly(sma_20)",
    ]
    alone = parse("rsi_14 < 30 or nr7")
    assert [alone.source(c) for c in alone.clauses] == ["rsi_14 < 30 or nr7"]


# --- Errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "expected", "suggestion"),
    [
        ("clse > 1", 0, ["a field"], "close"),
        ("close > 1 and rsi_41 < 30", 14, ["a field"], "rsi_14"),
        ("Volme_ratio > 2", 0, ["a field"], "volume_ratio"),
        ("hihgest(close, 5) > 1", 0, ["a function"], "highest"),
        ("close > averag(close, 5)", 8, ["a function"], "average"),
        ("close(1) > 2", 0, [], "close"),
    ],
)
def test_an_unknown_name_suggests_the_nearest_names(
    text: str, position: int, expected: list[str], suggestion: str
) -> None:
    err = error(text)
    assert (err.position, err.expected) == (position, expected)
    assert err.suggestions[0] == suggestion
    assert f"position {position}" in str(err)


def test_a_function_named_without_arguments_expects_a_parenthesis() -> None:
    err = error("ago > 1")
    assert (err.position, err.expected) == (0, ["("])
    assert "ago(x, n)" in str(err)


@pytest.mark.parametrize(
    ("text", "position", "signature"),
    [
        ("ago(close) > 1", 0, "ago(x, n)"),
        ("close > highest(high)", 8, "highest(x, n)"),
        ("abs(close, 2) > 1", 0, "abs(x)"),
        ("crossed_above(close, 5) and nr7", 0, "crossed_above(a, b, n)"),
        ("nr7 and min(close) > 1", 8, "min(a, b)"),
        ("weekly() > 1", 0, "weekly(x)"),
        ("count(nr7, 5, 6) > 1", 0, "count(condition, n)"),
    ],
)
def test_a_call_with_the_wrong_number_of_arguments_names_the_signature(
    text: str, position: int, signature: str
) -> None:
    err = error(text)
    assert (err.position, err.expected, err.suggestions) == (position, [], [signature])
    assert f"position {position}" in str(err)


@pytest.mark.parametrize("window", ["0", "1261", "2.5", "-1", "5 + 1", "sma_20", "(0)", "1e9", "true"])
def test_a_window_outside_1_to_1260_or_not_a_whole_number_literal_is_refused_at_its_position(window: str) -> None:
    text = f"nr7 and highest(close, {window}) > 1"
    err = error(text)
    assert err.position == text.index(window)
    assert err.expected == ["a number"]
    assert f"from 1 to {MAX_WINDOW}" in str(err)


@pytest.mark.parametrize("window", ["1", "1260", "20.0", "(7)"])
def test_a_window_from_1_to_1260_is_accepted(window: str) -> None:
    assert parse(f"highest(close, {window}) > 1").root.args[0].args[1].value == float(window.strip("()"))


@pytest.mark.parametrize(
    ("text", "argument"),
    [
        ("highest(rs_rating, 5) > 1", "rs_rating"),
        ("nr7 and average(alpha_5d, 3) > 0", "alpha_5d"),
        ("change(alpha_10d, 3) > 0", "alpha_10d"),
        ("ago(weekly(close), 2) > 1", "weekly(close)"),
        ("count(weekly(close) > 1, 3) > 1", "weekly(close) > 1"),
        ("crossed_above(close, abs(rs_rating), 5)", "abs(rs_rating)"),
        ("ago(rs_rating > 50, 1)", "rs_rating > 50"),
    ],
)
def test_a_history_function_over_a_last_bar_only_value_is_refused_at_the_argument(text: str, argument: str) -> None:
    err = error(text)
    assert err.position == text.index(argument)
    assert "exists on the last bar only" in str(err)
    assert "reads past bars" in str(err)


@pytest.mark.parametrize(
    ("text", "argument"),
    [
        ("weekly(rs_21d) > 0", "rs_21d"),
        ("weekly(rs_63d) > 0", "rs_63d"),
        ("nr7 and weekly(1 + rs_252d) > 0", "1 + rs_252d"),
    ],
)
def test_relative_strength_and_alpha_cannot_be_computed_on_weekly_bars(text: str, argument: str) -> None:
    err = error(text)
    assert err.position == text.index(argument)
    assert "cannot be computed on weekly bars" in str(err)


@pytest.mark.parametrize("text", ["weekly(rs_rating) > 50", "weekly(alpha_5d) > 0", "weekly(weekly(close)) > 1"])
def test_weekly_of_a_last_bar_only_value_is_refused(text: str) -> None:
    err = error(text)
    assert err.position == len("weekly(")
    assert "exists on the last bar only" in str(err)


@pytest.mark.parametrize("text", ["close", "1", "close + 1", "highest(high, 20)", "weekly(close)"])
def test_a_filter_that_is_a_number_is_refused(text: str) -> None:
    err = error(text)
    assert (err.position, err.expected) == (0, [])
    assert "filter must be a condition" in str(err)
    assert err.suggestions == ["compare it, e.g. close > 20"]


@pytest.mark.parametrize("text", ["rsi_14 > 30", "nr7", "true", "weekly(nr7)", "crossed_above(close, sma_20, 5)"])
def test_a_rank_by_that_is_a_boolean_is_refused(text: str) -> None:
    err = error(text, "rank_by", "number")
    assert (err.position, err.expected) == (0, [])
    assert "rank_by must be a number" in str(err)
    assert parse("rsi_14", "rank_by", "number").root.type == "number"


@pytest.mark.parametrize(
    ("text", "position", "mistyped"),
    [
        ("not close", 4, "'close'"),
        ("1 + true > 2", 4, "'true'"),
        ("close == true", 0, "a number and a boolean"),
        ("nr7 and close", 8, "'close'"),
        ("count(close, 5) > 1", 6, "'close'"),
        ("highest(nr7, 5) > 1", 8, "'nr7'"),
        ("-nr7 < 0", 1, "'nr7'"),
    ],
)
def test_an_operand_of_the_wrong_type_is_refused_at_its_position(text: str, position: int, mistyped: str) -> None:
    err = error(text)
    assert err.position == position
    assert mistyped in str(err)


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("a < b < c", 6, ["and", "or", "+", "-", "*", "/", "(", "the end of the expression"]),
        ("close < open < high", 13, ["and", "or", "+", "-", "*", "/", "(", "the end of the expression"]),
        ("1 == 2 != 3", 7, AFTER_NUMBER_AT_TOP),
    ],
)
def test_a_chained_comparison_is_refused_at_the_second_operator(text: str, position: int, expected: list[str]) -> None:
    err = error(text)
    assert (err.position, err.expected) == (position, expected)
    assert err.suggestions == ["a comparison has one operator: write a < b and b < c"]


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("close >", 7, OPERANDS),
        ("close > 1 and", 13, START_OF_OPERAND),
        ("close >> 1", 7, OPERANDS),
        ("close > (1", 10, ["and", "or", "a comparison (< <= > >= == !=)", "+", "-", "*", "/", ")"]),
        ("close > 1)", 9, AFTER_NUMBER_AT_TOP),
        ("close $ 1", 6, AFTER_NAME_AT_TOP),
        ("close > 1 && nr7", 10, AFTER_NUMBER_AT_TOP),
        ("ago(close 5) > 1", 10, AFTER_NAME_IN_CALL),
        ("close > 1 2", 10, AFTER_NUMBER_AT_TOP),
        ("close.__class__ > 1", 5, AFTER_NAME_AT_TOP),
        ("(close > 1", 10, ["and", "or", "+", "-", "*", "/", ")"]),
        ("close > not nr7", 8, OPERANDS),
        ("close > 1 and and nr7", 14, START_OF_OPERAND),
        ("nr7 or or gap_up", 7, START_OF_OPERAND),
        ("close + and > 1", 8, OPERANDS),
    ],
)
def test_a_syntax_error_says_exactly_what_would_have_been_accepted_there(
    text: str, position: int, expected: list[str]
) -> None:
    err = error(text)
    assert (err.position, err.expected) == (position, expected)
    assert err.details() == {"position": position, "expected": expected}


def syntax_error_at(text: str) -> int | None:
    """The position of ``text``'s syntax error (None: it parses, perhaps with a type error)."""
    try:
        parse(text)
    except ScreenError as err:
        return err.position if "unexpected" in str(err) or "ends too early" in str(err) else None
    return None


@pytest.mark.parametrize(
    "text",
    ["close >", "close > (1", "close $ 1", "ago(close $ 1", "close > 1 and", "a < b < c", "(close > 1", "1 2", "ago(x"],
)
def test_every_item_of_a_syntax_errors_expected_list_is_accepted_at_its_position(text: str) -> None:
    """Each listed item, written at the error's position, gets the parse past that position; an
    item that is not listed does not."""
    spelled = {
        "a field or function name": "close",
        "a number": "1",
        "true": "true",
        "false": "false",
        "not": "not",
        "and": "and",
        "or": "or",
        "a comparison (< <= > >= == !=)": "<",
        "+": "+",
        "-": "-",
        "*": "*",
        "/": "/",
        "(": "(",
        ")": ")",
        ",": ",",
        "the end of the expression": "",
    }
    err = error(text)
    prefix = text[: err.position]
    for item, spelling in spelled.items():
        if spelling:
            later = syntax_error_at(f"{prefix} {spelling} ")
            accepted = later is None or later > len(prefix) + 1
        else:
            accepted = syntax_error_at(prefix) is None
        assert accepted == (item in err.expected), (text, item)


def test_a_text_over_2000_characters_is_refused_at_position_2000() -> None:
    longest = "close > 1" + " " * (MAX_LENGTH - len("close > 1"))
    assert len(longest) == MAX_LENGTH
    parse(longest)
    err = error(longest + " ")
    assert err.position == MAX_LENGTH
    assert f"at most {MAX_LENGTH}" in str(err)
    assert error("x" * 50_000).position == MAX_LENGTH


@pytest.mark.parametrize(
    ("opener", "closer", "inner"),
    [
        ("abs(", ")", "close > 0"),
        ("ago(", ", 1)", "close > 0"),
        ("- ", "", "close > 0"),
        ("not ", "", "nr7"),
        ("weekly(abs(", "))", "close > 0"),  # one weekly, then abs inside it
    ],
)
def test_nesting_32_levels_deep_parses_and_33_is_refused_at_the_innermost_part_too_deep(
    opener: str, closer: str, inner: str
) -> None:
    field, tail = [*inner.split(" ", 1), ""][:2]

    def text(levels: int) -> tuple[str, list[int]]:
        openers = [opener] if opener != "weekly(abs(" else ["weekly("]
        openers += ["abs(" if opener == "weekly(abs(" else opener] * (levels - len(openers))
        starts = [len("nr7 and ") + sum(len(o) for o in openers[:i]) for i in range(levels)]
        closing = closer[-1:] * levels if opener == "weekly(abs(" else closer * levels
        return f"nr7 and {''.join(openers)}{field}{closing} {tail}".rstrip(), starts

    deepest, _ = text(MAX_DEPTH)
    assert parse(deepest).root.depth == MAX_DEPTH
    too_deep, starts = text(MAX_DEPTH + 1)
    err = error(too_deep)
    assert err.position == starts[0] == len("nr7 and ")
    assert f"more than {MAX_DEPTH} levels" in str(err)
    deeper, starts = text(MAX_DEPTH + 5)  # levels 1 to 5 each hold more than 32; the 5th is the innermost
    assert error(deeper).position == starts[4]


def test_nesting_by_parentheses_alone_is_refused_at_the_outermost_parenthesis_of_the_run() -> None:
    assert parse("nr7 and " + "(" * MAX_DEPTH + "close" + ")" * MAX_DEPTH + " > 0").root.depth == MAX_DEPTH
    for levels in (MAX_DEPTH + 1, MAX_DEPTH + 5):
        err = error("nr7 and " + "(" * levels + "close" + ")" * levels + " > 0")
        assert err.position == len("nr7 and ")
    mixed = "nr7 and " + "abs(" * 20 + "(" * 13 + "close" + ")" * 33 + " > 0"
    assert error(mixed).position == len("nr7 and ")


def test_parentheses_count_as_nesting_but_a_long_chain_does_not() -> None:
    assert parse("close > 1").root.depth == 0
    assert parse("(close) > 1").root.depth == 1
    assert parse("abs(close) > 1").root.depth == 1
    chain = " and ".join(["close > 1"] * 140)
    assert len(chain) < MAX_LENGTH
    assert parse(chain).root.depth == 0
    assert parse(" + ".join(["close"] * 200) + " > 1").root.depth == 0


@pytest.mark.parametrize("text", ["", " ", "\t\n  \r"])
def test_an_empty_text_is_refused_at_position_0_expecting_an_operand(text: str) -> None:
    err = error(text)
    assert (err.position, err.expected) == (0, START_OF_OPERAND)
    assert "empty" in str(err)


def test_a_number_too_large_for_a_float_is_refused() -> None:
    err = error("close > 1e400")
    assert err.position == 8


def test_the_checked_tree_records_types_and_what_needs_the_last_bar_or_the_other_symbols() -> None:
    expr = parse("rs_rating > 80 and weekly(close) > 1 and rs_21d > 0 and ago(close, 3) > 1")
    flags = [(c.type, c.last_only, c.cross, c.daily_only) for c in expr.clauses]
    assert flags == [
        ("boolean", True, True, True),
        ("boolean", True, False, False),
        ("boolean", False, False, True),
        ("boolean", False, False, False),
    ]
    assert parse("ago(nr7, 2)").root.type == "boolean"
    assert parse("ago(close, 2)", "rank_by", "number").root.type == "number"
    assert parse("weekly(nr7)").root.type == "boolean"


def test_every_catalogue_name_is_accepted_where_its_type_belongs() -> None:
    for name, spec in FIELDS.items():
        text = name if spec.type == "boolean" else f"{name} > 0"
        assert isinstance(parse(text), Expression)
        assert parse(text.upper()).root.type == "boolean"
    for name, fn in FUNCTIONS.items():
        args = ", ".join({"number": "close", "boolean": "nr7", "any": "close", "window": "5"}[p] for p in fn.params)
        assert parse(f"{name}({args}) == {name}({args})").root.type == "boolean"


# --- Fuzzing the parser ------------------------------------------------------------------------

LANGUAGE_CHARS = string.ascii_letters + string.digits + "_ ()<>=!+-*/,.\t\n" + "'\"$&|[]{}.:;@#"
WORDS = st.sampled_from(
    [
        *FIELDS,
        *FUNCTIONS,
        *("and", "or", "not", "true", "false", "AND", "Not", "(", ")", ",", "<", "<=", "==", "!=", ">", ">="),
        *("+", "-", "*", "/", "1", "20", "1260", "1261", "0", "2.5", "1e3", ".5", "1e400", "clse", "x", " "),
    ]
)
SHOWN_ITEMS = {*SHOWN.values(), "a field", "a function"}


def check_only_screen_errors(text: str) -> None:
    for field_name, want in (("filter", "boolean"), ("rank_by", "number")):
        try:
            parse(text, field_name, want)  # type: ignore[arg-type]
        except ScreenError as err:
            assert 0 <= err.position <= min(len(text), MAX_LENGTH)
            assert set(err.expected) <= SHOWN_ITEMS, err.expected
            assert err.field == field_name
            assert str(err)
            err.details()


FUZZ = settings(max_examples=150, deadline=None, database=None)


@FUZZ
@given(st.text(max_size=300))
def test_random_text_raises_nothing_but_screen_error(text: str) -> None:
    check_only_screen_errors(text)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_decoded_as_utf8_raise_nothing_but_screen_error(data: bytes) -> None:
    check_only_screen_errors(data.decode("utf-8", errors="replace"))


@FUZZ
@given(st.text(alphabet=LANGUAGE_CHARS, max_size=200))
def test_random_strings_of_the_languages_characters_raise_nothing_but_screen_error(text: str) -> None:
    check_only_screen_errors(text)


@FUZZ
@given(st.lists(WORDS, max_size=40).map(" ".join))
def test_random_sequences_of_the_languages_words_raise_nothing_but_screen_error(text: str) -> None:
    check_only_screen_errors(text)


@settings(max_examples=20, deadline=None, database=None)
@given(st.integers(1, 1200), st.sampled_from(["(", "abs(", "not ", "-", "weekly("]))
def test_deep_nesting_of_any_size_raises_nothing_but_screen_error(levels: int, opener: str) -> None:
    check_only_screen_errors(opener * levels + "close" + ")" * levels)


# --- Well-typed expressions from the catalogue, evaluated over real bars -----------------------

AS_OF = date(2016, 6, 30)
FUZZ_SYMBOLS = ("AAPL", "XOM", "UA", "WLTW", "JPM")  # two of them with less than a year of bars
NUMBER_FIELDS = sorted(n for n, f in FIELDS.items() if f.type == "number" and not f.cross_sectional)
BOOLEAN_FIELDS = sorted(n for n, f in FIELDS.items() if f.type == "boolean")
WINDOWS = st.one_of(st.integers(1, 30), st.sampled_from([63, 252, 499, 500, 501, MAX_WINDOW]))
LITERALS = st.one_of(
    st.integers(0, 10**6).map(str),
    st.floats(0, 1e4, allow_nan=False).map(lambda f: f"{f:.3f}"),
    st.sampled_from(["1e3", ".5", "0", "1e300"]),
)


def fields(names: list[str], last_ok: bool, daily_ok: bool) -> st.SearchStrategy[str]:
    """Field names allowed where a series may (``last_ok`` False) or may not be read over history."""
    return st.sampled_from(
        [n for n in names if (last_ok or not FIELDS[n].last_only) and (daily_ok or not FIELDS[n].daily_only)]
    )


@functools.cache
def typed(kind: str, depth: int, last_ok: bool = True, daily_ok: bool = True) -> st.SearchStrategy[str]:
    """Well-typed ``kind`` ("number"/"boolean") expressions: ``last_ok`` whether last-bar-only values
    (alpha, weekly) may appear, ``daily_ok`` whether daily-only fields may (not inside weekly)."""
    if kind == "number":
        leaf = st.one_of(fields(NUMBER_FIELDS, last_ok, daily_ok), fields(NUMBER_FIELDS, last_ok, daily_ok), LITERALS)
    else:
        leaf = st.one_of(fields(BOOLEAN_FIELDS, last_ok, daily_ok), st.sampled_from(["true", "false"]))
    if depth == 0:
        return leaf
    num = typed("number", depth - 1, last_ok, daily_ok)
    cond = typed("boolean", depth - 1, last_ok, daily_ok)
    hist_num = typed("number", depth - 1, False, daily_ok)
    hist_cond = typed("boolean", depth - 1, False, daily_ok)
    if kind == "number":
        options = [
            st.tuples(num, st.sampled_from(["+", "-", "*", "/"]), num).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
            st.tuples(st.sampled_from(["highest", "lowest", "average", "change", "ago"]), hist_num, WINDOWS).map(
                lambda t: f"{t[0]}({t[1]}, {t[2]})"
            ),
            st.tuples(st.sampled_from(["min", "max"]), num, num).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
            st.tuples(hist_cond, WINDOWS).map(lambda t: f"count({t[0]}, {t[1]})"),
            st.tuples(st.sampled_from(["-", "abs"]), num).map(lambda t: f"{t[0]}({t[1]})"),
        ]
    else:
        options = [
            st.tuples(num, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), num).map(" ".join),
            st.tuples(cond, st.sampled_from(["and", "or", "AND", "Or"]), cond).map(
                lambda t: f"({t[0]}) {t[1]} ({t[2]})"
            ),
            st.tuples(st.sampled_from(["crossed_above", "crossed_below"]), hist_num, hist_num, WINDOWS).map(
                lambda t: f"{t[0]}({t[1]}, {t[2]}, {t[3]})"
            ),
            st.tuples(cond, st.sampled_from(["==", "!="]), cond).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
            st.tuples(hist_cond, WINDOWS).map(lambda t: f"ago({t[0]}, {t[1]})"),
            cond.map(lambda c: f"not ({c})"),
        ]
    if last_ok:  # weekly(x): x on weekly bars, nothing daily-only or last-bar-only inside
        options.append(typed(kind, depth - 1, False, False).map(lambda x: f"weekly({x})"))
    return st.one_of([*options, leaf])


@pytest.fixture(scope="module")
def source(real_bars: dict[str, Bars]) -> Source:
    bars = [real_bars[s].window(AS_OF, 500) for s in FUZZ_SYMBOLS]
    panel = build_panel(bars)
    benchmark = equal_weight_index({s: (b.dates, b.close) for s, b in zip(FUZZ_SYMBOLS, bars, strict=True)}, "ew")
    nan = np.full(len(bars), np.nan)
    return Source(panel, {"alpha_5d": nan, "alpha_10d": np.full(len(bars), 0.01)}, benchmark)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(typed("boolean", 3), typed("number", 3)))
def test_a_well_typed_expression_parses_and_evaluates_to_finite_or_undefined_values(source: Source, text: str) -> None:
    if len(text) > MAX_LENGTH:
        return
    want = "boolean" if parse_type(text) == "boolean" else "number"
    expr = parse(text, "filter" if want == "boolean" else "rank_by", want)  # type: ignore[arg-type]
    assert expr.root.depth <= MAX_DEPTH
    with np.errstate(all="raise"):
        values = evaluate(expr.root, source)
    assert values.shape == (source.panel.n_symbols, 1)
    assert values.dtype == np.float64
    assert np.all(np.isfinite(values) | np.isnan(values))
    if want == "boolean":
        assert set(values[~np.isnan(values)].tolist()) <= {0.0, 1.0}
    for clause in expr.clauses:
        assert evaluate(clause, source).shape == (source.panel.n_symbols, 1)


def parse_type(text: str) -> str:
    try:
        return parse(text, "filter", "boolean").root.type
    except ScreenError as err:
        assert "must be a condition" in str(err), (text, str(err))
        return "number"


# --- No eval, exec or attribute access on user text --------------------------------------------

BAR_FIELDS = {"open", "high", "low", "close", "volume"}


def test_nothing_in_engine_screens_uses_eval_exec_compile_or_import() -> None:
    sources = sorted(SCREENS.glob("*.py"))
    assert len(sources) >= 5
    for path in sources:
        text = path.read_text()
        for banned in ("eval(", "exec(", "compile(", "__import__", "importlib", "globals(", "locals(", "setattr("):
            for line in text.splitlines():
                code = line.split("#", 1)[0]
                assert banned not in code.replace("evaluate(", "").replace("_evaluate(", ""), (path.name, line)


def test_every_getattr_in_engine_screens_reads_one_of_the_five_bar_fields() -> None:
    """A name from user text reaches getattr only after it was checked against a literal list."""
    checked = 0
    for path in sorted(SCREENS.glob("*.py")):
        module = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(module) for child in ast.iter_child_nodes(node)}
        for call in ast.walk(module):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "getattr"):
                continue
            attribute = call.args[1]
            if isinstance(attribute, ast.Constant):
                assert attribute.value in BAR_FIELDS, (path.name, call.lineno)
                continue
            assert isinstance(attribute, ast.Name), (path.name, call.lineno)
            assert attribute.id in _literal_guards(call, parents), (path.name, call.lineno)
            assert _literal_guards(call, parents)[attribute.id] <= BAR_FIELDS, (path.name, call.lineno)
            checked += 1
    assert checked >= 1  # series.py reads a bar field by name in Source._compute


def _literal_guards(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> dict[str, set[str]]:
    """Names bound to, or tested for membership in, a literal tuple of strings around ``node``."""
    out: dict[str, set[str]] = {}
    while node in parents:
        node = parents[node]
        literal: ast.AST | None = None
        name: ast.AST | None = None
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.ops[0], ast.In):
            name, literal = node.test.left, node.test.comparators[0]
        elif isinstance(node, ast.For):
            name, literal = node.target, node.iter
        elif isinstance(node, ast.DictComp | ast.ListComp | ast.GeneratorExp | ast.SetComp):
            name, literal = node.generators[0].target, node.generators[0].iter
        if isinstance(name, ast.Name) and isinstance(literal, ast.Tuple):
            values = {e.value for e in literal.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if len(values) == len(literal.elts):
                out.setdefault(name.id, values)
    return out


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "close.__class__ > 1",
        "open.__globals__",
        "eval(1) > 0",
        "exec(close) > 0",
        "getattr(close, 1) > 0",
        "[c for c in close]",
        "close[0] > 1",
        "close; 1",
        "lambda: 1",
        "{{7*7}}",
    ],
)
def test_code_looking_text_is_refused_as_a_screen_error(text: str) -> None:
    check_only_screen_errors(text)
    with pytest.raises(ScreenError):
        parse(text)
