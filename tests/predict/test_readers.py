"""The benchmarks' new-data readers (no models): a row read for prediction is the same
array the training job fed its model (same scaling, same column order), streamed in
chunks, and a file of the wrong shape is a one-line DataFileError naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candle.benchmark import get_benchmark
from candle_benchmarks.expression_predict import line_blocks, open_nt3, open_tc1
from candle_benchmarks.io import DataFileError
from tests.conftest import ROOT, write

SMALL = {"nt3": {"features": 40, "samples": 60},
         "tc1": {"features": 30, "samples": 45, "classes": 3}}
OPEN = {"nt3": open_nt3, "tc1": open_tc1}


def params_of(name: str, **extra: Any) -> dict[str, Any]:
    return {**get_benchmark(name).defaults(), **SMALL[name], **extra}


def save(path: Path, matrix: np.ndarray) -> Path:
    np.savetxt(path, matrix, delimiter=",", fmt="%.9g")  # float32 round-trips exactly
    return path


def read_all(opened: Any) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
    chunks = list(opened.chunks)
    x = np.concatenate([c.x for c in chunks])
    labels = None if chunks[0].labels is None else np.concatenate([c.labels for c in chunks])
    return x, labels, [len(c.x) for c in chunks]


@pytest.mark.parametrize("name", ["nt3", "tc1"])
def test_rows_are_scaled_as_the_training_job_scaled_them(name: str, tmp_path: Path) -> None:
    from candle_benchmarks.nt3 import data as nt3_data
    from candle_benchmarks.tc1 import data as tc1_data

    module = nt3_data if name == "nt3" else tc1_data
    params = params_of(name)
    x, y = module.synthesize(params)
    _, _, x_test, y_test = nt3_data.split_train_test(x, y, float(params["test_fraction"]),
                                                     int(params["rng_seed"]))
    arrays = module.load(params, None, None, 0, True) if name == "tc1" else \
        nt3_data.load(params, None, None, 0, True, int(params["classes"]))
    path = save(tmp_path / "test.csv", np.column_stack([y_test, x_test]))
    got, labels, sizes = read_all(OPEN[name](path, params, None, ROOT, 5))
    np.testing.assert_array_equal(got, arrays.x_val)  # the job's validation input
    np.testing.assert_array_equal(labels, y_test)
    assert max(sizes) <= 5 and len(sizes) >= len(y_test) // 5


def test_upstream_files_give_the_scaling_of_their_train_and_test_files(tmp_path: Path) -> None:
    from candle_benchmarks.nt3 import data as nt3_data

    params = params_of("nt3")
    x, y = nt3_data.synthesize(params)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    save(data_dir / nt3_data.TRAIN_FILE, np.column_stack([y[:40], x[:40]]))
    save(data_dir / nt3_data.TEST_FILE, np.column_stack([y[40:], x[40:]]))
    on_files = {**params, "data": str(data_dir)}
    arrays = nt3_data.load(on_files, None, None, 0, True, 2)
    unlabelled = save(tmp_path / "new.csv", x[40:])
    opened = open_nt3(unlabelled, on_files, None, ROOT, 64)
    got, labels, _ = read_all(opened)
    assert labels is None and not opened.labelled and opened.rows == 20
    np.testing.assert_allclose(got, arrays.x_val, rtol=1e-6)


def test_wrong_width_and_bad_labels_name_the_file(tmp_path: Path) -> None:
    params = params_of("tc1")
    narrow = save(tmp_path / "narrow.csv", np.ones((3, 29)))
    with pytest.raises(DataFileError, match=r"narrow\.csv: 29 values in row 1; expected 30 "
                       r"comma-separated numbers .* or 31 with the label \(0\.\.2\) first"):
        open_tc1(narrow, params, None, ROOT, 8)
    ragged = write(tmp_path / "ragged.csv", "1," * 29 + "1\n" + "1," * 28 + "1\n")
    with pytest.raises(DataFileError, match=r"ragged\.csv: 29 values in row 2; expected 30"):
        read_all(open_tc1(ragged, params, None, ROOT, 8))
    bad_label = save(tmp_path / "label.csv", np.column_stack([[0, 7], np.ones((2, 30))]))
    with pytest.raises(DataFileError, match=r"label\.csv: label 7 at row 2, column 1"):
        read_all(open_tc1(bad_label, params, None, ROOT, 8))
    header = write(tmp_path / "header.csv", ",".join(f"g{i}" for i in range(30)) + "\n")
    with pytest.raises(DataFileError, match=r"header\.csv: non-numeric value 'g0' at row 1"):
        read_all(open_tc1(header, params, None, ROOT, 8))


def test_line_blocks_end_at_line_ends_and_keep_long_lines_whole(tmp_path: Path) -> None:
    path = write(tmp_path / "lines.csv", "a,b\n" + "x" * 50 + "\nc,d\nlast")
    pieces = list(line_blocks(path, 8))
    assert b"".join(pieces) == path.read_bytes()
    assert all(p.endswith(b"\n") for p in pieces[:-1]) and pieces[-1] == b"last"
    assert any(len(p) > 50 for p in pieces)


def test_p1b3_rows_are_the_training_rows(tmp_path: Path) -> None:
    from candle_benchmarks.p1b3 import data
    from candle_benchmarks.p1b3.predict import open_predict_data

    params = {**get_benchmark("p1b3").defaults(), "cells": 6, "drugs": 4, "cell_features": 7,
              "drug_features": 5, "subsample": "none"}
    dose = data.load(params, None, None, 0)
    tables = data.synthesize(params)
    cells = [tables.cells.ids[i].replace(".", ":") for i in dose.cell_idx[:30]]
    drugs = [tables.drugs.ids[i] for i in dose.drug_idx[:30]]
    lines = ["CELLNAME,NSC,LOG_CONCENTRATION"] + [
        f"{c},{d},{lc!r}" for c, d, lc in zip(cells, drugs, dose.log_conc[:30].tolist(),
                                                strict=True)]
    path = write(tmp_path / "rows.csv", "\n".join(lines) + "\n")
    opened = open_predict_data(path, params, None, ROOT, 7)
    assert opened.kind == "regression" and not opened.labelled and opened.rows == 30
    got, labels, sizes = read_all(opened)
    assert labels is None and max(sizes) <= 7
    np.testing.assert_allclose(got, dose.rows(np.arange(30)), rtol=1e-6, atol=1e-7)
