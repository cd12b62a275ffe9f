"""`candle predict` with tiny real models: an NT3 run's point (2 MC-dropout replicas, trained
by a real `candle run`), a model directory made from it, and P1B3 ensembles with a
heteroscedastic and a quantile head (trained in-process); new-data files written here in
the benchmarks' own formats."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from candle.benchmark import TrainContext, get_benchmark
from candle.store import RunStore
from candle.store.model_card import CardMember, ModelCard
from candle_benchmarks._keras import final_state
from tests.conftest import ROOT, run_candle, write

pytestmark = pytest.mark.slow

NT3 = {"features": 120, "samples": 100, "conv": [4, 10, 1], "pool": [2], "dense": [8],
       "dropout": 0.3, "epochs": 2, "batch_size": 20, "optimizer": "adam"}
P1B3 = {"cells": 12, "drugs": 8, "cell_features": 20, "drug_features": 10, "dense": [16],
        "batch_size": 32, "epochs": 2, "optimizer": "adam", "dropout": 0.2}
MC_SAMPLES = 4


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(r[name]) for r in rows])


@pytest.fixture(scope="module")
def nt3(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run whose point 0 has 2 MC-dropout replicas, and NT3 files of its own data."""
    from candle_benchmarks.nt3.data import synthesize

    root = tmp_path_factory.mktemp("nt3")
    doc = {"name": "mc", "benchmark": "nt3", "params": NT3,
           "search": {"method": "list", "points": [{"learning_rate": 0.003}],
                      "metric": "val_loss"},
           "uq": {"method": "mc_dropout", "replicas": 2, "samples": MC_SAMPLES},
           "resources": {"scheduler": "local", "max_concurrent": 2}, "store": "runs"}
    sweep = write(root / "mc.yaml", json.dumps(doc))
    proc = run_candle("run", str(sweep), timeout=600)
    assert proc.returncode == 0, proc.stderr
    run_dir = root / "runs" / "mc"
    params = {**get_benchmark("nt3").defaults(), **NT3}
    x, y = synthesize(params)
    labelled = root / "labelled.csv"
    np.savetxt(labelled, np.column_stack([y, x]), delimiter=",", fmt="%.7g")
    unlabelled = root / "unlabelled.csv"
    np.savetxt(unlabelled, x, delimiter=",", fmt="%.7g")
    narrow = root / "narrow.csv"
    np.savetxt(narrow, x[:5, :-3], delimiter=",", fmt="%.7g")
    # A model directory of the same two members (as `candle train --from` writes one).
    store = RunStore(run_dir)
    model_dir = root / "model"
    members = []
    for job in store.jobs():
        result = store.result(job.id) or {}
        target = model_dir / job.id / str(result["model_file"])
        target.parent.mkdir(parents=True)
        target.write_bytes((store.job_dir(job.id) / str(result["model_file"])).read_bytes())
        members.append(CardMember(job.id, job.replica, job.seed,
                                  str(target.relative_to(model_dir))))
    ModelCard("nt3", params, tuple(members), {}, {}, str(ROOT),
              uq={"method": "mc_dropout", "samples": MC_SAMPLES}).write(model_dir)
    return {"run": run_dir, "labelled": labelled, "unlabelled": unlabelled,
            "narrow": narrow, "model": model_dir, "root": root}


def test_a_run_point_predicts_every_row_with_the_ensemble_spread(cli, nt3) -> None:  # type: ignore[no-untyped-def]
    out = nt3["root"] / "point.csv"
    result = cli("predict", str(nt3["run"]), "--point", "0", "--data", str(nt3["labelled"]),
                 "--out", str(out))
    assert result.code == 0, result.err
    assert "100 row(s)" in result.out and "2 member model(s)" in result.out
    assert f"{MC_SAMPLES} MC-dropout passes" in result.out  # the run's uq.samples
    rows = read_rows(out)
    assert len(rows) == 100
    assert list(rows[0])[:7] == ["row", "prob_0", "prob_1", "class", "std", "entropy", "label"]
    probs = np.column_stack([column(rows, "prob_0"), column(rows, "prob_1")])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=2e-6)
    assert (column(rows, "std") > 0).any()
    np.testing.assert_array_equal(column(rows, "class"), probs.argmax(axis=1))
    labels = column(rows, "label").astype(int)
    np.testing.assert_allclose(column(rows, "prob_label"), probs[np.arange(100), labels],
                               atol=2e-6)
    np.testing.assert_array_equal(column(rows, "correct"), probs.argmax(axis=1) == labels)
    entropy = -(probs * np.log(probs)).sum(axis=1)
    np.testing.assert_allclose(column(rows, "entropy"), entropy, atol=1e-4)


