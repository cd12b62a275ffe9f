"""P1B3 sample designs (issue 21): studies in the synthetic data and the SOURCE column,
grouped folds by cell/drug/pair/study, a fixed holdout, cross-study rows, leave-out tree
nodes; and the training side: test metrics, init weights, restore_best_weights."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from candle.api import TrainContext
from candle_benchmarks.io import read_dose_response
from candle_benchmarks.p1b3 import BENCHMARK
from candle_benchmarks.p1b3 import data as p1b3_data
from candle_benchmarks.synth_files import write_synthetic

STUDIES = ["CCLE", "CTRP", "GDSC", "NCI60", "gCSI"]


def _small(**extra: Any) -> dict[str, Any]:
    params = BENCHMARK.defaults()
    params.update(cells=12, drugs=10, cell_features=20, drug_features=10, dense=[8],
                  batch_size=32)
    params.update(extra)
    return params


def _design(**extra: Any) -> dict[str, Any]:
    """A TrainContext.design with every key (candle's DESIGN_KEYS), defaults: nothing."""
    design: dict[str, Any] = {"groups": None, "holdout": 0.0, "seed": 0, "train_studies": [],
                              "test_studies": [], "node": None, "children": 0, "split": None}
    design.update(extra)
    return design


def _digest(*arrays: Any) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _dose_digest(dose: p1b3_data.DoseData) -> str:
    folds = dose.fold_assignment if dose.fold_assignment is not None else np.zeros(0)
    return _digest(dose.cell_x, dose.drug_x, dose.cell_idx, dose.drug_idx, dose.log_conc,
                   dose.y, dose.train_idx, dose.val_idx, folds)


# Computed from the loader before issue 21 changed it: without a design (and without
# studies) the data, its split and its folds stay what they were, bit for bit.
BEFORE = [
    ({}, None, None, 0, "b8a52d7a34d65e26"),
    ({}, 1, 3, 5, "967c85745667e1b1"),
    ({"subsample": "none"}, 0, 4, 11, "9e1a7dd5d2dc6154"),
    ({"subsample": "none", "rng_seed": 3}, None, None, 0, "59c34dad6026c98d"),
]


@pytest.mark.parametrize(("extra", "fold", "folds", "cv_seed", "digest"), BEFORE)
def test_no_design_loads_what_it_loaded_before(extra: dict[str, Any], fold: int | None,
                                               folds: int | None, cv_seed: int,
                                               digest: str) -> None:
    assert _dose_digest(p1b3_data.load(_small(**extra), fold, folds, cv_seed)) == digest


def test_no_studies_synthesizes_what_it_did_before() -> None:
    t = p1b3_data.synthesize(_small())
    assert t.response.studies is None
    assert _digest(t.cells.values, t.drugs.values, t.response.log_conc, t.response.growth,
                   t.response.cells.astype("U"), t.response.drugs.astype("U")) \
        == "8d554605bde3d06f"


@pytest.mark.parametrize(("fold", "folds"), [(None, None), (2, 3)])
def test_a_design_asking_nothing_splits_as_no_design(fold: int | None,
                                                     folds: int | None) -> None:
    params = _small(subsample="none")
    plain = p1b3_data.load(params, fold, folds, 7)
    designed = p1b3_data.load(params, fold, folds, 7, _design(seed=5))
    assert np.array_equal(plain.train_idx, designed.train_idx)
    assert np.array_equal(plain.val_idx, designed.val_idx)
    if folds:
        assert np.array_equal(plain.fold_assignment, designed.fold_assignment)  # type: ignore[arg-type]
        assert np.array_equal(plain.fold_groups, designed.fold_groups)  # type: ignore[arg-type]


# --- studies in the data ------------------------------------------------------------------

def test_studies_screen_subsets_with_their_own_shifts() -> None:
    plain = p1b3_data.synthesize(_small())
    tables = p1b3_data.synthesize(_small(studies=STUDIES, noise=0.0))
    # The cell lines and drugs are the study-free data's: studies only add screens.
    assert np.array_equal(plain.cells.values, tables.cells.values)
    assert np.array_equal(plain.drugs.values, tables.drugs.values, equal_nan=True)
    resp = tables.response
    assert resp.studies is not None and sorted(set(resp.studies)) == sorted(STUDIES)
    pairs: dict[str, set[tuple[str, str]]] = {}
    for study in STUDIES:
        rows = resp.studies == study
        cells, drugs = set(resp.cells[rows]), set(resp.drugs[rows])
        assert 2 <= len(cells) <= 12 and 2 <= len(drugs) <= 10
        assert rows.sum() == len(cells) * len(drugs) * 5  # every concentration of each pair
        pairs[study] = set(zip(resp.cells[rows], resp.drugs[rows], strict=True))
    assert len(set.union(*pairs.values())) > max(len(p) for p in pairs.values())  # subsets
    # The same (pair, concentration) measures differently in two studies (no noise here).
    a, b = STUDIES[0], STUDIES[1]
    key = {s: {(c, d, x): g for c, d, x, g, z in zip(resp.cells, resp.drugs, resp.log_conc,
                                                       resp.growth, resp.studies, strict=True)
               if z == s} for s in (a, b)}
    shared = set(key[a]) & set(key[b])
    assert shared
    gaps = [abs(key[a][k] - key[b][k]) for k in shared]
    assert np.mean(gaps) > 5.0  # percentage points
    effects = p1b3_data.study_effects(_small(studies=STUDIES))
    offsets = sorted(e["offset"] for e in effects.values())
    assert min(np.diff(offsets)) > 5.0  # spread evenly: no two studies alike


def test_studies_are_seeded() -> None:
    one = p1b3_data.synthesize(_small(studies=STUDIES)).response
    two = p1b3_data.synthesize(_small(studies=STUDIES)).response
    other = p1b3_data.synthesize(_small(studies=STUDIES, rng_seed=5)).response
    assert np.array_equal(one.growth, two.growth) and np.array_equal(one.studies, two.studies)  # type: ignore[arg-type]
    assert len(one.growth) != len(other.growth) or not np.array_equal(one.growth, other.growth)


def test_duplicate_study_names_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        p1b3_data.synthesize(_small(studies=["CCLE", "CCLE"]))


def test_source_column_names_each_rows_study(tmp_path: Path) -> None:
    """A dose-response file in the cross-study (Uno) layout: SOURCE first, extra columns."""
    write_synthetic("p1b3", tmp_path, _small(cells=4, drugs=3, concentrations=2))
    path = tmp_path / p1b3_data.RESPONSE_FILE
    path.write_text(
        "SOURCE,NSC,CELLNAME,CONCUNIT,LOG_CONCENTRATION,EXPID,GROWTH\n"
        "CCLE,700000,SY:C000,M,-4.5,e1,12.5\n"
        "GDSC,700001,SY:C001,M,-4.25,e2,-3\n"
        ",700001,SY:C002,M,-4.25,e3,40\n"  # no study: kept (study ""), out of cross-study
        "gCSI,700002,SY:C003,M,-4.0,e4,77\n"
        "CCLE,700002,SY:C000,M,-4.0,e5,50\n")
    rows = read_dose_response(path)
    assert rows.studies is not None and rows.studies.tolist() == ["CCLE", "GDSC", "", "gCSI",
                                                                  "CCLE"]
    assert rows.dropped_missing == 0 and rows.growth.tolist() == [12.5, -3.0, 40.0, 77.0, 50.0]
    # without a study design a job reads every row, as before the SOURCE column was read
    dose = p1b3_data.load(_small(data=str(tmp_path), subsample="none", val_split=0.5),
                          None, None, 0)
    assert len(dose.y) == 5 and dose.study_names == ["", "CCLE", "GDSC", "gCSI"]
    assert dose.study_idx is not None
    assert [dose.study_names[i] for i in dose.study_idx] == ["CCLE", "GDSC", "", "gCSI", "CCLE"]
    crossed = p1b3_data.load(_small(data=str(tmp_path), subsample="none", val_split=0.5),
                             None, None, 0,
                             _design(train_studies=["CCLE"], test_studies=["gCSI"]))
    assert len(crossed.y) == 3 and crossed.test_idx["gCSI"].tolist() == [
        i for i in range(3) if crossed.study_names[crossed.study_idx[i]] == "gCSI"]  # type: ignore[index]
    # every study not tested trains by default: the rows without a study do not
    rest = p1b3_data.load(_small(data=str(tmp_path), subsample="none", val_split=0.5),
                          None, None, 0, _design(test_studies=["gCSI"]))
    assert sorted(rest.study_names[i] for i in rest.study_idx) == [  # type: ignore[union-attr]
        "CCLE", "CCLE", "GDSC", "gCSI"]


def test_a_file_without_source_has_no_studies(tmp_path: Path) -> None:
    write_synthetic("p1b3", tmp_path, _small(cells=4, drugs=3, concentrations=2))
    dose = p1b3_data.load(_small(data=str(tmp_path), subsample="none"), None, None, 0)
    assert dose.study_idx is None and dose.study_names == []
    with pytest.raises(ValueError, match="need data with studies"):
        p1b3_data.load(_small(data=str(tmp_path), subsample="none"), None, None, 0,
                       _design(test_studies=["CCLE"]))


def test_synthetic_studies_round_trip_through_files(tmp_path: Path) -> None:
    params = _small(studies=STUDIES, subsample="none")
    write_synthetic("p1b3", tmp_path, params)
    head = (tmp_path / p1b3_data.RESPONSE_FILE).read_text().splitlines()[0]
    assert head == "SOURCE,NSC,CELLNAME,LOG_CONCENTRATION,GROWTH"
    design = _design(holdout=0.2, train_studies=["CCLE", "GDSC"], test_studies=["NCI60"])
    synthetic = p1b3_data.load(params, 1, 3, 4, design)
    from_files = p1b3_data.load(params | {"data": str(tmp_path)}, 1, 3, 4, design)
    for name in ("cell_idx", "drug_idx", "study_idx", "log_conc", "y", "train_idx",
                 "val_idx", "holdout_idx", "fold_assignment", "fold_groups"):
        assert np.array_equal(getattr(synthetic, name), getattr(from_files, name)), name
    assert synthetic.study_names == from_files.study_names


# --- grouped folds, holdout, cross-study ---------------------------------------------------

def _labels(dose: p1b3_data.DoseData, kind: str) -> NDArray[np.str_]:
    return p1b3_data.group_labels(dose, kind)


@pytest.mark.parametrize("kind", ["cell", "drug", "cell_drug", "study"])
def test_groups_never_straddle_folds(kind: str) -> None:
    params = _small(studies=STUDIES, subsample="none")
    folds = 3
    seen: list[NDArray[np.int64]] = []
    for fold in range(folds):
        dose = p1b3_data.load(params, fold, folds, 11, _design(groups=kind))
        labels = _labels(dose, kind)
        train, val = set(labels[dose.train_idx]), set(labels[dose.val_idx])
        assert train and val and not train & val
        assert dose.fold_groups is not None and dose.fold_assignment is not None
        assert np.array_equal(dose.fold_groups, labels)  # what the CSV's group column holds
        # Read back as the saved CSV would be: each group label in exactly one fold.
        fold_of: dict[str, set[int]] = {}
        for label, f in zip(dose.fold_groups, dose.fold_assignment, strict=True):
            fold_of.setdefault(str(label), set()).add(int(f))
        assert all(len(f) == 1 for f in fold_of.values())
        assert np.array_equal(dose.val_idx, np.flatnonzero(dose.fold_assignment == fold))
        seen.append(dose.val_idx)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(len(dose.y)))


