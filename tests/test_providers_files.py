"""The parquet and csv providers: reading, slicing and rejecting bad files."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq
import pytest

from engine.types import Bars, Instrument
from market.providers import (
    DataProviderError,
    DataSourceError,
    DemoProvider,
    FileProvider,
    MarketDataProvider,
    UnknownProviderError,
    get_provider,
)

FIELDS = ("dates", "open", "high", "low", "close", "volume")
UNIVERSE = "symbol,name,sector\nAAA,Alpha Inc,Energy\nBBB,Beta Corp, Utilities \nZZZ,Zeta Ltd,Materials\n"


def same_bars(a: Bars, b: Bars) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=f != "dates") for f in FIELDS)


def small_table() -> pa.Table:
    """Two symbols over five weekdays (BBB misses one), rows deliberately unsorted."""
    dates = [date(2020, 1, d) for d in (6, 7, 8, 9, 10)]
    rows = [("AAA", d, 10.0 + i, 11.0 + i, 9.5 + i, 10.5 + i, 1000 + i) for i, d in enumerate(dates)]
    rows += [
        ("BBB", d, 50.0 - i, 51.0 - i, 48.0 - i, 49.5 - i, 20_000 * (i + 1)) for i, d in enumerate(dates) if i != 2
    ]
    rows.reverse()
    columns = list(zip(*rows, strict=True))
    names = ["symbol", "date", "open", "high", "low", "close", "volume"]
    return pa.table(dict(zip(names, columns, strict=True)))


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def parquet_dir(tmp_path: Path) -> Path:
    pq.write_table(small_table(), tmp_path / "bars.parquet")
    write_csv(tmp_path / "universe.csv", UNIVERSE)
    return tmp_path


@pytest.fixture
def csv_dir(tmp_path: Path) -> Path:
    pv.write_csv(small_table(), tmp_path / "bars.csv")
    write_csv(tmp_path / "universe.csv", UNIVERSE)
    return tmp_path


@pytest.fixture(scope="module")
def real(market_dir: Path) -> FileProvider:
    return FileProvider("parquet", market_dir / "prices.parquet")


def constituents(market_dir: Path) -> list[dict[str, str]]:
    with (market_dir / "constituents.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_real_parquet_gives_505_instruments_with_their_sectors(real: FileProvider, market_dir: Path) -> None:
    rows = constituents(market_dir)
    instruments = real.instruments()
    assert real.name == "parquet" and real.synthetic is False
    assert isinstance(real, MarketDataProvider)
    assert len(instruments) == 505
    expected = [Instrument(r["symbol"], r["name"], r["sector"]) for r in rows]
    assert instruments == sorted(expected, key=lambda i: i.symbol)


def test_the_real_parquet_gives_every_symbol_its_full_history(
    real: FileProvider, market_dir: Path, real_bars: dict[str, Bars]
) -> None:
    rows = constituents(market_dir)
    bars = real.bars([r["symbol"] for r in rows], date(2018, 2, 7), 10_000)
    assert {s: len(b) for s, b in bars.items()} == {r["symbol"]: int(r["rows"]) for r in rows}
    assert all(str(bars[r["symbol"]].dates[0]) == r["first_date"] for r in rows)
    assert all(same_bars(bars[s], real_bars[s]) for s in bars)
    assert all(b.close.dtype == np.float64 and b.volume.dtype == np.float64 for b in bars.values())


def test_the_real_calendar_is_the_1259_market_days(real: FileProvider) -> None:
    calendar = real.calendar()
    assert calendar.dtype == np.dtype("datetime64[D]") and len(calendar) == 1259
    assert real.date_range() == (date(2013, 2, 8), date(2018, 2, 7))
    assert np.is_busday(calendar).all()


def test_bars_never_look_past_as_of(real: FileProvider, real_bars: dict[str, Bars]) -> None:
    sunday = date(2016, 6, 19)
    window = real.bars(["AAPL"], sunday, 50)["AAPL"]
    full = real_bars["AAPL"]
    end = int(np.searchsorted(full.dates, np.datetime64(sunday), side="right"))
    assert len(window) == 50
    assert window.dates[-1] == np.datetime64("2016-06-17")
    assert same_bars(window, Bars(*(getattr(full, f)[end - 50 : end] for f in FIELDS)))


def test_a_short_history_gives_fewer_bars_than_the_lookback(real: FileProvider) -> None:
    bars = real.bars(["APTV"], date(2018, 2, 7), 250)
    assert len(bars["APTV"]) == 44


def test_symbols_without_bars_by_as_of_or_unknown_are_absent(real: FileProvider) -> None:
    bars = real.bars(["APTV", "AAPL", "NOPE"], date(2017, 6, 1), 20)
    assert set(bars) == {"AAPL"}


def test_returned_windows_are_copies_that_cannot_change_the_source(real: FileProvider) -> None:
    window = real.bars(["AAPL"], date(2018, 2, 7), 5)["AAPL"]
    window.close[:] = 0
    assert real.bars(["AAPL"], date(2018, 2, 7), 5)["AAPL"].close.min() > 0


def test_csv_and_parquet_of_the_same_data_give_identical_bars(parquet_dir: Path, csv_dir: Path) -> None:
    from_parquet = FileProvider("parquet", parquet_dir / "bars.parquet")
    from_csv = FileProvider("csv", csv_dir / "bars.csv")
    a = from_parquet.bars(["AAA", "BBB"], date(2020, 1, 10), 10)
    b = from_csv.bars(["AAA", "BBB"], date(2020, 1, 10), 10)
    assert a.keys() == b.keys() == {"AAA", "BBB"}
    assert all(same_bars(a[s], b[s]) for s in a)
    assert list(a["BBB"].dates.astype(str)) == ["2020-01-06", "2020-01-07", "2020-01-09", "2020-01-10"]
    assert np.array_equal(from_parquet.calendar(), from_csv.calendar())
    assert len(from_csv.calendar()) == 5


def test_parquet_dictionary_symbols_timestamps_and_integer_prices_read_like_plain_columns(
    tmp_path: Path, parquet_dir: Path
) -> None:
    table = small_table()
    dates = pa.array([np.datetime64(d, "ms") + np.timedelta64(9, "h") for d in table.column("date").to_pylist()])
    odd = table.set_column(0, "symbol", table.column("symbol").dictionary_encode())
    odd = odd.set_column(1, "date", dates).set_column(
        3, "high", pa.array(np.ceil(table.column("high").to_numpy()).astype(np.int64))
    )
    pq.write_table(odd, tmp_path / "odd.parquet")
    got = FileProvider("parquet", tmp_path / "odd.parquet").bars(["AAA", "BBB"], date(2020, 1, 10), 10)
    plain = FileProvider("parquet", parquet_dir / "bars.parquet").bars(["AAA", "BBB"], date(2020, 1, 10), 10)
    for symbol in ("AAA", "BBB"):
        assert np.array_equal(got[symbol].dates, plain[symbol].dates)
        assert np.array_equal(got[symbol].high, np.ceil(plain[symbol].high))
        assert np.array_equal(got[symbol].close, plain[symbol].close)


def test_a_folder_of_files_is_read_as_one_source(tmp_path: Path, parquet_dir: Path) -> None:
    table = small_table()
    folder = tmp_path / "bars"
    folder.mkdir()
    pq.write_table(table.slice(0, 4), folder / "part-1.parquet")
    pq.write_table(table.slice(4), folder / "part-2.parquet")
    write_csv(folder / "universe.csv", UNIVERSE)
    split = FileProvider("parquet", folder).bars(["AAA", "BBB"], date(2020, 1, 10), 10)
    whole = FileProvider("parquet", parquet_dir / "bars.parquet").bars(["AAA", "BBB"], date(2020, 1, 10), 10)
    assert all(same_bars(split[s], whole[s]) for s in whole)


def test_a_csv_folder_skips_its_universe_file(csv_dir: Path) -> None:
    write_csv(csv_dir / "constituents.csv", UNIVERSE)
    provider = FileProvider("csv", csv_dir)
    assert set(provider.bars(["AAA", "BBB"], date(2020, 1, 10), 3)) == {"AAA", "BBB"}


def test_the_universe_is_found_next_to_the_data_and_taken_as_given(parquet_dir: Path) -> None:
    write_csv(parquet_dir / "constituents.csv", "symbol,name,sector\nQQQ,Other,Energy\n")
    provider = FileProvider("parquet", parquet_dir / "bars.parquet")
    assert provider.instruments() == [
        Instrument("AAA", "Alpha Inc", "Energy"),
        Instrument("BBB", "Beta Corp", "Utilities"),
        Instrument("ZZZ", "Zeta Ltd", "Materials"),
    ]
    (parquet_dir / "universe.csv").unlink()
    assert [i.symbol for i in provider.instruments()] == ["AAA", "BBB", "ZZZ"]  # read once per provider
    assert [i.symbol for i in FileProvider("parquet", parquet_dir).instruments()] == ["QQQ"]


def test_bars_of_a_symbol_outside_the_universe_are_still_returned(parquet_dir: Path) -> None:
    write_csv(parquet_dir / "universe.csv", "symbol,name,sector\nAAA,Alpha Inc,Energy\n")
    provider = FileProvider("parquet", parquet_dir)
    assert [i.symbol for i in provider.instruments()] == ["AAA"]
    assert set(provider.bars(["BBB"], date(2020, 1, 10), 2)) == {"BBB"}


def test_column_names_ignore_case_and_extra_columns_are_ignored(tmp_path: Path) -> None:
    bars = "Date,SYMBOL,Open,High,Low,Close,Volume,Note\n2020-01-06, AAA ,1,2,0.5,1.5,100,x\n"
    write_csv(tmp_path / "bars.csv", bars)
    write_csv(tmp_path / "u.csv", "Sector,Symbol,Name,Weight\nEnergy,AAA,Alpha,1\n")
    provider = FileProvider("csv", tmp_path / "bars.csv", tmp_path / "u.csv")
    assert provider.instruments() == [Instrument("AAA", "Alpha", "Energy")]
    assert provider.bars(["AAA"], date(2020, 1, 6), 5)["AAA"].close.tolist() == [1.5]


def test_an_empty_price_is_kept_as_nan_for_validation_to_flag(tmp_path: Path) -> None:
    write_csv(tmp_path / "bars.csv", "symbol,date,open,high,low,close,volume\nAAA,2020-01-06,1,2,0.5,,100\n")
    bars = FileProvider("csv", tmp_path / "bars.csv", tmp_path / "bars.csv").bars(["AAA"], date(2020, 1, 6), 5)
    assert np.isnan(bars["AAA"].close[0]) and bars["AAA"].open[0] == 1.0


def test_construction_reads_nothing_and_the_first_use_reports_a_missing_path(tmp_path: Path) -> None:
    provider = FileProvider("parquet", tmp_path / "nowhere.parquet")
    with pytest.raises(DataSourceError, match=r"nowhere\.parquet does not exist"):
        provider.calendar()


BAD_BARS = {
    "missing columns": ("symbol,date,open,close\nAAA,2020-01-06,1,2\n", r"missing column\(s\) high, low, volume"),
    "a bad date": (
        "symbol,date,open,high,low,close,volume\nAAA,2020-01-06,1,2,0.5,1.5,100\nAAA,06/01/2020,1,2,0.5,1.5,1\n",
        r"column 'date' has a value that is not a date.*06/01/2020",
    ),
    "a bad number": (
        "symbol,date,open,high,low,close,volume\nAAA,2020-01-06,1,2,0.5,abc,100\n",
        r"column 'close' has a value that is not a number.*abc",
    ),
    "a duplicate bar": (
        "symbol,date,open,high,low,close,volume\n"
        "AAA,2020-01-06,1,2,0.5,1.5,1\nBBB,2020-01-07,1,2,0.5,1.5,1\nBBB,2020-01-07,1,2,0.5,1.5,1\n",
        r"duplicate bar for BBB on 2020-01-07",
    ),
    "a blank symbol": (
        "symbol,date,open,high,low,close,volume\n ,2020-01-06,1,2,0.5,1.5,1\n",
        r"'symbol' has an empty",
    ),
    "a ragged row": ("symbol,date,open,high,low,close,volume\nAAA,2020-01-06,1,2\n", r"cannot parse .*bars\.csv"),
    "no rows": ("symbol,date,open,high,low,close,volume\n", r"holds no bars"),
    "an empty file": ("", r"bars\.csv is empty"),
}


@pytest.mark.parametrize("case", BAD_BARS)
def test_a_malformed_bars_file_raises_a_data_source_error_naming_the_problem(tmp_path: Path, case: str) -> None:
    text, message = BAD_BARS[case]
    path = write_csv(tmp_path / "bars.csv", text)
    with pytest.raises(DataSourceError, match=message) as info:
        FileProvider("csv", path, tmp_path / "bars.csv").calendar()
    assert "\n" not in str(info.value)


def test_a_corrupt_parquet_file_raises_a_data_source_error(tmp_path: Path) -> None:
    (tmp_path / "bars.parquet").write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(DataSourceError, match=r"cannot read .*bars\.parquet as Parquet"):
        FileProvider("parquet", tmp_path / "bars.parquet").calendar()


def test_a_parquet_file_missing_columns_names_them(tmp_path: Path) -> None:
    pq.write_table(small_table().drop_columns(["low", "volume"]), tmp_path / "bars.parquet")
    with pytest.raises(DataSourceError, match=r"missing column\(s\) low, volume"):
        FileProvider("parquet", tmp_path / "bars.parquet").calendar()


def test_a_folder_without_bar_files_raises_a_data_source_error(tmp_path: Path) -> None:
    write_csv(tmp_path / "universe.csv", UNIVERSE)
    with pytest.raises(DataSourceError, match=r"no \*\.parquet bar files in folder"):
        FileProvider("parquet", tmp_path).bars(["AAA"], date(2020, 1, 6), 1)
    with pytest.raises(DataSourceError, match=r"no \*\.csv bar files in folder"):
        FileProvider("csv", tmp_path).calendar()


BAD_UNIVERSES = {
    "missing columns": ("symbol,company\nAAA,Alpha\n", r"missing column\(s\) name, sector"),
    "a repeated symbol": ("symbol,name,sector\nAAA,A,Energy\nBBB,B,Energy\nAAA,A2,Energy\n", r"AAA is listed more"),
    "a blank symbol": ("symbol,name,sector\nAAA,A,Energy\n,B,Energy\n", r"line 3 has no symbol"),
}


@pytest.mark.parametrize("case", BAD_UNIVERSES)
def test_a_malformed_universe_raises_a_data_source_error_naming_the_problem(parquet_dir: Path, case: str) -> None:
    text, message = BAD_UNIVERSES[case]
    write_csv(parquet_dir / "universe.csv", text)
    with pytest.raises(DataSourceError, match=message):
        FileProvider("parquet", parquet_dir).instruments()


def test_a_missing_universe_says_how_to_pass_one(tmp_path: Path) -> None:
    pq.write_table(small_table(), tmp_path / "bars.parquet")
    with pytest.raises(DataSourceError, match="TECHNIC_UNIVERSE_PATH or --universe-file"):
        FileProvider("parquet", tmp_path / "bars.parquet").instruments()
    with pytest.raises(DataSourceError, match=r"universe file .*gone\.csv does not exist"):
        FileProvider("parquet", tmp_path, tmp_path / "gone.csv").instruments()


def test_get_provider_builds_each_provider_by_name(parquet_dir: Path, csv_dir: Path) -> None:
    demo = get_provider(" Demo ", n_symbols=20, seed=3)
    assert isinstance(demo, DemoProvider) and demo.synthetic and len(demo.instruments()) == 20
    parquet = get_provider("parquet", parquet_dir / "bars.parquet")
    assert isinstance(parquet, FileProvider) and parquet.name == "parquet" and not parquet.synthetic
    csv_provider = get_provider("csv", str(csv_dir), str(csv_dir / "universe.csv"))
    assert isinstance(csv_provider, FileProvider) and csv_provider.name == "csv"
    assert len(csv_provider.instruments()) == 3


def test_get_provider_rejects_an_unknown_name_listing_the_valid_ones() -> None:
    with pytest.raises(UnknownProviderError, match="demo, parquet, csv, polygon") as info:
        get_provider("yahoo")
    assert isinstance(info.value, DataProviderError)


def test_get_provider_explains_what_a_provider_is_missing() -> None:
    with pytest.raises(DataProviderError, match="TECHNIC_DATA_PATH"):
        get_provider("csv")
    with pytest.raises(DataProviderError, match="needs an API key: set POLYGON_API_KEY"):
        get_provider("polygon")
    with pytest.raises(DataProviderError, match=r"unknown option.*colour"):
        get_provider("demo", colour="red")
