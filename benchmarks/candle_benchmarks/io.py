"""Fast readers for the upstream file formats, with one clear error per broken file."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle.api import DataError

_fastcsv: ModuleType | None
try:  # compiled at install time where a C compiler is present (optional in pyproject.toml)
    from candle_benchmarks import _fastcsv
except ImportError:  # pragma: no cover - the pyarrow block path does the same work
    _fastcsv = None


class DataFileError(DataError):
    """A missing or malformed data file; the message names the file and the problem (a
    ValueError; `candle predict` shows it as a user error)."""


LABELLED_BLOCK = 1 << 24  # bytes of text parsed at a time (~16 MB: a few dozen NT3 rows)
COMMA, NEWLINE, ZERO, NINE = (ord(c) for c in ",\n09")


def read_labelled_csv(path: Path) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """No header, label in column 0, float features after (NT3/TC1 upstream format).

    Streamed: the file is read in blocks of whole lines (:func:`line_blocks`), parsed on a
    few threads by the compiled one-pass parser (``_fastcsv``; a block it declines, or a
    machine without it, by pyarrow's cast), and the rows go straight into the features
    matrix (no table of 60,484 columns). A file that is not plain ``number,number...`` lines (CRLF,
    blanks, quotes, a short row, a word) is read again by pyarrow's CSV reader, which
    either parses it or names the bad cell in the error.
    """
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        return _read_labelled_blocks(path)
    except _NotPlain:
        return _read_labelled_table(path)


class _NotPlain(Exception):
    """The fast reader met something it does not parse; the general reader decides."""


def line_blocks(path: Path, block: int) -> Iterator[bytes | bytearray]:
    """The file in pieces of about ``block`` bytes, each ending at a line end (a line longer
    than the block makes its piece longer). Read here, one piece at a time: pyarrow's
    streaming reader reads ahead several blocks of its own (~0.7 GB at 60,484 columns)."""
    rest = b""
    with path.open("rb", buffering=0) as handle:
        while True:
            data = bytearray(len(rest) + block)  # the last piece's tail, then new bytes
            data[: len(rest)] = rest
            got = handle.readinto(memoryview(data)[len(rest) :])
            if not got:
                break
            del data[len(rest) + got :]
            cut = data.rfind(b"\n") + 1
            rest = bytes(data[cut:])
            if cut:
                del data[cut:]  # in place: no copy of the piece
                yield data
    if rest.strip():
        yield rest


def _parse_block(piece: bytes | bytearray, width: int) -> NDArray[np.float64]:
    """Whole lines of ``width`` comma-separated numbers -> a (rows, width) float64 array
    (pyarrow's cast to float64 is ~25% faster than to float32; the caller's copy into the
    float32 matrix rounds, as upstream's pandas float64 -> float32 does).

    The separators' positions become the offsets of an Arrow string array over the block
    itself (no copy of the text), and one cast parses every value in C++. Where every value
    starts with a digit (no sign, no nan, no ".5"), each separator is overwritten by "0" and
    each value's string starts there ("0" + "1.25"); otherwise the strings alternate value,
    separator, with every separator slot null (a little slower)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not piece.endswith(b"\n"):
        piece = bytearray(piece)
        piece += b"\n"
    text = np.frombuffer(piece, dtype=np.uint8)
    # Numbers are made of + - . 0-9 e E n a i f: of those bytes only "+" sorts before ","
    # (as do "\n" and what a plain file does not hold: the count below catches that), so
    # one comparison finds the separators unless there is a "+".
    seps = np.flatnonzero(text <= COMMA if piece.find(b"+") < 0
                          else (text == COMMA) | (text == NEWLINE))
    n = len(seps)
    if n == 0 or n % width:
        raise _NotPlain
    found = text[seps]
    ends = found == NEWLINE  # each row: width - 1 commas, then its newline
    rows = int(np.count_nonzero(ends))
    if (rows != n // width or rows + int(np.count_nonzero(found == COMMA)) != n
            or not ends[width - 1 :: width].all()):
        raise _NotPlain  # a short or long row, or a space, CR, quote... among the numbers
    del found, ends
    starts = np.take(text[1:], seps[:-1])  # the first byte of every value but the first
    if text.flags.writeable and (n == 1 or (starts.min() >= ZERO and starts.max() <= NINE)):
        text[seps] = ZERO  # the block is ours (a bytearray): "1.5,2\n" -> "1.502" + "0"
        offsets = np.empty(n + 1, dtype=np.int32)
        offsets[0] = 0
        offsets[1:] = seps
        strings = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(piece))
        step = 1
    else:
        offsets = np.empty(2 * n + 1, dtype=np.int32)
        offsets[0] = 0
        offsets[1::2] = seps
        offsets[2::2] = seps + 1
        valid = np.full((2 * n + 7) // 8, 0x55, dtype=np.uint8)  # bits 0, 2, 4..: values
        strings = pa.StringArray.from_buffers(2 * n, pa.py_buffer(offsets),
                                              pa.py_buffer(piece), pa.py_buffer(valid),
                                              null_count=n)
        step = 2
    del seps, starts
    try:
        parsed = pc.cast(strings, pa.float64(), memory_pool=pa.system_memory_pool())
    except pa.ArrowInvalid:
        raise _NotPlain from None  # the general reader reads the file again
    values = np.frombuffer(parsed.buffers()[1], dtype=np.float64, count=step * n,
                           offset=parsed.offset * 8)
    return values[::step].reshape(n // width, width)


def _fill_block(piece: bytes | bytearray, x: NDArray[np.float32], y: NDArray[np.float64],
                width: int) -> None:
    """Parse one block of whole lines into its rows of ``x`` (features) and ``y`` (labels).

    The C parser (``_fastcsv``, one pass, ~1 ns a byte) takes plain decimal numbers; a block
    it declines (nan, inf, hex, spaces ...) or a machine without the compiled module uses
    the separator + pyarrow cast path, which declines what is not plain for the caller's
    general reader."""
    if _fastcsv is not None:
        try:
            if _fastcsv.parse(piece, x, y, width) == len(y):
                return
        except ValueError:
            pass
    block = _parse_block(piece, width)
    if len(block) != len(y):
        raise _NotPlain
    x[:] = block[:, 1:]
    y[:] = block[:, 0]


def _read_labelled_blocks(path: Path) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Blocks parsed on up to 8 threads (the parsers release the GIL) straight into their
    rows of a features matrix sized from the first block's bytes per row: each block's rows
    are counted (its newlines) before it is handed out, so its place is known; a block past
    the estimate waits for the blocks in flight and grows the matrix (untouched pages of an
    over-estimate are never resident)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    with path.open("rb") as handle:
        first = handle.readline()
    width = first.count(b",") + 1
    if width < 2 or not first.strip():
        raise _NotPlain
    size = path.stat().st_size
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, min(8, cpus or 1))
    x = np.empty((0, width - 1), dtype=np.float32)
    y = np.empty(0, dtype=np.float64)
    rows = 0
    pending: deque[Future[None]] = deque()
    with ThreadPoolExecutor(threads) as pool:
        try:
            for piece in line_blocks(path, LABELLED_BLOCK):
                if not piece.endswith(b"\n"):
                    piece = bytearray(piece) + b"\n"
                n = piece.count(b"\n") if _fastcsv is None else _fastcsv.lines(piece)
                if rows + n > len(x):
                    while pending:  # nobody writes into the old matrix while it is copied
                        pending.popleft().result()
                    estimate = (int(size / len(piece) * n * 1.05) + 64 if not len(x)
                                else int((rows + n) * 1.5))
                    grown = np.empty((max(rows + n, estimate), width - 1), dtype=np.float32)
                    grown[:rows] = x[:rows]
                    x = grown
                    y = np.concatenate([y[:rows], np.empty(len(x) - rows)])
                pending.append(pool.submit(_fill_block, piece, x[rows : rows + n],
                                           y[rows : rows + n], width))
                rows += n
                del piece
                while len(pending) > threads:
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
    if not rows:
        raise _NotPlain
    labels = y[:rows]
    if not (np.all(np.isfinite(labels)) and np.all(labels == np.round(labels))):
        raise DataFileError(f"{path}: column 1 (the label) must hold integers")
    return x[:rows], labels.astype(np.int64)


def _read_labelled_table(path: Path) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The general reader: pyarrow's multithreaded CSV reader with every column declared
    float32 (no type inference, half the memory of float64). A file that does not parse that
    way is read again with inference only to name the bad cell in the error."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with path.open("rb") as handle:
        width = handle.readline().count(b",") + 1
    names = [f"c{i}" for i in range(width)]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 26),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.float32() for name in names}),
        )
    except pa.ArrowInvalid:
        table = _read_inferred(path)  # raises the precise DataFileError
    if table.num_columns < 2:
        raise DataFileError(f"{path}: expected a label column and features, found "
                            f"{table.num_columns} column")
    matrix = np.empty((table.num_rows, table.num_columns), dtype=np.float32)
    for index, column in enumerate(table.columns):
        matrix[:, index] = column.to_numpy()
    labels = matrix[:, 0]
    if not (np.all(np.isfinite(labels)) and np.all(labels == np.round(labels))):
        raise DataFileError(f"{path}: column 1 (the label) must hold integers")
    return matrix[:, 1:], labels.astype(np.int64)