def test_group_labels_read_as_ids() -> None:
    dose = p1b3_data.load(_small(studies=STUDIES), None, None, 0)
    row = 0
    cell = dose.cell_names[dose.cell_idx[row]]
    drug = dose.drug_names[dose.drug_idx[row]]
    assert cell.startswith("SY:C") and drug.startswith("700")
    assert _labels(dose, "cell")[row] == cell and _labels(dose, "drug")[row] == drug
    assert _labels(dose, "cell_drug")[row] == f"{cell}|{drug}"
    assert _labels(dose, "study")[row] in STUDIES


@pytest.mark.parametrize("kind", ["cell", "drug", "cell_drug"])
def test_holdout_is_never_trained_and_the_same_in_every_fold_and_repeat(kind: str) -> None:
    params = _small(subsample="none")
    held: list[NDArray[np.int64]] = []
    for cv_seed in (0, 1000003):  # repeats draw their folds with other cv seeds
        vals = []
        for fold in range(3):
            dose = p1b3_data.load(params, fold, 3, cv_seed,
                                  _design(groups=kind, holdout=0.25, seed=9))
            labels = _labels(dose, kind)
            out = set(labels[dose.holdout_idx])
            assert out and not out & set(labels[dose.train_idx])
            assert not out & set(labels[dose.val_idx])
            assert dose.fold_assignment is not None
            assert np.array_equal(np.flatnonzero(dose.fold_assignment == -1), dose.holdout_idx)
            held.append(dose.holdout_idx)
            vals.append(dose.val_idx)
        assert len(np.concatenate(vals)) + len(held[-1]) == len(dose.y)
    assert all(np.array_equal(h, held[0]) for h in held)
    n_groups = len(np.unique(_labels(dose, kind)))
    assert len(np.unique(_labels(dose, kind)[held[0]])) == round(0.25 * n_groups)
    # Another design seed holds out other groups; the cv seed moved the folds.
    other = p1b3_data.load(params, 0, 3, 0, _design(groups=kind, holdout=0.25, seed=10))
    assert not np.array_equal(other.holdout_idx, held[0])


