"""P1B3 data: cell-line expression, drug descriptors and dose-response rows, synthetic or
read from the upstream files, joined lazily (rows are gathered per batch, as upstream's
DataGenerator does, because the full row matrix is ~1M x 29,532)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle_benchmarks._splits import (
    fold_indices,
    group_parts,
    holdout_groups,
    kfold_assignment,
    seed_sequence,
)
from candle_benchmarks.io import (
    DataFileError,
    DoseResponseRows,
    NamedTable,
    read_dose_response,
    read_id_list,
    read_named_table,
)

log = logging.getLogger(__name__)

CELL_FILE = "P1B3_cellline_expressions.tsv"
DRUG_FILE = "P1B3_drug_descriptors.tsv"
RESPONSE_FILE = "P1B3_dose_response.csv"
TEST_CELL_FILE = "P1B3_test_celllines.txt"  # optional: rows of these cells never train
TEST_DRUG_FILE = "P1B3_test_drugs.txt"  # optional: rows of these drugs never train
CELL_ID_COLUMN = "CellLine"
DRUG_ID_COLUMN = "NAME"
# What P1B3's folds, holdout and leave-out parts may group rows by (candle's GROUP_KINDS):
# no cell line, drug, (cell line, drug) pair or study is on both sides of a split.
GROUP_KINDS = ("cell", "drug", "cell_drug", "study")
DEFAULT_GROUPS = "cell"  # as P1B3's CV has always grouped
# fold_assignment's marks outside the folds (a tree node's rows: the level left out, 0: train)
HOLDOUT, TEST_STUDY = -1, -2
# Tags of the seeded streams the designs and the studies draw from (never rng_seed's own).
_STUDY_STREAM, _HOLDOUT_STREAM, _TREE_STREAM = 0x5757, 0x401D, 0x7EE


@dataclass
class Tables:
    """The three upstream inputs as the files hold them (expression ids use '.')."""

    cells: NamedTable
    drugs: NamedTable
    response: DoseResponseRows


@dataclass
class DoseData:
    """Scaled feature tables plus one (cell, drug, log concentration, target) per row.

    ``y`` is GROWTH / 100, as upstream's DataGenerator yields it.
    """

    cell_x: NDArray[np.float32]
    drug_x: NDArray[np.float32]
    cell_idx: NDArray[np.int64]
    drug_idx: NDArray[np.int64]
    log_conc: NDArray[np.float32]
    y: NDArray[np.float32]
    train_idx: NDArray[np.int64]
    val_idx: NDArray[np.int64]
    dropped_unknown: int = 0
    fold_assignment: NDArray[np.int64] | None = None  # CV: the fold of every row
    fold_groups: NDArray[np.str_] | None = None  # CV/designs: the group label of every row
    # Names behind cell_idx and drug_idx as the response file spells them (the group labels).
    cell_names: list[str] = field(default_factory=list)
    drug_names: list[str] = field(default_factory=list)
    # The study of each row (an index into study_names); None: the data names no studies.
    study_idx: NDArray[np.int64] | None = None
    study_names: list[str] = field(default_factory=list)
    # Rows kept for evaluation only (a design): the held-out groups' and each test study's.
    holdout_idx: NDArray[np.int64] = field(
        default_factory=lambda: np.empty(0, dtype=np.int64))
    test_idx: dict[str, NDArray[np.int64]] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return 1 + self.cell_x.shape[1] + self.drug_x.shape[1]

    def rows(self, idx: NDArray[np.int64]) -> NDArray[np.float32]:
        """Upstream column order: LOG_CONCENTRATION, cell features, drug features."""
        n_cell = self.cell_x.shape[1]
        x = np.empty((len(idx), self.width), dtype=np.float32)
        x[:, 0] = self.log_conc[idx]
        x[:, 1 : 1 + n_cell] = self.cell_x[self.cell_idx[idx]]
        x[:, 1 + n_cell :] = self.drug_x[self.drug_idx[idx]]
        return x


def synthesize(params: dict[str, Any]) -> Tables:
    """Dose-response screens whose IC50 depends on a cell x drug interaction.

    Each cell line and drug has a hidden 4-d profile, a fixed random projection of its
    (log-)expression or descriptors; log IC50 moves with tanh(cell . drug) plus per-cell and
    per-drug terms, and growth follows a sigmoid in log concentration from +100 to -100,
    with Gaussian noise, clipped to [-100, 100]. A few descriptors are missing (NaN) to
    exercise imputation.

    With ``studies`` each study screens its own subset of the same cell lines and drugs,
    shifted its own way (`study_effects`; drawn from a stream of its own, so the data
    without studies stays what it always was), and every row names its study.
    """
    rng = np.random.default_rng(int(params["rng_seed"]))
    n_cells, n_drugs = int(params["cells"]), int(params["drugs"])
    n_cf, n_df = int(params["cell_features"]), int(params["drug_features"])
    n_conc = int(params["concentrations"])
    if min(n_cells, n_drugs, n_cf, n_df, n_conc) < 1:
        raise ValueError("cells, drugs, cell_features, drug_features and concentrations "
                         "must be positive")
    rank = 4
    baseline = rng.normal(2.0, 1.0, n_cf)
    cell_z = rng.normal(0.0, 1.0, (n_cells, n_cf))
    cell_values = np.exp(baseline + 0.7 * cell_z).astype(np.float32)
    drug_z = rng.normal(0.0, 1.0, (n_drugs, n_df))
    drug_values = (rng.normal(0.0, 3.0, n_df) + rng.gamma(2.0, 1.0, n_df) * drug_z)
    drug_values = drug_values.astype(np.float32)
    drug_values[rng.random(drug_values.shape) < 0.002] = np.nan
    u = cell_z @ rng.normal(0.0, 1.0, (n_cf, rank)) / np.sqrt(n_cf)
    v = drug_z @ rng.normal(0.0, 1.0, (n_df, rank)) / np.sqrt(n_df)

    lo, hi = float(params["min_logconc"]), float(params["max_logconc"])
    span = max(hi - lo, 1.0)
    concs = np.linspace(lo, hi, n_conc)
    potency = np.tanh(0.8 * (u @ v.T) / np.sqrt(rank) + 0.6 * u[:, :1] + 0.6 * v[:, 1][None, :])
    log_ic50 = (lo + hi) / 2 + 0.75 * span * potency  # (cells, drugs)
    cell_i, drug_i, conc_i = np.meshgrid(np.arange(n_cells), np.arange(n_drugs),
                                         np.arange(n_conc), indexing="ij")
    cell_i, drug_i, conc_i = cell_i.ravel(), drug_i.ravel(), conc_i.ravel()
    cell_names = np.array([f"SY:C{c:03d}" for c in range(n_cells)])
    drug_names = np.array([str(700000 + d) for d in range(n_drugs)])
    cells = NamedTable(ids=[n.replace(":", ".") for n in cell_names],
                       columns=[f"GENE{j}" for j in range(n_cf)], values=cell_values)
    drugs = NamedTable(ids=list(drug_names), columns=[f"D{j}" for j in range(n_df)],
                       values=drug_values)
    if params.get("studies"):
        response = _study_screens(params, log_ic50, concs, cell_names, drug_names)
        return Tables(cells=cells, drugs=drugs, response=response)
    dose = concs[conc_i] - log_ic50[cell_i, drug_i]
    growth = 100.0 - 200.0 / (1.0 + np.exp(-6.0 * dose / span))
    growth = np.clip(growth + rng.normal(0.0, float(params["noise"]), growth.shape), -100, 100)

    order = rng.permutation(len(growth))
    return Tables(
        cells=cells,
        drugs=drugs,
        response=DoseResponseRows(
            drugs=drug_names[drug_i[order]], cells=cell_names[cell_i[order]],
            log_conc=concs[conc_i[order]].astype(np.float32),
            growth=growth[order].astype(np.float32), dropped_missing=0),
    )


# Study effects, spread evenly over the studies (then shuffled) so that no two studies are
# alike by chance: growth offsets within +-STUDY_OFFSET percentage points, log IC50 shifts
# within +-STUDY_IC50 of the concentration span, curve steepness x0.7..x1.4, noise x0.6..x1.6.
STUDY_OFFSET = 18.0
STUDY_IC50 = 0.3
STUDY_SLOPE = (0.7, 1.4)
STUDY_NOISE = (0.6, 1.6)
STUDY_SHARE = (0.45, 0.85)  # share of the cell lines (and of the drugs) a study screens


def study_effects(params: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each study's growth offset, IC50 shift (log10 units), slope factor and noise (sd,
    percentage points), drawn from its own stream of rng_seed (rng_seed's own stream, and
    so the study-free data, is untouched)."""
    names = [str(s) for s in params["studies"]]
    if len(set(names)) != len(names) or "" in names:
        raise ValueError(f"studies must be distinct non-empty names, got {names}")
    rng = np.random.default_rng(seed_sequence(int(params["rng_seed"]), _STUDY_STREAM))
    n = len(names)
    even = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    span = max(float(params["max_logconc"]) - float(params["min_logconc"]), 1.0)
    offset, shift = rng.permutation(even), rng.permutation(even)
    slope = rng.uniform(*STUDY_SLOPE, n)
    noise = rng.uniform(*STUDY_NOISE, n) * float(params["noise"])
    return {name: {"offset": STUDY_OFFSET * float(offset[i]),
                   "ic50_shift": STUDY_IC50 * span * float(shift[i]),
                   "slope": float(slope[i]), "noise": float(noise[i])}
            for i, name in enumerate(names)}