def _read_inferred(path: Path) -> Any:
    """The slow path, for errors: let pyarrow infer types and find what is not a number."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(autogenerate_column_names=True,
                                                 block_size=1 << 26))
    except pa.ArrowInvalid as exc:
        raise DataFileError(f"{path}: {_arrow_reason(str(exc))}") from None
    for index, column in enumerate(table.columns):
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            row = _first_non_numeric(column.to_pylist())
            raise DataFileError(f"{path}: non-numeric value {row[1]!r} at row {row[0] + 1}, "
                                f"column {index + 1}")
    raise DataFileError(f"{path}: cannot be read as numbers")


def _first_non_numeric(values: list[object]) -> tuple[int, object]:
    for row, value in enumerate(values):
        try:
            float(str(value))
        except ValueError:
            return row, value
    return 0, values[0] if values else ""


def _arrow_reason(message: str) -> str:
    # "CSV parse error: Expected 5 columns, got 4: ..." -> keep the first clause only.
    return message.split("\n")[0][:200]


# --- Headed tables (P1B3): an id column, then numeric columns; missing values allowed. ---

NULL_VALUES = ["", "na", "NA", "-", "nan", "NaN", "NULL", "null"]


@dataclass
class NamedTable:
    """Rows keyed by the first column's id (cell line, drug), numeric values after it."""

    ids: list[str]
    columns: list[str]
    values: NDArray[np.float32]  # NaN where the file has a missing value