def test_unlabelled_rows_give_the_same_predictions_without_scores(cli, nt3) -> None:  # type: ignore[no-untyped-def]
    outs = {}
    for name in ("labelled", "unlabelled"):
        outs[name] = nt3["root"] / f"{name}-out.csv"
        result = cli("predict", str(nt3["model"]), "--data", str(nt3[name]),
                     "--out", str(outs[name]), "--mc-passes", "0")
        assert result.code == 0, result.err
    with_labels, without = read_rows(outs["labelled"]), read_rows(outs["unlabelled"])
    assert "label" not in without[0] and "correct" not in without[0]
    assert len(without) == 100
    for name in ("prob_0", "prob_1", "std", "entropy"):
        np.testing.assert_array_equal(column(with_labels, name), column(without, name))
    # Two members that differ: a spread without any MC pass.
    assert (column(without, "std") > 0).any()


def test_chunks_stream_and_give_the_numbers_of_one_chunk(cli, nt3) -> None:  # type: ignore[no-untyped-def]
    texts = []
    for chunk in ("7", "1000"):
        out = nt3["root"] / f"chunk-{chunk}.csv"
        result = cli("predict", str(nt3["model"]), "--data", str(nt3["labelled"]), "--out",
                     str(out), "--mc-passes", "0", "--chunk-rows", chunk)
        assert result.code == 0, result.err
        texts.append(out.read_text())
    assert texts[0] == texts[1]


def test_the_reader_yields_chunks_of_at_most_chunk_rows(nt3) -> None:  # type: ignore[no-untyped-def]
    from candle.predict.engine import predictor_for
    from candle.predict.source import resolve_source

    source = resolve_source(nt3["model"])
    opened = predictor_for(source)(nt3["labelled"], source.params, source.uq,
                                   source.base_dir, 7)
    sizes = [len(chunk.x) for chunk in opened.chunks]
    assert sum(sizes) == opened.rows == 100 and len(sizes) >= 15 and max(sizes) <= 7


def test_mc_dropout_passes_change_the_outputs(cli, nt3) -> None:  # type: ignore[no-untyped-def]
    outs = {}
    for passes in ("0", "5"):
        outs[passes] = nt3["root"] / f"mc-{passes}.csv"
        result = cli("predict", str(nt3["model"]), "--data", str(nt3["unlabelled"]),
                     "--out", str(outs[passes]), "--mc-passes", passes)
        assert result.code == 0, result.err
    plain, mc = read_rows(outs["0"]), read_rows(outs["5"])
    assert not np.allclose(column(plain, "prob_1"), column(mc, "prob_1"))
    assert column(mc, "std").mean() > column(plain, "std").mean()


def test_a_file_of_the_wrong_width_is_one_line_naming_it(cli, nt3) -> None:  # type: ignore[no-untyped-def]
    out = nt3["root"] / "never.csv"
    result = cli("predict", str(nt3["model"]), "--data", str(nt3["narrow"]), "--out", str(out))
    assert result.code == 2
    assert result.err.count("\n") == 1, result.err
    assert str(nt3["narrow"]) in result.err and "expected 120" in result.err
    assert "121 with the label" in result.err
    assert not out.exists()


