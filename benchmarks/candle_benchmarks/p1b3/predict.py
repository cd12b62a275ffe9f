"""New samples for P1B3 (`candle predict`): rows in the dose-response layout (a header
naming NSC, CELLNAME and LOG_CONCENTRATION, GROWTH optional), each joined to its cell
line's expression and its drug's descriptors from the training data, scaled as in training
(impute_and_scale over the whole tables). Streamed in chunks of rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle.api import PredictChunk, PredictInput
from candle_benchmarks.expression_predict import count_rows
from candle_benchmarks.io import (
    NULL_VALUES,
    DataFileError,
    _arrow_reason,
    data_dir,
    read_header,
)
from candle_benchmarks.p1b3 import data, spread

ID_COLUMNS = ("NSC", "CELLNAME")
REQUIRED = ("NSC", "CELLNAME", "LOG_CONCENTRATION")
TARGET = "GROWTH"
ROW_BYTES = 64  # a dose-response row is short: blocks of ~chunk_rows rows


def feature_tables(params: dict[str, Any], base_dir: Path) -> tuple[
        NDArray[np.float32], dict[str, int], NDArray[np.float32], dict[str, int]]:
    """The scaled cell and drug tables the members trained with, and each one's row by
    name (cell names as the dose-response file spells them, ':' for the tables' '.')."""
    if params["data"] == "synthetic":
        tables = data.synthesize(params)
    else:
        directory = data_dir(params, base_dir)
        tables = data.read_tables(directory)
    scaling = str(params["scaling"])
    cells = {name.replace(".", ":"): i for i, name in enumerate(tables.cells.ids)}
    drugs = {name: i for i, name in enumerate(tables.drugs.ids)}
    return (data.impute_and_scale(tables.cells.values, scaling), cells,
            data.impute_and_scale(tables.drugs.values, scaling), drugs)


def open_predict_data(path: Path, params: dict[str, Any], uq: dict[str, Any] | None,
                      base_dir: Path, chunk_rows: int) -> PredictInput:
    path = Path(path)
    expected = ("a CSV with a header naming NSC, CELLNAME and LOG_CONCENTRATION (GROWTH "
                "optional), as P1B3_dose_response.csv")
    header = read_header(path, ",")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataFileError(f"{path}: no {', '.join(missing)} column in the header; "
                            f"expected {expected}")
    labelled = TARGET in header
    cell_x, cells, drug_x, drugs = feature_tables(params, base_dir)
    head = (uq or {}).get("loss")
    return PredictInput(
        kind="regression", rows=max(0, count_rows(path) - 1),
        chunks=_chunks(path, labelled, cell_x, cells, drug_x, drugs, bool(params["conv"]),
                       max(1 << 16, ROW_BYTES * max(1, chunk_rows)), chunk_rows, expected),
        labelled=labelled, split_output=spread.split_output(head) if head else None,
        unit=100.0, target=TARGET, expected=expected,
        ids=("CELLNAME", "NSC", "LOG_CONCENTRATION"))


def _chunks(path: Path, labelled: bool, cell_x: NDArray[np.float32], cells: dict[str, int],
            drug_x: NDArray[np.float32], drugs: dict[str, int], channel: bool, block: int,
            chunk_rows: int, expected: str) -> Iterator[PredictChunk]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = [*REQUIRED, TARGET] if labelled else list(REQUIRED)
    n_cell = cell_x.shape[1]
    width = 1 + n_cell + drug_x.shape[1]
    done = 1  # the header is row 1
    try:
        reader = pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=block),
            convert_options=pacsv.ConvertOptions(
                column_types={**{c: pa.string() for c in ID_COLUMNS},
                              **{c: pa.float32() for c in columns if c not in ID_COLUMNS}},
                null_values=NULL_VALUES, strings_can_be_null=True, include_columns=columns))
        for batch in reader:
            n = batch.num_rows
            if n == 0:
                continue
            names = {c: batch.column(columns.index(c)).to_pylist() for c in ID_COLUMNS}
            conc = _floats(batch.column(columns.index("LOG_CONCENTRATION")))
            gaps = np.flatnonzero(np.isnan(conc))
            if gaps.size:
                raise DataFileError(f"{path}: missing LOG_CONCENTRATION at row "
                                    f"{done + int(gaps[0]) + 1}; expected {expected}")
            cell_idx = _positions(path, names["CELLNAME"], cells, "cell line", done)
            drug_idx = _positions(path, names["NSC"], drugs, "drug (NSC)", done)
            x = np.empty((n, width), dtype=np.float32)
            x[:, 0] = conc
            x[:, 1 : 1 + n_cell] = cell_x[cell_idx]
            x[:, 1 + n_cell :] = drug_x[drug_idx]
            labels = (_floats(batch.column(columns.index(TARGET))) / 100.0
                      if labelled else None)
            done += n
            ids = {"CELLNAME": names["CELLNAME"], "NSC": names["NSC"], "LOG_CONCENTRATION": conc}
            for start in range(0, n, chunk_rows):
                part = slice(start, start + chunk_rows)
                yield PredictChunk(x=x[part, :, None] if channel else x[part],
                                   labels=None if labels is None else labels[part],
                                   columns={k: v[part] for k, v in ids.items()})
    except pa.ArrowInvalid as exc:
        raise DataFileError(f"{path}: {_arrow_reason(str(exc))} (after row {done}); "
                            f"expected {expected}") from None


def _floats(column: Any) -> NDArray[np.float32]:
    values: NDArray[np.float32] = column.to_numpy(zero_copy_only=False).astype(np.float32)
    return values


def _positions(path: Path, names: list[Any], table: dict[str, int], what: str,
               done: int) -> NDArray[np.int64]:
    """Each name's row in its feature table; an unknown one is an error naming it."""
    out = np.empty(len(names), dtype=np.int64)
    for row, name in enumerate(names):
        position = table.get(str(name)) if name is not None else None
        if position is None:
            known = ", ".join(list(table)[:3])
            raise DataFileError(f"{path}: unknown {what} {name!r} at row {done + row + 1}; "
                                f"the model knows the {len(table)} of its training data "
                                f"(e.g. {known})")
        out[row] = position
    return out
