"""Fast readers for the upstream file formats, with one clear error per broken file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle.api import DataError


class DataFileError(DataError):
    """A missing or malformed data file; the message names the file and the problem (a
    ValueError; `candle predict` shows it as a user error)."""


def read_labelled_csv(path: Path) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """No header, label in column 0, float features after (NT3/TC1 upstream format).

    Parsed by pyarrow's multithreaded CSV reader with every column declared float32 (no
    type inference, half the memory of float64). A file that does not parse that way is
    read again with inference only to name the bad cell in the error.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
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
    if not np.all(labels == np.round(labels)):
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


def read_dose_response(path: Path) -> DoseResponseRows:
    """Upstream P1B3_dose_response.csv: comma-separated, header naming at least
    NSC, CELLNAME, LOG_CONCENTRATION and GROWTH (extra columns are ignored).

    Rows with a missing concentration or growth are dropped and counted, as upstream's
    pandas pipeline would carry NaN into the loss otherwise.
    """
    header = read_header(path, ",")
    missing = [c for c in DOSE_RESPONSE_COLUMNS if c not in header]
    if missing:
        raise DataFileError(f"{path}: missing column(s) {', '.join(missing)} in the header")
    table = _read_headed(path, ",", ["NSC", "CELLNAME"], include=list(DOSE_RESPONSE_COLUMNS))
    names = table.column_names
    conc = _numeric_column(path, table, names.index("LOG_CONCENTRATION"),
                           header.index("LOG_CONCENTRATION") + 1)
    growth = _numeric_column(path, table, names.index("GROWTH"), header.index("GROWTH") + 1)
    drugs = np.array([str(v) if v is not None else "" for v in table.column("NSC").to_pylist()])
    cells = np.array([str(v) if v is not None else ""
                      for v in table.column("CELLNAME").to_pylist()])
    keep = ~(np.isnan(conc) | np.isnan(growth) | (drugs == "") | (cells == ""))
    return DoseResponseRows(drugs=drugs[keep], cells=cells[keep], log_conc=conc[keep],
                            growth=growth[keep], dropped_missing=int((~keep).sum()))


def read_id_list(path: Path, column: str) -> set[str]:
    """Upstream test cell/drug lists: a one-column CSV with header ``column``."""
    header = read_header(path, ",")
    if column not in header:
        raise DataFileError(f"{path}: expected a {column!r} column in the header")
    table = _read_headed(path, ",", [column], include=[column])
    return {str(v) for v in table.column(column).to_pylist() if v is not None}