def test_a_bad_value_midway_leaves_no_output(cli, nt3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines = nt3["unlabelled"].read_text().splitlines()
    lines[60] = "oops," + lines[60].split(",", 1)[1]
    broken = write(tmp_path / "broken.csv", "\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    result = cli("predict", str(nt3["model"]), "--data", str(broken), "--out", str(out),
                 "--chunk-rows", "8")
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert str(broken) in result.err and "expected 120" in result.err
    assert "non-numeric value 'oops' at row 61" in result.err
    assert not out.exists() and list(tmp_path.iterdir()) == [broken]


def test_a_run_directory_needs_a_point(cli, nt3) -> None:  # type: ignore[no-untyped-def]
    result = cli("predict", str(nt3["run"]), "--data", str(nt3["labelled"]),
                 "--out", str(nt3["root"] / "x.csv"))
    assert result.code == 2 and "--point" in result.err


# --- P1B3: dose-response rows joined to the training tables; spread heads ------------------

def train_p1b3(root: Path, loss: str, seeds: tuple[int, ...]) -> Path:
    """A model directory of P1B3 members with a ``loss`` head, trained in-process."""
    from candle_benchmarks.p1b3.train import train

    params = {**get_benchmark("p1b3").defaults(), **P1B3}
    uq = {"method": "ensemble", "replicas": len(seeds), "loss": loss}
    model_dir = root / f"p1b3-{loss}"
    members = []
    for replica, seed in enumerate(seeds):
        job_dir = model_dir / f"job{replica}"
        train(dict(params), TrainContext(job_dir=job_dir, seed=seed, replica=replica, uq=uq))
        state = final_state(job_dir / "ckpt") or {}
        members.append(CardMember(f"job{replica}", replica, seed, f"job{replica}/ckpt/"
                                  f"{state['file']}"))
    ModelCard("p1b3", params, tuple(members), {}, {}, str(ROOT), uq=uq).write(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def p1b3(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from candle_benchmarks.p1b3.data import synthesize

    root = tmp_path_factory.mktemp("p1b3")
    params = {**get_benchmark("p1b3").defaults(), **P1B3}
    response = synthesize(params).response
    lines = ["NSC,CELLNAME,LOG_CONCENTRATION,GROWTH"]
    lines += [f"{d},{c},{lc:.4f},{g:.3f}" for d, c, lc, g in
              zip(response.drugs[:150], response.cells[:150], response.log_conc[:150],
                  response.growth[:150], strict=True)]
    rows = write(root / "rows.csv", "\n".join(lines) + "\n")
    unknown = write(root / "unknown.csv", "\n".join(
        [*lines[:40], "700001,SY:C999,-4.5,10.0", *lines[40:]]) + "\n")
    no_conc = write(root / "no_conc.csv", "NSC,CELLNAME\n700001,SY:C001\n")
    return {"root": root, "rows": rows, "unknown": unknown, "no_conc": no_conc,
            "heteroscedastic": train_p1b3(root, "heteroscedastic", (1, 2)),
            "quantile": train_p1b3(root, "quantile", (3,))}


def test_p1b3_rows_with_a_heteroscedastic_head(cli, p1b3) -> None:  # type: ignore[no-untyped-def]
    out = p1b3["root"] / "het.csv"
    result = cli("predict", str(p1b3["heteroscedastic"]), "--data", str(p1b3["rows"]),
                 "--out", str(out), "--chunk-rows", "40")
    assert result.code == 0, result.err
    rows = read_rows(out)
    assert len(rows) == 150
    assert list(rows[0]) == ["row", "CELLNAME", "NSC", "LOG_CONCENTRATION", "mean", "std",
                             "sigma", "total_std", "lower_95", "upper_95", "GROWTH",
                             "abs_error", "in_95"]
    assert rows[0]["CELLNAME"].startswith("SY:C")
    mean, std, sigma = column(rows, "mean"), column(rows, "std"), column(rows, "sigma")
    assert (std > 0).all() and (sigma > 0).all()
    np.testing.assert_allclose(column(rows, "total_std"), np.hypot(std, sigma), rtol=1e-4)
    assert (column(rows, "lower_95") < mean).all() and (mean < column(rows, "upper_95")).all()
    np.testing.assert_allclose(column(rows, "abs_error"),
                               np.abs(mean - column(rows, "GROWTH")), rtol=1e-4, atol=1e-3)


def test_p1b3_quantile_head_intervals(cli, p1b3) -> None:  # type: ignore[no-untyped-def]
    out = p1b3["root"] / "quantile.csv"
    result = cli("predict", str(p1b3["quantile"]), "--data", str(p1b3["rows"]),
                 "--out", str(out))
    assert result.code == 0, result.err
    rows = read_rows(out)
    names = list(rows[0])
    assert names[4:6] == ["mean", "std"]
    assert names[6:11] == ["q0.025", "q0.159", "q0.5", "q0.841", "q0.975"]
    assert names[11:] == ["lower_95", "upper_95", "GROWTH", "abs_error", "in_95"]
    np.testing.assert_array_equal(column(rows, "lower_95"), column(rows, "q0.025"))
    np.testing.assert_array_equal(column(rows, "mean"), column(rows, "q0.5"))


def test_p1b3_unknown_cell_is_one_line(cli, p1b3) -> None:  # type: ignore[no-untyped-def]
    result = cli("predict", str(p1b3["quantile"]), "--data", str(p1b3["unknown"]),
                 "--out", str(p1b3["root"] / "never.csv"), "--chunk-rows", "16")
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert str(p1b3["unknown"]) in result.err and "'SY:C999'" in result.err
    assert "row 41" in result.err
    assert not (p1b3["root"] / "never.csv").exists()


def test_p1b3_file_without_the_columns_is_one_line(cli, p1b3) -> None:  # type: ignore[no-untyped-def]
    result = cli("predict", str(p1b3["quantile"]), "--data", str(p1b3["no_conc"]),
                 "--out", str(p1b3["root"] / "never.csv"))
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert "LOG_CONCENTRATION" in result.err and str(p1b3["no_conc"]) in result.err


def test_the_engine_reports_progress_in_rows(nt3) -> None:  # type: ignore[no-untyped-def]
    from candle.predict.engine import predict_file
    from candle.predict.source import resolve_source

    seen: list[tuple[int, int]] = []
    report = predict_file(resolve_source(nt3["model"]), nt3["unlabelled"],
                          nt3["root"] / "progress.csv", mc_passes=0, chunk_rows=30,
                          progress=lambda done, total: seen.append((done, total)))
    done = [d for d, _ in seen]
    assert seen[0] == (0, 100) and seen[-1] == (100, 100) and len(seen) >= 5
    assert all(0 < b - a <= 30 for a, b in itertools.pairwise(done))
    assert report.rows == 100 and report.members == 2 and report.passes == 0
