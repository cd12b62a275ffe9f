"""read_labelled_csv (issue 18): the streamed block parser gives what a plain reader gives,
across block boundaries and a wrong row estimate; files it does not parse (CRLF, blank
lines, spaces, a word, a short row) go to pyarrow's CSV reader, which parses or names the
bad cell. Every test runs with the compiled one-pass parser (``_fastcsv``) and without it
(the pyarrow cast path a machine without a C compiler runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from candle_benchmarks import io
from candle_benchmarks.io import DataFileError, read_labelled_csv


@pytest.fixture(autouse=True, params=["compiled", "pyarrow"])
def block_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "compiled":
        if io._fastcsv is None:
            pytest.skip("candle_benchmarks._fastcsv is not built (see test_fastcsv.py)")
    else:
        monkeypatch.setattr(io, "_fastcsv", None)
    return str(request.param)


def expected(text: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [[float(v) for v in line.split(",")] for line in text.splitlines() if line.strip()]
    matrix = np.array(rows, dtype=np.float32)
    return matrix[:, 1:], matrix[:, 0].astype(np.int64)


@pytest.mark.parametrize("block", [1, 64, 1 << 24])
def test_blocks_parse_like_a_plain_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          block: int) -> None:
    monkeypatch.setattr(io, "LABELLED_BLOCK", block)
    rng = np.random.default_rng(3)
    # long rows first, then short ones: the first block's row estimate is too low
    lines = [",".join([str(i % 3)] + [f"{v:.9e}" for v in rng.normal(0, 1e3, 7)])
             for i in range(20)]
    lines += [",".join([str(i % 2)] + [f"{v:.2f}" for v in rng.random(7)]) for i in range(200)]
    lines += ["1,-0,1e-3,+2.5,3E2,-inf,nan,7"]
    text = "\n".join(lines)  # no newline after the last row
    path = tmp_path / "rows.csv"
    path.write_text(text)
    x, y = read_labelled_csv(path)
    want_x, want_y = expected(text)
    assert x.dtype == np.float32 and x.flags.c_contiguous and y.dtype == np.int64
    assert np.array_equal(x, want_x, equal_nan=True) and np.array_equal(y, want_y)


@pytest.mark.parametrize("text", ["0,1.5,2\r\n1,3,4\r\n", "0,1.5,2\n\n1,3,4\n",
                                  "0, 1.5,2\n1,3,4\n"])
def test_files_the_block_parser_declines_are_read_by_pyarrow(tmp_path: Path, text: str) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(text.encode())
    x, y = read_labelled_csv(path)
    assert np.array_equal(x, [[1.5, 2], [3, 4]]) and list(y) == [0, 1]


@pytest.mark.parametrize(("text", "words"), [
    ("0,1,2\n1,oops,4\n", "non-numeric value 'oops' at row 2, column 2"),
    ("0,1,2\n1,3\n", "Expected 3 columns, got 2"),
    ("0.5,1,2\n", "column 1 (the label) must hold integers"),
])
def test_bad_files_name_the_problem(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataFileError, match=r"bad\.csv: ") as info:
        read_labelled_csv(path)
    assert words in str(info.value)


@pytest.mark.parametrize("text", ["0,.5,2\n1,3,4\n", "0,-1.5,2\n1,3,nan\n", "0,,2\n1,3,4\n",
                                  "0,1.5,2\n1,3,4\n"])
def test_both_block_paths_and_the_fallback_agree_with_pyarrows_reader(tmp_path: Path,
                                                                     text: str) -> None:
    path = tmp_path / "cells.csv"
    path.write_text(text)
    x, y = read_labelled_csv(path)
    want_x, want_y = io._read_labelled_table(path)
    assert np.array_equal(x, want_x, equal_nan=True) and np.array_equal(y, want_y)


def test_an_infinite_label_is_not_an_integer(tmp_path: Path) -> None:
    path = tmp_path / "inf.csv"
    path.write_text("1,1.5,2\ninf,3,4\n")
    with pytest.raises(DataFileError, match="column 1 \\(the label\\) must hold integers"):
        read_labelled_csv(path)
