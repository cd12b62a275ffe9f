"""New samples for NT3 and TC1 (`candle predict`): the upstream CSV layout (no header, one
sample per row, features only or the label first), streamed in chunks of rows and scaled
by the training data's column max |x| (upstream MaxAbsScaler over train and test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle.api import PredictChunk, PredictInput
from candle_benchmarks.io import DataFileError, _arrow_reason, data_dir, line_blocks

SCALE_BLOCK = 256  # rows per step when taking the training files' max |x|
READ_BUFFER = 1 << 24
LINE_ONLY = "\x1f"  # a delimiter no data file holds: each line is one field


def open_nt3(path: Path, params: dict[str, Any], uq: dict[str, Any] | None, base_dir: Path,
             chunk_rows: int) -> PredictInput:
    from candle_benchmarks.nt3 import data

    return open_expression(path, params, base_dir, chunk_rows, data.synthesize,
                           (data.TRAIN_FILE, data.TEST_FILE), "nt3")


def open_tc1(path: Path, params: dict[str, Any], uq: dict[str, Any] | None, base_dir: Path,
             chunk_rows: int) -> PredictInput:
    from candle_benchmarks.tc1 import data

    return open_expression(path, params, base_dir, chunk_rows, data.synthesize,
                           (data.TRAIN_FILE, data.TEST_FILE), "tc1")


def training_scale(params: dict[str, Any], base_dir: Path,
                   synth: Callable[[dict[str, Any]], tuple[NDArray[np.float32], Any]],
                   files: tuple[str, str]) -> NDArray[np.float32]:
    """The column max |x| the members were trained with (zeros become 1): the synthetic set
    regenerated from the params, or the upstream train and test files (memory-mapped from
    the parse cache, read in blocks of rows)."""
    if params["data"] == "synthetic":
        x, _ = synth(params)
        scale: NDArray[np.float32] = np.abs(x).max(axis=0).astype(np.float32)
        del x
    else:
        from candle_benchmarks.nt3.data import load_csv_pair

        directory = data_dir(params, base_dir)
        x_train, _, x_test, _ = load_csv_pair(directory, *files)
        scale = np.zeros(x_train.shape[1], dtype=np.float32)
        for x in (x_train, x_test):
            for start in range(0, len(x), SCALE_BLOCK):
                np.maximum(scale, np.abs(x[start : start + SCALE_BLOCK]).max(axis=0),
                           out=scale)
    scale[scale == 0] = 1.0
    return scale


def count_rows(path: Path) -> int:
    """Lines of the file (a last line without a newline counts), read in blocks."""
    rows, last = 0, b"\n"
    with path.open("rb") as handle:
        while block := handle.read(READ_BUFFER):
            rows += block.count(b"\n")
            last = block[-1:]
    return rows + (last != b"\n")


def open_expression(path: Path, params: dict[str, Any], base_dir: Path, chunk_rows: int,
                    synth: Callable[[dict[str, Any]], tuple[NDArray[np.float32], Any]],
                    files: tuple[str, str], name: str) -> PredictInput:
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    with path.open("rb") as handle:
        head = [handle.readline() for _ in range(32)]
    line = head[0]
    if not line.strip():
        raise DataFileError(f"{path}: empty file (expected comma-separated rows of numbers)")
    scale = training_scale(params, base_dir, synth, files)
    features = len(scale)
    classes = int(params["classes"])
    expected = (f"{features} comma-separated numbers per row ({name}'s features), or "
                f"{features + 1} with the label (0..{classes - 1}) first; no header")
    width = line.count(b",") + 1
    if width not in (features, features + 1):
        raise DataFileError(f"{path}: {width} values in row 1; expected {expected}")
    labelled = width == features + 1
    # A piece of the file parsed at a time: about chunk_rows rows as long as the longest of
    # the first few (a longer row just makes its piece longer).
    longest = max(len(h) for h in head)
    block = int(longest * 1.05 * max(1, chunk_rows)) + (1 << 12)
    return PredictInput(kind="classification", rows=count_rows(path),
                        chunks=_chunks(path, scale, width, labelled, classes, block,
                                       chunk_rows, expected),
                        labelled=labelled, classes=classes, expected=expected)


def _chunks(path: Path, scale: NDArray[np.float32], width: int, labelled: bool, classes: int,
            block: int, chunk_rows: int, expected: str) -> Iterator[PredictChunk]:
    """Each line is read as one text field and split and parsed in pyarrow's C++ kernels:
    declaring 60,484 float columns instead costs ~0.5 GiB of per-column state and is 4x
    slower."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    done = 0
    parse = pacsv.ParseOptions(delimiter=LINE_ONLY, quote_char=False)
    convert = pacsv.ConvertOptions(column_types={"line": pa.string()})
    for piece in line_blocks(path, block):
        try:
            table = pacsv.read_csv(pa.BufferReader(piece), parse_options=parse,
                                   convert_options=convert, read_options=pacsv.ReadOptions(
                                       column_names=["line"], block_size=len(piece) + 1,
                                       use_threads=False))
        except pa.ArrowInvalid as exc:
            raise DataFileError(f"{path}: {_arrow_reason(str(exc))} (after row {done}); "
                                f"expected {expected}") from None
        del piece
        n = table.num_rows
        if n == 0:
            continue
        fields = pc.split_pattern(table.column(0).combine_chunks(), ",")
        del table
        counts = pc.list_value_length(fields).to_numpy(zero_copy_only=False)
        wrong = np.flatnonzero(counts != width)
        if wrong.size:
            row = int(wrong[0])
            raise DataFileError(f"{path}: {int(counts[row])} values in row {done + row + 1}; "
                                f"expected {expected}")
        try:
            values = pc.cast(pc.list_flatten(fields), pa.float32())
        except pa.ArrowInvalid:
            row, value = _first_bad(fields)
            raise DataFileError(f"{path}: non-numeric value {value!r} at row "
                                f"{done + row + 1}; expected {expected}") from None
        del fields
        matrix = values.to_numpy(zero_copy_only=False).reshape(n, width)
        del values
        labels = None
        if labelled:
            raw = matrix[:, 0]
            bad = np.flatnonzero((raw != np.round(raw)) | (raw < 0) | (raw >= classes))
            if bad.size:
                raise DataFileError(f"{path}: label {raw[bad[0]]:g} at row "
                                    f"{done + int(bad[0]) + 1}, column 1; expected {expected}")
            labels = raw.astype(np.int64)
        x = matrix[:, 1:] / scale if labelled else matrix / scale
        del matrix
        done += n
        for start in range(0, n, chunk_rows):
            yield PredictChunk(x=x[start : start + chunk_rows, :, None],
                               labels=None if labels is None
                               else labels[start : start + chunk_rows])


def _first_bad(fields: Any) -> tuple[int, str]:
    """The first row holding a value that is not a number, and that value (errors only)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for row in range(len(fields)):
        values = fields[row].values
        try:
            pc.cast(values, pa.float32())
        except pa.ArrowInvalid:
            for value in values.to_pylist():
                try:
                    pc.cast(pa.array([value]), pa.float32())
                except pa.ArrowInvalid:
                    return row, str(value)
    return 0, ""