@dataclass
class DoseResponseRows:
    """The columns P1B3 uses from the dose-response file, one entry per measurement."""

    drugs: NDArray[np.str_]
    cells: NDArray[np.str_]
    log_conc: NDArray[np.float32]
    growth: NDArray[np.float32]
    dropped_missing: int  # rows skipped because LOG_CONCENTRATION or GROWTH was missing
    # The study (screen) of each row, from the optional SOURCE column (Uno's and the
    # cross-study files name it so: CCLE, CTRP, GDSC, ...); None where the file has none.
    studies: NDArray[np.str_] | None = None


def read_header(path: Path, delimiter: str) -> list[str]:
    """The header row's names; a missing or empty file is a DataFileError."""
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        line = handle.readline().rstrip("\r\n")
    if not line:
        raise DataFileError(f"{path}: empty file (expected a header row)")
    return [name.strip().strip('"') for name in line.split(delimiter)]


def _read_headed(path: Path, delimiter: str, string_columns: list[str],
                 include: list[str] | None = None) -> Any:
    """pyarrow Table of a headed file; id columns kept as strings, parse errors named."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=1 << 26),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in string_columns},
                null_values=NULL_VALUES, strings_can_be_null=True,
                include_columns=include,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DataFileError(f"{path}: {_arrow_reason(str(exc))}") from None


def _numeric_column(path: Path, table: Any, index: int, file_column: int) -> NDArray[np.float32]:
    """Column ``index`` as float32 (nulls -> NaN), or a DataFileError at the first bad cell.

    Rows in messages count lines of the file, the header being row 1.
    """
    import pyarrow as pa

    column = table.column(index)
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan, dtype=np.float32)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        parsed = np.empty(len(column), dtype=np.float32)
        for row, value in enumerate(column.to_pylist()):
            try:
                parsed[row] = np.nan if value is None else float(str(value))
            except ValueError:
                raise DataFileError(f"{path}: non-numeric value {value!r} at row {row + 2}, "
                                    f"column {file_column}") from None
        return parsed
    out: NDArray[np.float32] = (
        column.cast(pa.float32()).to_numpy(zero_copy_only=False).astype(np.float32)
    )
    return out


def read_named_table(path: Path, delimiter: str = "\t") -> NamedTable:
    """Header row; first column an id (kept as text), every other column numeric.

    Upstream P1B3 cell-line and drug-descriptor tables have this shape; missing values
    (empty, 'na', '-', 'nan') become NaN for the caller to impute.
    """
    header = read_header(path, delimiter)
    if len(header) < 2:
        raise DataFileError(f"{path}: expected an id column and at least one feature "
                            f"column, found {len(header)} column")
    if len(set(header)) != len(header):
        raise DataFileError(f"{path}: duplicate column names in the header")
    table = _read_headed(path, delimiter, [header[0]])
    if table.num_rows == 0:
        raise DataFileError(f"{path}: no data rows")
    ids = [str(v) if v is not None else "" for v in table.column(0).to_pylist()]
    if "" in ids:
        raise DataFileError(f"{path}: missing id at row {ids.index('') + 2}, column 1")
    if len(set(ids)) != len(ids):
        raise DataFileError(f"{path}: duplicate id in column 1")
    values = np.column_stack([_numeric_column(path, table, i, i + 1)
                              for i in range(1, table.num_columns)])
    return NamedTable(ids=ids, columns=header[1:], values=values.astype(np.float32))


DOSE_RESPONSE_COLUMNS = ("NSC", "CELLNAME", "LOG_CONCENTRATION", "GROWTH")
STUDY_COLUMN = "SOURCE"  # optional: the study each row comes from (cross-study files)


def read_dose_response(path: Path) -> DoseResponseRows:
    """Upstream P1B3_dose_response.csv: comma-separated, header naming at least
    NSC, CELLNAME, LOG_CONCENTRATION and GROWTH, optionally SOURCE (the study, as Uno's
    cross-study files have it); other columns are ignored.

    Rows with a missing concentration, growth or id are dropped and counted, as upstream's
    pandas pipeline would carry NaN into the loss otherwise; a row without a study is kept
    (its study is "").
    """
    header = read_header(path, ",")
    missing = [c for c in DOSE_RESPONSE_COLUMNS if c not in header]
    if missing:
        raise DataFileError(f"{path}: missing column(s) {', '.join(missing)} in the header")
    has_study = STUDY_COLUMN in header
    ids = ["NSC", "CELLNAME", *([STUDY_COLUMN] if has_study else [])]
    table = _read_headed(path, ",", ids,
                         include=[*DOSE_RESPONSE_COLUMNS, *([STUDY_COLUMN] if has_study else [])])
    names = table.column_names
    conc = _numeric_column(path, table, names.index("LOG_CONCENTRATION"),
                           header.index("LOG_CONCENTRATION") + 1)
    growth = _numeric_column(path, table, names.index("GROWTH"), header.index("GROWTH") + 1)

    def text(column: str) -> NDArray[np.str_]:
        return np.array([str(v) if v is not None else ""
                         for v in table.column(column).to_pylist()])

    drugs, cells = text("NSC"), text("CELLNAME")
    studies = text(STUDY_COLUMN) if has_study else None
    # A row with no study is kept (a job without a study design reads the rows it always
    # did); cross-study designs leave it out (p1b3.data._select_studies).
    keep = ~(np.isnan(conc) | np.isnan(growth) | (drugs == "") | (cells == ""))
    return DoseResponseRows(drugs=drugs[keep], cells=cells[keep], log_conc=conc[keep],
                            growth=growth[keep], dropped_missing=int((~keep).sum()),
                            studies=None if studies is None else studies[keep])


def read_id_list(path: Path, column: str) -> set[str]:
    """Upstream test cell/drug lists: a one-column CSV with header ``column``."""
    header = read_header(path, ",")
    if column not in header:
        raise DataFileError(f"{path}: expected a {column!r} column in the header")
    table = _read_headed(path, ",", [column], include=[column])
    return {str(v) for v in table.column(column).to_pylist() if v is not None}


def data_dir(params: dict[str, Any], base_dir: Path) -> Path:
    """The members' data directory: absolute in their params (the sweep parser makes it
    so); a relative one (a run planned before that) is relative to the sweep's folder."""
    directory = Path(params["data"])
    return directory if directory.is_absolute() else Path(base_dir) / directory
