"""Write a benchmark's synthetic data in the upstream file formats, so the real loaders
(and anything else that reads those files) can be exercised without the upstream data."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


def write_synthetic(benchmark: str, out_dir: Path, params: dict[str, Any]) -> list[Path]:
    """Synthesize ``benchmark``'s data from ``params`` (overlaid on its defaults) and write
    the upstream files into ``out_dir``; returns the paths written.

    nt3/tc1: headerless CSVs, integer label in column 0, raw (unscaled) expression after.
    p1b3: expression and descriptor TSVs with an id column and header, dose-response CSV.
    Pointing the ``data`` parameter at ``out_dir`` then loads the same data as
    ``data=synthetic`` (up to float32 rounding, which the writer keeps exact).
    """
    from candle_benchmarks import nt3, p1b3, tc1

    full = {**{"nt3": nt3, "tc1": tc1, "p1b3": p1b3}[benchmark].BENCHMARK.defaults(), **params}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if benchmark in ("nt3", "tc1"):
        return _write_labelled(benchmark, out_dir, full)
    if benchmark == "p1b3":
        return _write_p1b3(out_dir, full)
    raise KeyError(f"no synthetic file writer for benchmark {benchmark!r}")


def _write_labelled(benchmark: str, out_dir: Path, params: dict[str, Any]) -> list[Path]:
    from candle_benchmarks.nt3.data import split_train_test

    if benchmark == "nt3":
        from candle_benchmarks.nt3 import data as nt3_data

        x, y = nt3_data.synthesize(params)
        names = (nt3_data.TRAIN_FILE, nt3_data.TEST_FILE)
    else:
        from candle_benchmarks.tc1 import data as tc1_data

        x, y = tc1_data.synthesize(params)
        names = (tc1_data.TRAIN_FILE, tc1_data.TEST_FILE)
    x_train, y_train, x_test, y_test = split_train_test(
        x, y, float(params["test_fraction"]), int(params["rng_seed"]))
    paths = []
    for name, xs, ys in ((names[0], x_train, y_train), (names[1], x_test, y_test)):
        paths.append(_write_table(out_dir / name, None, [ys.astype(np.int64)], xs, ","))
    return paths


def _write_p1b3(out_dir: Path, params: dict[str, Any]) -> list[Path]:
    from candle_benchmarks.p1b3 import data as p1b3_data

    tables = p1b3_data.synthesize(params)
    resp = tables.response
    # With studies, the cross-study files' SOURCE column (the study) comes first.
    study = [] if resp.studies is None else ["SOURCE"]
    ids = [] if resp.studies is None else [resp.studies]
    return [
        _write_table(out_dir / p1b3_data.CELL_FILE,
                     [p1b3_data.CELL_ID_COLUMN, *tables.cells.columns],
                     [np.array(tables.cells.ids)], tables.cells.values, "\t"),
        _write_table(out_dir / p1b3_data.DRUG_FILE,
                     [p1b3_data.DRUG_ID_COLUMN, *tables.drugs.columns],
                     [np.array(tables.drugs.ids)], tables.drugs.values, "\t"),
        _write_table(out_dir / p1b3_data.RESPONSE_FILE,
                     [*study, "NSC", "CELLNAME", "LOG_CONCENTRATION", "GROWTH"],
                     [*ids, resp.drugs, resp.cells],
                     np.column_stack([resp.log_conc, resp.growth]), ","),
    ]


def _write_table(path: Path, header: Sequence[str] | None, leading: list[NDArray[Any]],
                 values: NDArray[np.float32], delimiter: str) -> Path:
    """Leading id/label columns then float32 values (shortest exact repr, NaN written
    empty), via pyarrow's CSV writer (far faster than savetxt at 60k columns), atomically:
    a temp file in the same directory, fsync, then os.replace."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = [pa.array(col) for col in leading]
    values = np.ascontiguousarray(values, dtype=np.float32)
    columns += [pa.array(values[:, j], from_pandas=True) for j in range(values.shape[1])]
    table = pa.Table.from_arrays(columns, names=[f"c{j}" for j in range(len(columns))])
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as handle:
            if header is not None:
                handle.write((delimiter.join(header) + "\n").encode())
            pacsv.write_csv(table, handle, pacsv.WriteOptions(
                include_header=False, delimiter=delimiter, quoting_style="none"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