def test_cross_study_trains_only_on_train_studies() -> None:
    params = _small(studies=STUDIES, subsample="none")
    dose = p1b3_data.load(params, 0, 3, 0, _design(train_studies=["CCLE", "NCI60"],
                                                   test_studies=["GDSC", "gCSI"],
                                                   holdout=0.2))
    assert dose.study_idx is not None and dose.fold_assignment is not None
    names = np.asarray(dose.study_names)[dose.study_idx]
    assert set(names) == {"CCLE", "NCI60", "GDSC", "gCSI"}  # CTRP's rows are not loaded
    assert set(names[dose.train_idx]) | set(names[dose.val_idx]) | set(
        names[dose.holdout_idx]) == {"CCLE", "NCI60"}
    for study in ("GDSC", "gCSI"):
        rows = dose.test_idx[study]
        assert set(names[rows]) == {study} and len(rows) == int((names == study).sum())
        assert np.all(dose.fold_assignment[rows] == -2)
    # Only test_studies named: every other study trains.
    rest = p1b3_data.load(params, None, None, 0, _design(test_studies=["GDSC"]))
    rest_names = np.asarray(rest.study_names)[rest.study_idx]
    assert set(rest_names[rest.train_idx]) == set(STUDIES) - {"GDSC"}
    assert rest.fold_assignment is not None
    assert set(rest.fold_assignment[rest.val_idx]) == {1}
    assert set(rest.fold_assignment[rest.train_idx]) == {0}


