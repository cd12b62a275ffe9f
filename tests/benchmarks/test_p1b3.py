"""P1B3: upstream model size, loaders and their errors, grouped CV, learning, resume."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candle.api import TrainContext
from candle_benchmarks.io import DataFileError
from candle_benchmarks.p1b3 import BENCHMARK
from candle_benchmarks.p1b3 import data as p1b3_data
from candle_benchmarks.synth_files import write_synthetic


def _small(**extra: Any) -> dict[str, Any]:
    params = BENCHMARK.defaults()
    params.update(cells=24, drugs=16, cell_features=40, drug_features=20, dense=[64, 32],
                  batch_size=32)
    params.update(extra)
    return params


def test_defaults_follow_upstream() -> None:
    d = BENCHMARK.defaults()
    assert (d["dense"], d["conv"], d["dropout"], d["loss"]) == ([1000, 500, 100, 50], [],
                                                                 0.1, "mse")
    assert (d["optimizer"], d["learning_rate"], d["batch_size"]) == ("sgd", 0.001, 100)
    assert (d["rng_seed"], d["val_split"], d["scaling"], d["batch_norm"]) == (2017, 0.1,
                                                                              "std", False)


@pytest.mark.slow
def test_upstream_parameter_count() -> None:
    from candle_benchmarks.p1b3.train import build

    # Upstream README, default features: drug_concentration (1) + cell_expression (25722)
    # + drug_descriptors (3809) = 29532 inputs; our synthetic sizes default to the same.
    width = 1 + 25722 + 3809
    expected = 0
    for n_in, n_out in ((width, 1000), (1000, 500), (500, 100), (100, 50), (50, 1)):
        expected += n_in * n_out + n_out
    assert build(BENCHMARK.defaults()).count_params() == expected  # 30,088,701


def test_conv_variant_parameter_count() -> None:
    from candle_benchmarks.p1b3.train import build

    # p1b3_conv_model.txt's conv=[10,10,5, 10,10,5] with no dense layers; pool 2 (not
    # upstream's 10) so a small input keeps a non-empty second conv output.
    width = 2000
    params = BENCHMARK.defaults() | {"conv": [10, 10, 5, 10, 10, 5], "pool": 2, "dense": []}
    len1 = ((width - 10) // 5 + 1) // 2           # valid conv stride 5: 399, pool: 199
    len2 = ((len1 - 10) // 5 + 1) // 2            # 38, pool: 19
    expected = (10 * 1 * 10 + 10) + (10 * 10 * 10 + 10) + (len2 * 10 + 1)
    assert build(params, width=width).count_params() == expected


def test_batch_norm_adds_four_weights_per_unit() -> None:
    from candle_benchmarks.p1b3.train import build

    plain = build(_small()).count_params()
    normed = build(_small(batch_norm=True)).count_params()
    assert normed - plain == 4 * (64 + 32)  # gamma, beta, moving mean, moving variance


def test_synthetic_growth_is_a_bounded_dose_response() -> None:
    tables = p1b3_data.synthesize(_small(noise=0.0))
    resp = tables.response
    assert len(resp.growth) == 24 * 16 * 5
    assert resp.growth.min() >= -100 and resp.growth.max() <= 100
    assert set(np.unique(resp.log_conc).tolist()) == {-5.0, -4.75, -4.5, -4.25, -4.0}
    # Without noise, growth falls monotonically with concentration for every pair.
    order = np.lexsort((resp.log_conc, resp.drugs, resp.cells))
    curves = resp.growth[order].reshape(-1, 5)
    assert np.all(np.diff(curves, axis=1) <= 1e-4)
    assert np.ptp(curves[:, 0]) > 20  # and the response differs between pairs


def test_naive_balancing_keeps_upstream_fractions() -> None:
    growth = np.concatenate([np.full(100, -10.0), np.full(100, 20.0), np.full(100, 70.0),
                             np.full(100, 150.0)]).astype(np.float32)
    kept = growth[p1b3_data.naive_balancing(growth, 0)]
    assert [int((kept == g).sum()) for g in (-10, 20, 70, 150)] == [100, 70, 18, 1]


def test_impute_uses_column_means_then_scales() -> None:
    values = np.array([[1.0, np.nan, np.nan], [3.0, 4.0, np.nan], [5.0, 8.0, np.nan]],
                      dtype=np.float32)
    filled = p1b3_data.impute_and_scale(values, "none")
    assert filled.tolist() == [[1.0, 6.0], [3.0, 4.0], [5.0, 8.0]]  # all-NaN column dropped
    scaled = p1b3_data.impute_and_scale(values, "std")
    assert np.allclose(scaled.mean(axis=0), 0, atol=1e-6)
    assert np.allclose(scaled.std(axis=0), 1, atol=1e-6)


def test_cv_folds_never_share_a_cell_line() -> None:
    params = _small(subsample="none")
    seen_val: list[np.ndarray[Any, Any]] = []
    for fold in range(4):
        dose = p1b3_data.load(params, fold, 4, 11)
        train_cells = set(dose.cell_idx[dose.train_idx].tolist())
        val_cells = set(dose.cell_idx[dose.val_idx].tolist())
        assert val_cells and train_cells and not train_cells & val_cells
        assert len(dose.train_idx) + len(dose.val_idx) == len(dose.y)
        seen_val.append(dose.val_idx)
    # Every row is validated exactly once across the folds.
    assert np.array_equal(np.sort(np.concatenate(seen_val)), np.arange(len(dose.y)))


def test_holdout_is_val_split_of_rows() -> None:
    dose = p1b3_data.load(_small(), None, None, 0)
    assert len(dose.val_idx) == int(len(dose.y) * 0.1)
    assert not set(dose.train_idx.tolist()) & set(dose.val_idx.tolist())
    x = dose.rows(dose.val_idx[:3])
    assert x.shape == (3, 1 + 40 + 20)
    assert np.array_equal(x[:, 0], dose.log_conc[dose.val_idx[:3]])


def _files(tmp_path: Path) -> Path:
    write_synthetic("p1b3", tmp_path, _small(cells=5, drugs=4, concentrations=3))
    return tmp_path


@pytest.mark.parametrize("name", [p1b3_data.CELL_FILE, p1b3_data.DRUG_FILE,
                                  p1b3_data.RESPONSE_FILE])
def test_missing_file_is_named(tmp_path: Path, name: str) -> None:
    (_files(tmp_path) / name).unlink()
    with pytest.raises(DataFileError, match=re.escape(f"{name}: no such file")):
        p1b3_data.load(_small(data=str(tmp_path)), None, None, 0)


def _edit_line(path: Path, line: int, edit: Any) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = edit(lines[line - 1])
    path.write_text("\n".join(lines) + "\n")


def test_non_numeric_growth_names_file_row_and_column(tmp_path: Path) -> None:
    path = _files(tmp_path) / p1b3_data.RESPONSE_FILE
    _edit_line(path, 3, lambda s: ",".join([*s.split(",")[:3], "x"]))
    with pytest.raises(DataFileError) as err:
        p1b3_data.load(_small(data=str(tmp_path)), None, None, 0)
    assert str(err.value) == f"{path}: non-numeric value 'x' at row 3, column 4"


def test_non_numeric_descriptor_names_file(tmp_path: Path) -> None:
    path = _files(tmp_path) / p1b3_data.DRUG_FILE
    _edit_line(path, 2, lambda s: s.split("\t")[0] + "\tabc\t" + "\t".join(s.split("\t")[2:]))
    message = f"{path}: non-numeric value 'abc' at row 2, column 2"
    with pytest.raises(DataFileError, match=re.escape(message)):
        p1b3_data.load(_small(data=str(tmp_path)), None, None, 0)


def test_wrong_column_count_names_file(tmp_path: Path) -> None:
    path = _files(tmp_path) / p1b3_data.CELL_FILE
    _edit_line(path, 4, lambda s: s.rsplit("\t", 1)[0])
    with pytest.raises(DataFileError, match=re.escape(f"{path}: ") + ".*columns"):
        p1b3_data.load(_small(data=str(tmp_path)), None, None, 0)


def test_missing_response_column_names_file(tmp_path: Path) -> None:
    path = _files(tmp_path) / p1b3_data.RESPONSE_FILE
    _edit_line(path, 1, lambda s: s.replace("GROWTH", "GROWTH_PCT"))
    with pytest.raises(DataFileError, match=re.escape(f"{path}: missing column") + ".*GROWTH"):
        p1b3_data.load(_small(data=str(tmp_path)), None, None, 0)


def test_rows_with_unknown_ids_are_dropped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _files(tmp_path) / p1b3_data.RESPONSE_FILE
    params = _small(data=str(tmp_path), subsample="none")
    before = p1b3_data.load(params, None, None, 0)
    with path.open("a") as handle:
        handle.write("999999,SY:C000,-4.5,10\nMISSING_CELL_DRUG,NOPE:X,-4.5,10\n")
    with caplog.at_level(logging.WARNING):
        after = p1b3_data.load(params, None, None, 0)
    assert after.dropped_unknown == 2 and len(after.y) == len(before.y)
    assert "dropped 2 of" in caplog.text


def test_test_lists_keep_their_rows_out_of_training(tmp_path: Path) -> None:
    _files(tmp_path)
    (tmp_path / p1b3_data.TEST_CELL_FILE).write_text("CELLNAME\nSY:C001\n")
    (tmp_path / p1b3_data.TEST_DRUG_FILE).write_text("NSC\n700002\n")
    params = _small(data=str(tmp_path), subsample="none")
    dose = p1b3_data.load(params, None, None, 0)
    tables = p1b3_data.read_tables(tmp_path)
    assert "SY.C001" in tables.cells.ids
    cell = tables.cells.ids.index("SY.C001")
    drug = tables.drugs.ids.index("700002")
    assert cell not in dose.cell_idx and drug not in dose.drug_idx
    assert len(dose.y) == 4 * 3 * 3  # 4 of 5 cells x 3 of 4 drugs x 3 concentrations


@pytest.mark.slow
@pytest.mark.integration
def test_learns_dose_response(tmp_path: Path) -> None:
    from candle_benchmarks.p1b3.train import train

    params = _small(epochs=8, optimizer="adam", learning_rate=0.001)
    result = train(params, TrainContext(job_dir=tmp_path, seed=1))
    history = result["history"]
    assert set(result["metrics"]) == set(BENCHMARK.metrics)  # what a sweep may select
    assert history["val_r2"][-1] > 0.2  # 0 is predicting the mean
    assert history["val_mse"][-1] < history["val_mse"][0]


@pytest.mark.slow
@pytest.mark.integration
def test_resume_loads_checkpoint_with_r2_metric(tmp_path: Path) -> None:
    from candle_benchmarks.p1b3.train import train

    params = _small(epochs=1, cells=8, drugs=6, conv=[4, 5, 1], pool=2, dense=[8])
    first = train(params, TrainContext(job_dir=tmp_path, seed=1))
    second = train(params | {"epochs": 2}, TrainContext(job_dir=tmp_path, seed=1))
    assert (first["epochs_run"], second["resumed_from_epoch"], second["epochs_run"]) == (1, 1, 1)
    assert len(second["history"]["val_r2"]) == 2
