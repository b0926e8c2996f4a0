"""The one catalogue of the screen language: every field and function with its type and meaning.

The parser and checker (``engine.screens.language``), the evaluator, the API's schema
(``GET /api/screens/catalogue``), the web editor's autocomplete and docs/screens.md all read
it; a name exists in the language exactly when it is here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Type = Literal["number", "boolean"]
MAX_WINDOW = 1260
MAX_LENGTH = 2000
MAX_DEPTH = 32


@dataclass(frozen=True)
class Field:
    """A series over a symbol's bars. ``last_only``: it exists on the last bar only (no history
    function takes it); ``cross_sectional``: its value depends on the scan's other symbols, so it
    is known at finalization only; ``daily_only``: not available inside ``weekly(...)``."""

    name: str
    type: Type
    group: str
    description: str
    last_only: bool = False
    cross_sectional: bool = False
    daily_only: bool = False


@dataclass(frozen=True)
class Function:
    """``params``: the kind of each argument. ``number``/``boolean``/``any`` are expressions
    (``any``: either type, the result then has that type); ``window`` is a whole number literal
    from 1 to MAX_WINDOW. ``history``: its series arguments are read over past bars."""

    name: str
    params: tuple[str, ...]
    returns: Type | Literal["same"]
    signature: str
    description: str
    history: bool = True
    last_only: bool = False


def _fields(group: str, type_: Type, entries: dict[str, str], **flags: bool) -> list[Field]:
    return [Field(name, type_, group, text, **flags) for name, text in entries.items()]


_SUBSCORES = ("trend", "momentum", "breakout", "volume", "volatility", "oscillator")

FIELDS: dict[str, Field] = {
    f.name: f
    for f in [
        *_fields(
            "price",
            "number",
            {
                "open": "the bar's opening price",
                "high": "the bar's high",
                "low": "the bar's low",
                "close": "the bar's closing price",
                "volume": "the bar's volume (shares)",
            },
        ),
        *_fields(
            "indicator",
            "number",
            {
                "sma_20": "simple moving average of the last 20 closes",
                "sma_50": "simple moving average of the last 50 closes",
                "sma_200": "simple moving average of the last 200 closes",
                "ema_12": "exponential moving average of the closes, 12 bars (TA-Lib seeding)",
                "ema_26": "exponential moving average of the closes, 26 bars",
                "macd": "MACD line (12, 26), as talib.MACD",
                "macd_signal": "MACD signal line (9)",
                "macd_hist": "MACD histogram: macd - macd_signal",
                "rsi_14": "Wilder RSI over 14 bars, 0-100",
                "atr_14": "Wilder average true range over 14 bars",
                "bb_upper": "upper Bollinger band (20 bars, 2 standard deviations)",
                "bb_middle": "middle Bollinger band (the 20-bar SMA)",
                "bb_lower": "lower Bollinger band",
                "adx_14": "average directional index over 14 bars",
                "obv": "on-balance volume from the window's first bar",
                "ret_1d": "close / close 1 bar before - 1",
                "ret_5d": "close / close 5 bars before - 1",
                "ret_21d": "close / close 21 bars before - 1",
                "ret_63d": "close / close 63 bars before - 1",
                "ret_126d": "close / close 126 bars before - 1",
                "ret_252d": "close / close 252 bars before - 1",
                "vol_20d": "annualised standard deviation of the last 20 daily log returns",
                "avg_volume_20": "mean volume of the last 20 bars",
                "dollar_volume_20": "mean of close x volume over the last 20 bars",
                "volume_ratio": "volume / avg_volume_20",
                "pct_from_52w_high": "close / highest high of the last 252 bars - 1 (at most 0)",
                "pct_from_52w_low": "close / lowest low of the last 252 bars - 1 (at least 0)",
            },
        ),
        *_fields("rating", "number", {"tech_rating": "the 0-100 TechRating (docs/tech-rating.md)"}),
        *_fields("rating", "number", {f"{name}_score": f"the {name} sub-score, 0-100" for name in _SUBSCORES}),
        *_fields(
            "pattern",
            "boolean",
            {
                "breakout_20d": "close above the highest high of the 20 bars before",
                "new_52w_high": "the bar's high is the highest high of the last 252 bars",
                "new_52w_low": "the bar's low is the lowest low of the last 252 bars",
                "nr7": "the bar's high-low range is narrower than each of the 6 bars before",
                "inside_day": "high below the previous high and low above the previous low",
                "gap_up": "open above the previous bar's high",
                "gap_down": "open below the previous bar's low",
            },
        ),
        *_fields(
            "relative strength",
            "number",
            {
                "rs_21d": "(1 + ret_21d) / (1 + the benchmark's 21-bar return) - 1",
                "rs_63d": "(1 + ret_63d) / (1 + the benchmark's 63-bar return) - 1",
                "rs_252d": "(1 + ret_252d) / (1 + the benchmark's 252-bar return) - 1",
            },
            daily_only=True,
        ),
        Field(
            "rs_rating",
            "number",
            "relative strength",
            "1-99: percentile within the scan's eligible symbols of"
            " 0.4 ret_63d + 0.2 ret_126d + 0.2 ret_189d + 0.2 ret_252d",
            last_only=True,
            cross_sectional=True,
            daily_only=True,
        ),
        *_fields(
            "alpha",
            "number",
            {
                "alpha_5d": "the alpha model's expected 5-day excess return (docs/alpha.md)",
                "alpha_10d": "the alpha model's expected 10-day excess return",
            },
            last_only=True,
            daily_only=True,
        ),
    ]
}

FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        Function("ago", ("any", "window"), "same", "ago(x, n)", "x n bars before the last"),
        Function("highest", ("number", "window"), "number", "highest(x, n)", "the highest x of the last n bars"),
        Function("lowest", ("number", "window"), "number", "lowest(x, n)", "the lowest x of the last n bars"),
        Function("average", ("number", "window"), "number", "average(x, n)", "the mean x of the last n bars"),
        Function("change", ("number", "window"), "number", "change(x, n)", "x / ago(x, n) - 1"),
        Function(
            "crossed_above",
            ("number", "number", "window"),
            "boolean",
            "crossed_above(a, b, n)",
            "a crossed above b within the last n bars (a <= b on one bar and a > b on the next)",
        ),
        Function(
            "crossed_below",
            ("number", "number", "window"),
            "boolean",
            "crossed_below(a, b, n)",
            "a crossed below b within the last n bars (a >= b on one bar and a < b on the next)",
        ),
        Function("count", ("boolean", "window"), "number", "count(condition, n)", "bars of the last n where it holds"),
        Function("abs", ("number",), "number", "abs(x)", "absolute value", history=False),
        Function("min", ("number", "number"), "number", "min(a, b)", "the smaller of a and b", history=False),
        Function("max", ("number", "number"), "number", "max(a, b)", "the larger of a and b", history=False),
        Function(
            "weekly",
            ("any",),
            "same",
            "weekly(x)",
            "x computed on weekly bars (a week ends on its last trading day; the current week as it stands)",
            last_only=True,
        ),
    ]
}

NAMES: tuple[str, ...] = (*FIELDS, *FUNCTIONS)
SUBSCORE_FIELDS: dict[str, str] = {f"{name}_score": name for name in _SUBSCORES}


def catalogue() -> dict[str, Any]:
    """The catalogue as JSON: fields, functions, keywords, operators and limits."""
    return {
        "fields": [asdict(f) for f in FIELDS.values()],
        "functions": [asdict(f) for f in FUNCTIONS.values()],
        "keywords": ["and", "or", "not", "true", "false"],
        "operators": ["<", "<=", ">", ">=", "==", "!=", "+", "-", "*", "/"],
        "limits": {"max_length": MAX_LENGTH, "max_depth": MAX_DEPTH, "max_window": MAX_WINDOW},
    }


def markdown() -> str:
    """The reference tables of docs/screens.md, generated from the catalogue."""
    lines = ["| Field | Type | Meaning |", "|---|---|---|"]
    for f in FIELDS.values():
        notes = [n for n, on in (("last bar only", f.last_only), ("cross-sectional", f.cross_sectional)) if on]
        if f.daily_only and not f.last_only:
            notes.append("not inside weekly()")
        extra = f" ({', '.join(notes)})" if notes else ""
        lines.append(f"| `{f.name}` | {f.type} | {f.description}{extra} |")
    lines += ["", "| Function | Returns | Meaning |", "|---|---|---|"]
    for fn in FUNCTIONS.values():
        returns = "the type of x" if fn.returns == "same" else fn.returns
        lines.append(f"| `{fn.signature}` | {returns} | {fn.description} |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- catalogue: generated by python -m engine.screens.catalogue -->", "<!-- /catalogue -->"


def write_reference(path: str) -> None:
    """Replace the generated section of ``path`` (docs/screens.md) with ``markdown()``."""
    from pathlib import Path

    doc = Path(path)
    text = doc.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{markdown()}{END}{tail}")


if __name__ == "__main__":
    write_reference("docs/screens.md")