@pytest.mark.parametrize(("design", "message"), [
    (_design(train_studies=["CCLE"], test_studies=["TCGA"]), "study 'TCGA' is not in the data"),
    (_design(train_studies=["CCLE"], test_studies=["CCLE"]), "in both"),
    (_design(groups="study", train_studies=["CCLE"]), "cannot split 1 study groups into 3"),
    (_design(groups="tissue"), "unknown group kind 'tissue'"),
    (_design(node=[1, 1], children=11, split="cell"), "level 2 has 10 groups left, fewer than"),
    (_design(node=[3], children=2), "part 3 is not one of 1..2"),
    (_design(holdout=1.0), "holdout must be a fraction"),
])
def test_impossible_designs_say_why(design: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        fold = None if design.get("node") else 0
        p1b3_data.load(_small(studies=STUDIES, subsample="none"), fold,
                       None if fold is None else 3, 0, design)
    assert "\n" not in str(err.value)


def test_fewer_cells_than_folds_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot split 12 cell groups into 13 folds"):
        p1b3_data.load(_small(subsample="none"), 0, 13, 0, _design())


# --- the leave-out tree --------------------------------------------------------------------

def _node(path: list[int], children: int = 3, split: str = "cell_drug",
          **extra: Any) -> p1b3_data.DoseData:
    return p1b3_data.load(_small(subsample="none"), None, None, 0,
                          _design(node=path, children=children, split=split, seed=4,
                                  **extra))


@pytest.mark.parametrize("split", ["cell", "drug", "cell_drug"])
def test_tree_nodes_nest_and_their_parts_cover(split: str) -> None:
    children = 3
    everything = set(range(len(_node([1], split=split).y)))
    level1 = [_node([p], children, split) for p in range(1, children + 1)]
    # Level 1: the parts (each node's validation) are disjoint and cover all rows.
    vals = [set(n.val_idx.tolist()) for n in level1]
    assert set.union(*vals) == everything and sum(map(len, vals)) == len(everything)
    for node in level1:
        assert set(node.train_idx.tolist()) == everything - set(node.val_idx.tolist())
        labels = _labels(node, split)
        assert not set(labels[node.train_idx]) & set(labels[node.val_idx])
    for parent_part, parent in enumerate(level1, start=1):
        parent_train = set(parent.train_idx.tolist())
        kids = [_node([parent_part, p], children, split) for p in range(1, children + 1)]
        kid_vals = [set(k.val_idx.tolist()) for k in kids]
        # The children split their parent's training rows into disjoint, covering parts.
        assert set.union(*kid_vals) == parent_train
        assert sum(map(len, kid_vals)) == len(parent_train)
        for kid in kids:
            assert set(kid.train_idx.tolist()) < parent_train
            assert set(kid.train_idx.tolist()) == parent_train - set(kid.val_idx.tolist())
            assert kid.fold_assignment is not None
            assert np.array_equal(kid.fold_assignment == 1, np.isin(
                np.arange(len(kid.y)), parent.val_idx))  # left out at level 1: the parent's
            assert np.array_equal(np.flatnonzero(kid.fold_assignment == 2), kid.val_idx)
            assert np.array_equal(np.flatnonzero(kid.fold_assignment == 0), kid.train_idx)
            labels = _labels(kid, split)
            assert not set(labels[kid.train_idx]) & set(labels[kid.val_idx])
            assert kid.fold_groups is not None and np.array_equal(kid.fold_groups, labels)


def test_tree_parts_are_seeded_by_the_design_seed_alone() -> None:
    a = _node([2, 1])
    assert np.array_equal(a.val_idx, _node([2, 1]).val_idx)
    assert not np.array_equal(a.val_idx, p1b3_data.load(
        _small(subsample="none"), None, None, 0,
        _design(node=[2, 1], children=3, split="cell_drug", seed=5)).val_idx)


def test_tree_keeps_the_holdout_and_test_studies_out() -> None:
    params = _small(studies=STUDIES, subsample="none")
    design = _design(node=[1, 2], children=2, split="cell_drug", holdout=0.2,
                     train_studies=["CCLE", "CTRP", "GDSC"], test_studies=["gCSI"])
    dose = p1b3_data.load(params, None, None, 0, design)
    assert dose.fold_assignment is not None
    assert set(dose.fold_assignment.tolist()) == {-2, -1, 0, 1, 2}
    out = set(dose.holdout_idx.tolist()) | set(dose.test_idx["gCSI"].tolist())
    assert not out & (set(dose.train_idx.tolist()) | set(dose.val_idx.tolist()))


# --- training ------------------------------------------------------------------------------

def _train(job_dir: Path, params: dict[str, Any], design: dict[str, Any] | None = None,
           init_weights: str | None = None, fold: int | None = None,
           folds: int | None = None) -> dict[str, Any]:
    from candle_benchmarks.p1b3.train import train

    ctx = TrainContext(job_dir=job_dir, seed=1, fold=fold, folds=folds, design=design,
                       init_weights=init_weights)
    return train(params, ctx)


def _tiny(**extra: Any) -> dict[str, Any]:
    return _small(**{"studies": STUDIES, "subsample": "none", "epochs": 2, "optimizer": "adam",
                     "learning_rate": 0.01, **extra})


def test_cross_study_and_holdout_metrics_are_reported(tmp_path: Path) -> None:
    design = _design(holdout=0.2, train_studies=["CCLE"], test_studies=["GDSC", "CTRP"])
    result = _train(tmp_path, _tiny(), design, fold=0, folds=3)
    metrics = result["metrics"]
    for prefix in ("test", "test_GDSC", "test_CTRP"):
        for m in ("loss", "mse", "mae", "r2"):
            assert np.isfinite(metrics[f"{prefix}_{m}"]), f"{prefix}_{m}"
    assert not any(k.startswith("test_NCI60") for k in metrics)
    folds, groups = result["fold_assignment"], result["fold_groups"]
    assert len(folds) == len(groups) and {-2, -1, 0, 1, 2} == set(folds.tolist())
    assert "final_weights" not in result  # not a tree node
    # The test metrics are those of the saved model on the test rows.
    import tensorflow as tf

    from candle_benchmarks.p1b3.train import batches

    model = tf.keras.models.load_model(tmp_path / result["model_file"], compile=False)
    dose = p1b3_data.load(_tiny(), 0, 3, 0, design)
    x = np.concatenate([b[0] for b in batches(tf, dose, dose.test_idx["GDSC"], 32, False,
                                              None)])
    mse = float(np.mean((model.predict(x, verbose=0)[:, 0] - dose.y[dose.test_idx["GDSC"]])
                        ** 2))
    assert metrics["test_GDSC_mse"] == pytest.approx(mse, rel=1e-4)


def test_no_design_reports_no_test_metrics(tmp_path: Path) -> None:
    result = _train(tmp_path, _small(epochs=1), None, fold=0, folds=3)
    assert set(result["metrics"]) == set(BENCHMARK.metrics)
    assert result["fold_groups"][0].startswith("SY:C")  # fold CSV: cell lines, as grouped


def test_a_child_starts_from_its_parents_saved_weights(tmp_path: Path) -> None:
    from candle_benchmarks._horovod import weights_digest
    from candle_benchmarks.p1b3.train import build

    tree = {"children": 2, "split": "cell_drug", "seed": 3}
    # The parent ends with its best epoch's weights (not its last): those are inherited.
    parent = _train(tmp_path / "p", _tiny(epochs=3, restore_best_weights=True,
                                          _extra_callbacks=[_diverge_after(1)]),
                    _design(node=[1], **tree))
    assert parent["restored_best_epoch"] == 1
    model_file = tmp_path / "p" / parent["model_file"]
    import tensorflow as tf

    saved = tf.keras.models.load_model(model_file, compile=False)
    assert parent["final_weights"] == weights_digest(saved)
    child = _train(tmp_path / "c", _tiny(), _design(node=[1, 2], **tree),
                   init_weights=str(model_file))
    assert child["init"] == {"from": str(model_file), "weights": parent["final_weights"]}
    fresh = build(_tiny(), 1 + 20 + 10)
    assert weights_digest(fresh) != parent["final_weights"]  # a child's own init differs
    assert child["final_weights"] != parent["final_weights"]  # and it trained on
    # A resumed child (its own checkpoint) still names where it started from.
    again = _train(tmp_path / "c", _tiny(epochs=3), _design(node=[1, 2], **tree),
                   init_weights=str(model_file))
    assert again["resumed_from_epoch"] == 2 and again["init"] == child["init"]


def test_init_weights_of_another_shape_say_so(tmp_path: Path) -> None:
    parent = _train(tmp_path / "p", _tiny(epochs=1))
    with pytest.raises(RuntimeError, match="do not fit this model"):
        _train(tmp_path / "c", _tiny(epochs=1, dense=[4]),
               init_weights=str(tmp_path / "p" / parent["model_file"]))


def _diverge_after(epoch: int) -> Any:
    """A callback that scrambles the weights (x3, sign flipped) before every epoch after
    ``epoch``: those epochs end worse, so the best epoch is not the last."""
    import tensorflow as tf

    class Diverge(tf.keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, index: int, logs: Any = None) -> None:
            if index >= epoch:
                self.model.set_weights([-3.0 * w for w in self.model.get_weights()])

    return Diverge()


def _saved_val_loss(job_dir: Path, result: dict[str, Any], params: dict[str, Any]) -> float:
    """val_loss of the saved model on the validation rows (as Keras computed it per epoch)."""
    import tensorflow as tf

    from candle_benchmarks.p1b3.train import batches

    model = tf.keras.models.load_model(job_dir / result["model_file"], compile=False)
    dose = p1b3_data.load(params, None, None, 0)
    x = np.concatenate([b[0] for b in batches(tf, dose, dose.val_idx, 32, False, None)])
    return float(np.mean((model.predict(x, verbose=0)[:, 0] - dose.y[dose.val_idx]) ** 2))


def test_restore_best_weights_ends_with_the_best_epoch(tmp_path: Path) -> None:
    params = _small(subsample="none", epochs=4, optimizer="sgd", learning_rate=0.05,
                    dropout=0.0)
    plain = _train(tmp_path / "plain", {**params, "_extra_callbacks": [_diverge_after(2)]})
    best = _train(tmp_path / "best", {**params, "restore_best_weights": True,
                                      "_extra_callbacks": [_diverge_after(2)]})
    losses = best["history"]["val_loss"]
    assert plain["history"]["val_loss"] == pytest.approx(losses, rel=1e-5)
    epoch = int(np.nanargmin(losses)) + 1
    assert epoch < 4 and best["restored_best_epoch"] == epoch == best["best_epoch"]
    assert best["metrics"]["val_loss"] == losses[epoch - 1]
    assert plain["metrics"]["val_loss"] == plain["history"]["val_loss"][-1]
    assert "restored_best_epoch" not in plain
    assert _saved_val_loss(tmp_path / "best", best, params) == pytest.approx(
        losses[epoch - 1], rel=1e-4)
    assert _saved_val_loss(tmp_path / "plain", plain, params) == pytest.approx(
        losses[-1], rel=1e-4)
    assert sorted(p.name for p in (tmp_path / "best" / "ckpt").iterdir()) == ["model.keras"]


def test_restore_best_weights_survives_a_resume(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Drained after epoch 3 (the best being 2), resumed: the best epoch's weights saved
    before the drain are the ones the job ends with."""
    import tensorflow as tf

    from candle.job import interrupt

    params = _small(subsample="none", epochs=5, optimizer="sgd", learning_rate=0.05,
                    dropout=0.0, restore_best_weights=True, ckpt_every="0")
    straight = _train(tmp_path / "straight", {**params,
                                              "_extra_callbacks": [_diverge_after(2)]})

    class DrainAfter3(tf.keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch + 1 == 3:
                monkeypatch.setattr(interrupt, "_requested", signal.SIGUSR1)

    job = tmp_path / "drained"
    with pytest.raises(interrupt.Interrupted):
        _train(job, {**params, "_extra_callbacks": [_diverge_after(2), DrainAfter3()]})
    monkeypatch.setattr(interrupt, "_requested", None)
    state = json.loads((job / "ckpt" / "state.json").read_text())
    best = straight["restored_best_epoch"]
    assert state["epoch"] == 3 and best <= 2
    assert (job / "ckpt" / f"best-{best:04d}.weights.npz").is_file()
    resumed = _train(job, {**params, "_extra_callbacks": [_diverge_after(2)]})
    assert resumed["resumed_from_epoch"] == 3 and resumed["restored_best_epoch"] == best
    assert resumed["metrics"]["val_loss"] == pytest.approx(
        straight["metrics"]["val_loss"], rel=1e-5)
    assert _saved_val_loss(job, resumed, params) == pytest.approx(
        straight["history"]["val_loss"][best - 1], rel=1e-4)


def test_a_model_of_one_study_does_worse_on_the_others(tmp_path: Path) -> None:
    """The studies' shifts are large enough to measure: trained on CCLE alone, the error on
    every other study is above the error on CCLE's own held-out rows."""
    params = _tiny(epochs=30, learning_rate=0.01, val_split=0.2, noise=4.0, dropout=0.0,
                   dense=[16])
    others = [s for s in STUDIES if s != "CCLE"]
    result = _train(tmp_path, params, _design(train_studies=["CCLE"], test_studies=others))
    within = result["metrics"]["val_mse"]
    for study in others:
        assert result["metrics"][f"test_{study}_mse"] > 1.5 * within, study