def _study_screens(params: dict[str, Any], log_ic50: NDArray[np.float64],
                   concs: NDArray[np.float64], cell_names: NDArray[np.str_],
                   drug_names: NDArray[np.str_]) -> DoseResponseRows:
    """One screen per study over its own random subset of cell lines x drugs (every
    concentration), with the study's offset, IC50 shift, steepness and noise; the rows of
    all studies shuffled together, each naming its study."""
    effects = study_effects(params)
    rng = np.random.default_rng(seed_sequence(int(params["rng_seed"]), _STUDY_STREAM, 1))
    n_cells, n_drugs = log_ic50.shape
    span = max(float(params["max_logconc"]) - float(params["min_logconc"]), 1.0)
    parts: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64],
                      NDArray[np.float64], int]] = []
    for s, effect in enumerate(effects.values()):
        chosen = []
        for total in (n_cells, n_drugs):
            count = min(total, max(2, round(rng.uniform(*STUDY_SHARE) * total)))
            chosen.append(np.sort(rng.choice(total, count, replace=False)))
        cell_i, drug_i, conc_i = (a.ravel() for a in np.meshgrid(
            chosen[0], chosen[1], np.arange(len(concs)), indexing="ij"))
        dose = concs[conc_i] - (log_ic50[cell_i, drug_i] + effect["ic50_shift"])
        growth = 100.0 - 200.0 / (1.0 + np.exp(-6.0 * effect["slope"] * dose / span))
        growth += effect["offset"] + rng.normal(0.0, effect["noise"], growth.shape)
        parts.append((cell_i, drug_i, conc_i, np.clip(growth, -100, 100), s))
    cell_i = np.concatenate([p[0] for p in parts])
    drug_i = np.concatenate([p[1] for p in parts])
    conc_i = np.concatenate([p[2] for p in parts])
    growth = np.concatenate([p[3] for p in parts])
    study = np.concatenate([np.full(len(p[0]), p[4]) for p in parts])
    order = rng.permutation(len(growth))
    return DoseResponseRows(
        drugs=drug_names[drug_i[order]], cells=cell_names[cell_i[order]],
        log_conc=concs[conc_i[order]].astype(np.float32),
        growth=growth[order].astype(np.float32), dropped_missing=0,
        studies=np.array(list(effects))[study[order]])


