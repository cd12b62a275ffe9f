"""The compiled one-pass CSV parser (issue 18, ``candle_benchmarks._fastcsv``): every value
it accepts is bit-identical to ``np.float32(float(text))`` (correctly rounded float64, then
float32; the label stays float64), it refuses what is not a plain decimal number with the
offset, and read_labelled_csv gives the same arrays with it and without it, sending only the
blocks it declines to the pyarrow cast path."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from candle_benchmarks import io
from candle_benchmarks.io import read_labelled_csv

try:
    from candle_benchmarks import _fastcsv as fastcsv
except ImportError:  # test_the_compiled_parser_is_built_here says so; the rest skip
    BUILT = False
else:
    BUILT = True
needs_c = pytest.mark.skipif(not BUILT, reason="candle_benchmarks._fastcsv is not built")

EDGES = [
    # exponents: huge, past float32 (-> inf), past float64 (-> inf / 0), subnormal
    "1e308", "1.7976931348623157e308", "1e39", "3.4028235e38", "3.4028236e38", "1e400",
    "1e-320", "4.9e-324", "2.4703282292062328e-324", "1e-400", "1e-45", "7e-46", "1e-38",
    # the exact fast path's edges: mantissa 2^53 and 2^53 + 1, powers of ten 10^22 and 10^23
    "9007199254740992", "9007199254740993", "9007199254740992e22", "9007199254740993e-22",
    "1e22", "1e23", "1e-22", "1e-23", "123456789e-22", "123456789e-23",
    # 19 and more significant digits (the mantissa overflows: strtod)
    "9999999999999999999", "99999999999999999999", "0.12345678901234567890123",
    "1234567890123456789012345678901234567890", "1.0000000000000000000000",
    # float64 lands on a float32 midpoint: ties to even (the double rounding pandas does)
    "1.00000005960464477539062501", "1.000000059604644775390625",
    # leading zeros, signs, exponent spellings, integers
    "0000.0001", "00000000000000000000000000.5", "0", "-0", "+0", "-0.0", "+2.5", "-2.5",
    "1E5", "3e+07", "3e-07", "2.5E-3", "1e0", "1e-0", "7", "-123456789", "4294967296",
    # what parse_value accepts although pyarrow's general reader may spell it differently
    "1.", ".5", "-.5", "+.5e1",
]


def c_parse(text: bytes | bytearray | memoryview, x: NDArray[Any], y: NDArray[Any],
            width: int) -> int:
    """``_fastcsv.parse`` on numpy arrays, as io._fill_block calls it."""
    rows: int = fastcsv.parse(text, x, y, width)
    return rows


def parse(text: bytes | bytearray | memoryview,
          width: int) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Parse ``text`` into arrays of exactly its rows (prefilled, so a row left unwritten
    shows)."""
    capacity = bytes(text).count(b"\n")
    x = np.full((capacity, width - 1), 12345.0, dtype=np.float32)
    y = np.full(capacity, 12345.0, dtype=np.float64)
    assert c_parse(text, x, y, width) == capacity
    return x, y


def bits32(values: Any) -> list[int]:
    bits: list[int] = np.ascontiguousarray(values, np.float32).view(np.uint32).ravel().tolist()
    return bits


def bits64(values: Any) -> list[int]:
    bits: list[int] = np.ascontiguousarray(values, np.float64).view(np.uint64).ravel().tolist()
    return bits


def want32(cells: list[str]) -> NDArray[np.float32]:
    with np.errstate(over="ignore"):  # 1e39 -> inf, as numpy's float64 -> float32 cast does
        return np.array([np.float32(float(cell)) for cell in cells], dtype=np.float32)


def check_rows(cells: list[str], width: int) -> None:
    """``cells`` as rows of ``width`` values (the first of each row is its label)."""
    cells = cells + ["0"] * (-len(cells) % width)
    rows = [cells[i : i + width] for i in range(0, len(cells), width)]
    text = "".join(",".join(row) + "\n" for row in rows).encode()
    x, y = parse(text, width)
    features = [cell for row in rows for cell in row[1:]]
    assert bits32(x) == bits32(want32(features)), features
    labels = [row[0] for row in rows]
    assert bits64(y) == bits64(np.array([float(cell) for cell in labels])), labels


@needs_c
@pytest.mark.parametrize("width", [2, 3, 7])
def test_edge_values_are_correctly_rounded(width: int) -> None:
    check_rows(EDGES, width)


@needs_c
def test_each_edge_value_alone_in_a_long_row() -> None:
    # a value between two long runs of digits (the 8-byte reads) and as the last of a row
    pad = "12345678.87654321"
    for cell in EDGES:
        check_rows([cell, pad, cell, pad, cell], 5)


