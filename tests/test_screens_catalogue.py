"""The one catalogue drives the docs and the evaluator: every name it lists is documented as
generated, and every field and function it lists can be evaluated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.panel import build_panel
from engine.screens.catalogue import BEGIN, END, FIELDS, FUNCTIONS, markdown
from engine.screens.evaluate import evaluate
from engine.screens.language import parse
from engine.screens.series import Benchmark, Source
from engine.types import Bars

DOC = Path(__file__).resolve().parents[1] / "docs" / "screens.md"


def test_the_reference_in_docs_screens_md_is_the_catalogue_as_generated() -> None:
    section = DOC.read_text().split(BEGIN, 1)[1].split(END, 1)[0]
    assert section.strip() == markdown().strip(), "run: python -m engine.screens.catalogue"


def bars(n: int, seed: int) -> Bars:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    dates = np.busday_offset("2015-01-02", np.arange(n), roll="forward").astype("datetime64[D]")
    spread = close * 0.01
    return Bars(
        dates, close, close + spread, close - spread, close * (1 + rng.normal(0, 0.002, n)), rng.uniform(1e5, 1e6, n)
    )


def test_every_field_and_function_of_the_catalogue_evaluates_on_a_panel() -> None:
    panel = build_panel([bars(400, 1), bars(300, 2)])
    last = {name: np.array([1.0, 2.0]) for name, f in FIELDS.items() if f.last_only}
    dates = np.unique(panel.dates[~np.isnat(panel.dates)])
    source = Source(panel, last, Benchmark(dates, np.linspace(1, 2, len(dates)), "test"))
    for name, spec in FIELDS.items():
        node = parse(f"{name} == {name}", want="boolean").root
        assert evaluate(node, source).shape == (2, 1), name
        if not spec.last_only:
            assert source.tail(name, 5).shape == (2, 5), name
    for name, fn in FUNCTIONS.items():
        args = {"number": "close", "boolean": "gap_up", "any": "close", "window": "3"}
        text = f"{name}({', '.join(args[p] for p in fn.params)})"
        node = parse(f"{text} == {text}", want="boolean").root
        assert evaluate(node, source).shape == (2, 1), name