def read_tables(directory: Path) -> Tables:
    """The three upstream files; each broken one raises DataFileError naming it."""
    return Tables(cells=read_named_table(directory / CELL_FILE, "\t"),
                  drugs=read_named_table(directory / DRUG_FILE, "\t"),
                  response=read_dose_response(directory / RESPONSE_FILE))


def impute_and_scale(values: NDArray[np.float32], scaling: str) -> NDArray[np.float32]:
    """Upstream impute_and_scale: drop all-missing columns, fill column means, then scale
    (std: StandardScaler, minmax: [0, 1], maxabs: [-1, 1]) over the whole table."""
    values = values[:, ~np.all(np.isnan(values), axis=0)].astype(np.float64)
    means = np.nanmean(values, axis=0)
    holes = np.isnan(values)
    values[holes] = np.take(means, np.nonzero(holes)[1])
    if scaling == "std":
        scale = values.std(axis=0)
        values = (values - values.mean(axis=0)) / np.where(scale == 0, 1.0, scale)
    elif scaling == "minmax":
        low, rng = values.min(axis=0), np.ptp(values, axis=0)
        values = (values - low) / np.where(rng == 0, 1.0, rng)
    elif scaling == "maxabs":
        scale = np.abs(values).max(axis=0)
        values = values / np.where(scale == 0, 1.0, scale)
    elif scaling != "none":
        raise ValueError(f"unknown scaling {scaling!r}")
    return values.astype(np.float32)