@needs_c
def test_negative_zero_keeps_its_sign() -> None:
    x, y = parse(b"-0,-0,-0.000,-0e5,0\n", 5)
    assert np.signbit(y[0]) and np.signbit(x[0, :3]).all() and not np.signbit(x[0, 3])


FORMATS = ["{!r}", "{:.9e}", "{:.17g}", "{:.3f}", "{:.0f}", "{:.1E}", "{:.20f}", "{:g}"]


@needs_c
@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1,
                       max_size=40),
       style=st.sampled_from(FORMATS), width=st.integers(2, 9))
def test_random_doubles_in_every_format(values: list[float], style: str, width: int) -> None:
    cells = [style.format(value) for value in values]
    check_rows(cells, width)  # up to 330 digits: "{:.20f}" of 1.8e308


@needs_c
@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False),
                       min_size=1, max_size=40))
def test_float32_values_round_trip(values: list[float]) -> None:
    # NT3's files were written from float32: the shortest repr of each must come back as is
    cells = [repr(float(np.float32(value))) for value in values]
    check_rows(["1", *cells], len(cells) + 1)


@needs_c
@settings(max_examples=300, deadline=None)
@given(sign=st.sampled_from(["", "-", "+"]), whole=st.text("0123456789", max_size=30),
       fraction=st.none() | st.text("0123456789", max_size=30),
       exponent=st.none() | st.tuples(st.sampled_from("eE"), st.sampled_from(["", "-", "+"]),
                                      st.integers(0, 400)))
def test_random_decimal_spellings(sign: str, whole: str, fraction: str | None,
                                  exponent: tuple[str, str, int] | None) -> None:
    if not whole and not fraction:
        whole = "1"
    cell = sign + whole + ("" if fraction is None else "." + fraction)
    if exponent is not None:
        cell += f"{exponent[0]}{exponent[1]}{exponent[2]}"
    check_rows([cell, cell, "5", cell], 4)


@needs_c
@pytest.mark.parametrize(("text", "offset"), [
    (b"0,1,nan\n", 4), (b"0,1,NaN\n", 4), (b"0,inf,2\n", 2), (b"0,1,-inf\n", 4),
    (b"0,1,.\n", 4), (b"0,1,-\n", 4), (b"0,1,+\n", 4), (b"0,1,1e\n", 4), (b"0,1,1e+\n", 4),
    (b"0, 1,2\n", 2), (b"0,1 ,2\n", 3), (b"0,1,2 \n", 5), (b" 0,1,2\n", 0),
    (b"0,1,2\r\n", 5), (b"0,,2\n", 2), (b"0,1,\n", 4), (b",1,2\n", 0),
    (b"0,1,2\n1,2\n", 9), (b"0,1,2\n1,2,3,4\n", 11), (b"0,1,2\n\n", 6),
    (b"0,1,0x10\n", 5), (b"0,1,1_0\n", 5), (b'0,1,"2"\n', 4), (b"0,1,2.5.1\n", 7),
    (b"0,1,1e5.5\n", 7), (b"0;1;2\n", 1), (b"0,1,2\n0,1,\xef\xbb\xbf2\n", 10),
    (b"0,1," + b"1" * 1001 + b"\n", 4),  # over 1,000 digits
    (b"0,1,2", 0), (b"", 0),  # no newline at the end
])
def test_refuses_what_is_not_a_plain_number_and_names_the_offset(text: bytes,
                                                                 offset: int) -> None:
    x = np.zeros((4, 2), dtype=np.float32)
    y = np.zeros(4)
    with pytest.raises(ValueError, match=rf"^offset {offset}\b"):
        c_parse(text, x, y, 3)


@needs_c
@pytest.mark.parametrize(("x_rows", "y_rows"), [(1, 2), (2, 1), (1, 1)])
def test_refuses_more_rows_than_the_arrays_hold(x_rows: int, y_rows: int) -> None:
    x = np.zeros((x_rows, 2), dtype=np.float32)
    y = np.zeros(y_rows)
    with pytest.raises(ValueError, match=r"^offset 6\b"):  # the second row
        c_parse(b"0,1,2\n1,3,4\n", x, y, 3)
    assert c_parse(b"0,1,2\n", x, y, 3) == 1 and x[0].tolist() == [1, 2]


@needs_c
def test_refuses_a_width_under_two_and_arrays_it_cannot_write() -> None:
    x = np.zeros((1, 1), dtype=np.float32)
    y = np.zeros(1)
    with pytest.raises(ValueError, match="width"):
        c_parse(b"0\n", x, y, 1)
    x.flags.writeable = False
    with pytest.raises(TypeError):
        c_parse(b"0,1\n", x, y, 2)


@needs_c
def test_parses_every_buffer_type() -> None:
    text = b"1,2.5\n2,-3\n"
    for buffer in (text, bytearray(text), memoryview(text)):
        x, y = parse(buffer, 2)
        assert x.ravel().tolist() == [2.5, -3] and y.tolist() == [1, 2]


@needs_c
@pytest.mark.parametrize("text", [b"", b"x", b"\n", b"a\nb\n\n", b"0,1\r\n" * 100,
                                  b"\n" * 4097 + b"tail", b"1,2\n" * 12345])
def test_lines_counts_newlines(text: bytes) -> None:
    for buffer in (text, bytearray(text), memoryview(text)):
        assert fastcsv.lines(buffer) == text.count(b"\n")


def test_the_compiled_parser_is_built_here() -> None:
    # `make test` and CI install with a C compiler; without one pip skips the optional
    # extension silently and every NT3/TC1 load takes the ~2x slower pyarrow path.
    try:
        import candle_benchmarks._fastcsv  # noqa: F401
    except ImportError as exc:
        pytest.fail("candle_benchmarks._fastcsv (benchmarks/candle_benchmarks/_fastcsv.c) "
                    f"was not built: reinstall with a C compiler (pip install -e .): {exc}")
    assert io._fastcsv is not None, "candle_benchmarks.io did not pick up the compiled parser"


# --- read_labelled_csv with and without the compiled parser ---


def mixed_file(path: Path) -> list[str]:
    """Rows of plain numbers, some with nan/inf (the C parser declines those blocks); the
    lines, for the caller to find which blocks hold them."""
    rng = np.random.default_rng(18)
    lines = []
    for i in range(120):
        values = [f"{v:.9e}" if i % 2 else repr(float(v)) for v in rng.normal(0, 1e3, 9)]
        if i % 17 == 5:
            values[i % 9] = ["nan", "inf", "-inf", "NaN"][i % 4]
        lines.append(",".join([str(i % 3), *values]))
    path.write_text("\n".join(lines) + "\n")
    return lines


def spy_parse_block(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    seen: list[bytes] = []
    lock = threading.Lock()
    real = io._parse_block

    def spy(piece: bytes | bytearray, width: int) -> NDArray[np.float64]:
        with lock:
            seen.append(bytes(piece))  # before the parse overwrites its separators
        return real(piece, width)

    monkeypatch.setattr(io, "_parse_block", spy)
    return seen


@needs_c
@pytest.mark.parametrize("block", [1, 300, 2000, 1 << 24])
def test_compiled_and_pyarrow_paths_agree_on_a_mixed_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    path = tmp_path / "mixed.csv"
    lines = mixed_file(path)
    monkeypatch.setattr(io, "LABELLED_BLOCK", block)
    pieces = [bytes(piece) for piece in io.line_blocks(path, block)]
    declined = sorted(p for p in pieces if any(w in p for w in (b"nan", b"NaN", b"inf")))
    assert 0 < len(declined) < len(pieces) or block == 1 << 24

    seen = spy_parse_block(monkeypatch)
    x, y = read_labelled_csv(path)
    assert sorted(seen) == declined, "the per-block fallback ran for plain blocks too"

    seen.clear()
    monkeypatch.setattr(io, "_fastcsv", None)
    want_x, want_y = read_labelled_csv(path)
    assert sorted(seen) == sorted(pieces), "without _fastcsv every block goes to pyarrow"

    assert x.dtype == np.float32 and x.flags.c_contiguous and y.dtype == np.int64
    assert x.shape == (len(lines), 9) and bits32(x) == bits32(want_x)
    assert np.array_equal(y, want_y)
    cells = [line.split(",") for line in lines]
    assert bits32(x) == bits32(want32([c for row in cells for c in row[1:]]))
    assert np.isnan(x).sum() == sum(line.count("nan") + line.count("NaN") for line in lines)


@needs_c
def test_a_file_neither_block_path_parses_goes_to_the_table_reader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "spaced.csv"
    path.write_text("0,1.5,2\n1,3,4\n2, 5,6\n")
    monkeypatch.setattr(io, "LABELLED_BLOCK", 1)
    seen = spy_parse_block(monkeypatch)
    x, y = read_labelled_csv(path)
    assert seen == [b"2, 5,6\n"]  # only the block the C parser declined, then the table
    assert x.tolist() == [[1.5, 2], [3, 4], [5, 6]] and y.tolist() == [0, 1, 2]