def naive_balancing(growth: NDArray[np.float32], seed: int) -> NDArray[np.int64]:
    """Upstream subsample='naive_balancing': keep all growth <= 0, 70% of (0, 50),
    18% of [50, 100] and 1% above 100 (indices, in file order)."""
    rng = np.random.default_rng(seed)
    keep = [np.flatnonzero(growth <= 0)]
    bands = (((growth > 0) & (growth < 50), 0.7), ((growth >= 50) & (growth <= 100), 0.18),
             (growth > 100, 0.01))
    for mask, frac in bands:
        members = np.flatnonzero(mask)
        keep.append(rng.choice(members, round(frac * len(members)), replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64)


def prepare(tables: Tables, params: dict[str, Any], where: str,
            exclude_cells: AbstractSet[str] = frozenset(),
            exclude_drugs: AbstractSet[str] = frozenset()) -> DoseData:
    """Filter, balance and join the response rows to the feature tables.

    Rows naming a cell line or drug absent from the feature tables are dropped (as
    upstream's inner merge does) and counted in ``dropped_unknown`` with a warning; if none
    is left that is a DataFileError on ``where`` (the response file).
    """
    resp = tables.response
    lo, hi = float(params["min_logconc"]), float(params["max_logconc"])
    idx = np.flatnonzero((resp.log_conc >= lo) & (resp.log_conc <= hi))
    if params["subsample"] == "naive_balancing":
        idx = idx[naive_balancing(resp.growth[idx], int(params["rng_seed"]))]
    cell_pos = {name.replace(".", ":"): i for i, name in enumerate(tables.cells.ids)}
    drug_pos = {name: i for i, name in enumerate(tables.drugs.ids)}
    cells = np.array([cell_pos.get(c, -1) for c in resp.cells[idx]], dtype=np.int64)
    drugs = np.array([drug_pos.get(d, -1) for d in resp.drugs[idx]], dtype=np.int64)
    known = (cells >= 0) & (drugs >= 0)
    dropped = int((~known).sum())
    if dropped:
        log.warning("%s: dropped %d of %d rows naming a cell line or drug without features",
                    where, dropped, len(known))
    held_out = np.isin(resp.cells[idx], list(exclude_cells)) | np.isin(
        resp.drugs[idx], list(exclude_drugs))
    keep = known & ~held_out
    if not keep.any():
        raise DataFileError(f"{where}: no usable rows (concentrations in [{lo}, {hi}], known "
                            f"cell lines and drugs, not in the test lists)")
    idx, cells, drugs = idx[keep], cells[keep], drugs[keep]
    scaling = str(params["scaling"])
    empty = np.empty(0, dtype=np.int64)
    study_idx, study_names = None, []
    if resp.studies is not None:
        names, study_idx = np.unique(resp.studies[idx], return_inverse=True)
        study_names, study_idx = [str(n) for n in names], study_idx.astype(np.int64)
    return DoseData(
        cell_x=impute_and_scale(tables.cells.values, scaling),
        drug_x=impute_and_scale(tables.drugs.values, scaling),
        cell_idx=cells, drug_idx=drugs, log_conc=resp.log_conc[idx],
        y=(resp.growth[idx] / 100.0).astype(np.float32),
        train_idx=empty, val_idx=empty, dropped_unknown=dropped,
        cell_names=[name.replace(".", ":") for name in tables.cells.ids],
        drug_names=list(tables.drugs.ids), study_idx=study_idx, study_names=study_names)


def group_codes(data: DoseData, kind: str) -> NDArray[np.int64]:
    """One integer per row naming its group of ``kind`` (GROUP_KINDS): the rows a split
    keeps together."""
    if kind == "cell":
        return data.cell_idx
    if kind == "drug":
        return data.drug_idx
    if kind == "cell_drug":
        return data.cell_idx * max(1, len(data.drug_x)) + data.drug_idx
    if kind == "study":
        if data.study_idx is None:
            raise ValueError("grouping by study needs data with studies (the p1b3 param "
                             "studies, or a SOURCE column in the dose-response file)")
        return data.study_idx
    raise ValueError(f"unknown group kind {kind!r} (one of {', '.join(GROUP_KINDS)})")


def group_labels(data: DoseData, kind: str) -> NDArray[np.str_]:
    """Each row's group of ``kind`` as text, for the saved fold assignment: a cell line
    ("SY:C003"), a drug ("700012"), the pair ("SY:C003|700012") or the study ("CCLE")."""
    if kind == "cell_drug":
        cells, drugs = group_labels(data, "cell"), group_labels(data, "drug")
        return np.char.add(np.char.add(cells, "|"), drugs)
    names = {"cell": data.cell_names, "drug": data.drug_names,
             "study": data.study_names}.get(kind)
    if names is None:
        raise ValueError(f"unknown group kind {kind!r} (one of {', '.join(GROUP_KINDS)})")
    return np.asarray(names, dtype=np.str_)[group_codes(data, kind)]


def subset(data: DoseData, rows: NDArray[np.int64]) -> DoseData:
    """``data`` with only ``rows`` (the feature tables whole, as scaled)."""
    return DoseData(
        cell_x=data.cell_x, drug_x=data.drug_x, cell_idx=data.cell_idx[rows],
        drug_idx=data.drug_idx[rows], log_conc=data.log_conc[rows], y=data.y[rows],
        train_idx=data.train_idx, val_idx=data.val_idx,
        dropped_unknown=data.dropped_unknown, cell_names=data.cell_names,
        drug_names=data.drug_names,
        study_idx=None if data.study_idx is None else data.study_idx[rows],
        study_names=data.study_names)


def read(params: dict[str, Any]) -> DoseData:
    """All usable rows: synthetic, or the upstream files (less the test lists' rows)."""
    if params["data"] == "synthetic":
        return prepare(synthesize(params), params, "synthetic data")
    directory = Path(params["data"])
    exclude: list[set[str]] = []
    for name, column in ((TEST_CELL_FILE, "CELLNAME"), (TEST_DRUG_FILE, "NSC")):
        path = directory / name
        exclude.append(read_id_list(path, column) if path.is_file() else set())
    return prepare(read_tables(directory), params, str(directory / RESPONSE_FILE),
                   exclude[0], exclude[1])


def load(params: dict[str, Any], fold: int | None, folds: int | None, cv_seed: int,
         design: Mapping[str, Any] | None = None) -> DoseData:
    """Rows for one job. Without a design (None): CV fold ``fold`` grouped by cell line (no
    cell line on both sides), else upstream's holdout: the last ``val_split`` of the seeded
    shuffle. With one (candle's TrainContext.design), see `apply_design`."""
    data = read(params)
    if design is not None:
        return apply_design(data, params, fold, folds, cv_seed, design)
    n = len(data.y)
    if fold is not None and folds is not None:
        n_cells = len(np.unique(data.cell_idx))
        if n_cells < folds:
            raise ValueError(f"cannot split {n_cells} cell lines into {folds} folds")
        assignment = kfold_assignment(n, folds, cv_seed, groups=data.cell_idx)
        data.train_idx, data.val_idx = fold_indices(assignment, fold)
        data.fold_assignment = assignment
        data.fold_groups = group_labels(data, DEFAULT_GROUPS)
    else:
        order = np.random.default_rng(int(params["rng_seed"])).permutation(n)
        n_val = int(n * float(params["val_split"]))
        if n_val < 1 or n_val >= n:
            raise ValueError(f"val_split={params['val_split']} leaves no validation or no "
                             f"training rows out of {n}")
        data.train_idx, data.val_idx = np.sort(order[: n - n_val]), np.sort(order[n - n_val :])
    return data


def apply_design(data: DoseData, params: dict[str, Any], fold: int | None,
                 folds: int | None, cv_seed: int, design: Mapping[str, Any]) -> DoseData:
    """Split ``data`` as the design says, in this order:

    1. studies: rows of ``train_studies`` (default: every study not tested) train and
       validate; each of ``test_studies``' rows is kept for evaluation (``test_idx``,
       fold -2); rows of other studies are dropped.
    2. holdout: that fraction of the training studies' groups (by ``groups``, default
       cell), drawn with the design seed (the same in every fold and repeat), is kept for
       evaluation only (``holdout_idx``, fold -1).
    3. of the rest: a leave-out tree ``node`` [p1, p2, ...]: level 1 deals the groups (by
       ``split``) of all of it into ``children`` parts and leaves part p1 out, level 2 deals
       what remained and leaves p2 out, ...; each level's deal is seeded from the design
       seed and the path above it, so siblings share it. The node trains on what remains
       and validates on the part its last level left out (fold: the level a row was left
       out at, 0: trained on). Else grouped k-fold ``fold`` of ``folds`` with ``cv_seed``;
       else a single split: ``val_split`` of the rows (of the groups, when ``groups`` is
       named) validates (fold 1; 0: trained on).

    Equal to no design (`load`'s other path) when it asks for nothing beyond the default.
    """
    kind = str(design.get("groups") or DEFAULT_GROUPS)
    seed = int(design.get("seed") or 0)
    train_studies = [str(s) for s in design.get("train_studies") or []]
    test_studies = [str(s) for s in design.get("test_studies") or []]
    if train_studies or test_studies:
        data = _select_studies(data, train_studies, test_studies)
    n = len(data.y)
    assignment = np.zeros(n, dtype=np.int64)
    usable = np.ones(n, dtype=bool)
    for name in test_studies:
        rows = np.flatnonzero(data.study_idx == data.study_names.index(name))
        data.test_idx[name] = rows
        assignment[rows], usable[rows] = TEST_STUDY, False
    codes = group_codes(data, kind)
    holdout = float(design.get("holdout") or 0.0)
    if holdout > 0:
        pool = np.flatnonzero(usable)
        held = pool[holdout_groups(codes[pool], holdout, seed_sequence(seed, _HOLDOUT_STREAM))]
        data.holdout_idx = held
        assignment[held], usable[held] = HOLDOUT, False
    pool = np.flatnonzero(usable)
    if not len(pool):
        raise ValueError("the design leaves no rows to train on")
    label_kind = kind
    node = [int(p) for p in design.get("node") or []]
    if node:
        label_kind = str(design.get("split") or kind)
        data.train_idx, data.val_idx = _tree_node(
            group_codes(data, label_kind), pool, node, int(design.get("children") or 0),
            seed, assignment)
    elif fold is not None and folds is not None:
        n_groups = len(np.unique(codes[pool]))
        if n_groups < folds:
            raise ValueError(f"cannot split {n_groups} {kind} groups into {folds} folds")
        if not 0 <= fold < folds:
            raise ValueError(f"fold {fold} is not one of 0..{folds - 1}")
        folded = kfold_assignment(len(pool), folds, cv_seed, groups=codes[pool])
        assignment[pool] = folded
        data.train_idx, data.val_idx = pool[folded != fold], pool[folded == fold]
    else:
        data.train_idx, data.val_idx = _single_split(
            params, pool, codes[pool] if design.get("groups") else None)
        assignment[data.val_idx] = 1
    data.fold_assignment = assignment
    data.fold_groups = group_labels(data, label_kind)
    return data


def _select_studies(data: DoseData, train: Sequence[str], test: Sequence[str]) -> DoseData:
    """Only the rows of the train studies (default: all but the test studies) and of the
    test studies; a study the data lacks, or in both lists, is an error."""
    if data.study_idx is None:
        raise ValueError("train_studies/test_studies need data with studies (the p1b3 "
                         "param studies, or a SOURCE column in the dose-response file)")
    for name in (*train, *test):
        if name not in data.study_names:
            raise ValueError(f"study {name!r} is not in the data (its studies: "
                             f"{', '.join(data.study_names)})")
    both = sorted(set(train) & set(test))
    if both:
        raise ValueError(f"study {both[0]!r} is in both train_studies and test_studies")
    trained = list(train) or [s for s in data.study_names if s not in test and s]
    if not trained:
        raise ValueError("no study left to train on: every study is a test study")
    wanted = [data.study_names.index(s) for s in (*trained, *test)]
    chosen = subset(data, np.flatnonzero(np.isin(data.study_idx, wanted)))
    for name in (*trained, *test):
        if not np.any(chosen.study_idx == data.study_names.index(name)):
            raise ValueError(f"study {name!r} has no usable rows (concentration range, "
                             "subsample, unknown cell lines or drugs)")
    return chosen


def _tree_node(codes: NDArray[np.int64], pool: NDArray[np.int64], node: list[int],
               children: int, seed: int,
               assignment: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(train rows, validation rows) of leave-out tree node ``node``; marks in
    ``assignment`` the level each row of ``pool`` was left out at (0: trained on)."""
    if children < 2:
        raise ValueError(f"a leave-out tree needs children >= 2, got {children}")
    remaining = pool
    for level, part in enumerate(node, start=1):
        if not 1 <= part <= children:
            raise ValueError(f"tree node {node}: part {part} is not one of 1..{children}")
        n_groups = len(np.unique(codes[remaining]))
        if n_groups < children:
            raise ValueError(f"tree node {node}: level {level} has {n_groups} groups left, "
                             f"fewer than children={children}")
        parts = group_parts(codes[remaining], children,
                            seed_sequence(seed, _TREE_STREAM, level, *node[: level - 1]))
        assignment[remaining[parts == part - 1]] = level
        remaining = remaining[parts != part - 1]
    return remaining, np.flatnonzero(assignment == len(node))


def _single_split(params: dict[str, Any], pool: NDArray[np.int64],
                  codes: NDArray[np.int64] | None) -> tuple[NDArray[np.int64],
                                                            NDArray[np.int64]]:
    """No folds: ``val_split`` of the pool's rows validate (upstream's seeded shuffle), or
    of its groups when ``codes`` are given."""
    share = float(params["val_split"])
    rng = np.random.default_rng(int(params["rng_seed"]))
    if codes is not None:
        unique = np.unique(codes)
        n_val = int(len(unique) * share)
        if n_val < 1 or n_val >= len(unique):
            raise ValueError(f"val_split={share} leaves no validation or no training "
                             f"groups out of {len(unique)}")
        val = np.isin(codes, rng.permutation(unique)[len(unique) - n_val :])
        return pool[~val], pool[val]
    n = len(pool)
    order = pool[rng.permutation(n)]
    n_val = int(n * share)
    if n_val < 1 or n_val >= n:
        raise ValueError(f"val_split={share} leaves no validation or no training rows out "
                         f"of {n}")
    return np.sort(order[: n - n_val]), np.sort(order[n - n_val :])
