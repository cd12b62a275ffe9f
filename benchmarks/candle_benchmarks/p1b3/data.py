"""P1B3 data: cell-line expression, drug descriptors and dose-response rows, synthetic or
read from the upstream files, joined lazily (rows are gathered per batch, as upstream's
DataGenerator does, because the full row matrix is ~1M x 29,532)."""

from __future__ import annotations

import logging
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from candle_benchmarks._splits import fold_indices, kfold_assignment
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
    dose = concs[conc_i] - log_ic50[cell_i, drug_i]
    growth = 100.0 - 200.0 / (1.0 + np.exp(-6.0 * dose / span))
    growth = np.clip(growth + rng.normal(0.0, float(params["noise"]), growth.shape), -100, 100)

    cell_names = np.array([f"SY:C{c:03d}" for c in range(n_cells)])
    drug_names = np.array([str(700000 + d) for d in range(n_drugs)])
    order = rng.permutation(len(growth))
    return Tables(
        cells=NamedTable(ids=[n.replace(":", ".") for n in cell_names],
                         columns=[f"GENE{j}" for j in range(n_cf)], values=cell_values),
        drugs=NamedTable(ids=list(drug_names), columns=[f"D{j}" for j in range(n_df)],
                         values=drug_values),
        response=DoseResponseRows(
            drugs=drug_names[drug_i[order]], cells=cell_names[cell_i[order]],
            log_conc=concs[conc_i[order]].astype(np.float32),
            growth=growth[order].astype(np.float32), dropped_missing=0),
    )


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
    return DoseData(
        cell_x=impute_and_scale(tables.cells.values, scaling),
        drug_x=impute_and_scale(tables.drugs.values, scaling),
        cell_idx=cells, drug_idx=drugs, log_conc=resp.log_conc[idx],
        y=(resp.growth[idx] / 100.0).astype(np.float32),
        train_idx=empty, val_idx=empty, dropped_unknown=dropped)


def load(params: dict[str, Any], fold: int | None, folds: int | None,
         cv_seed: int) -> DoseData:
    """Rows for one job: CV fold ``fold`` grouped by cell line (no cell line on both sides),
    else upstream's holdout: the last ``val_split`` of the seeded shuffle."""
    if params["data"] == "synthetic":
        data = prepare(synthesize(params), params, "synthetic data")
    else:
        directory = Path(params["data"])
        exclude: list[set[str]] = []
        for name, column in ((TEST_CELL_FILE, "CELLNAME"), (TEST_DRUG_FILE, "NSC")):
            path = directory / name
            exclude.append(read_id_list(path, column) if path.is_file() else set())
        data = prepare(read_tables(directory), params, str(directory / RESPONSE_FILE),
                       exclude[0], exclude[1])
    n = len(data.y)
    if fold is not None and folds is not None:
        n_cells = len(np.unique(data.cell_idx))
        if n_cells < folds:
            raise ValueError(f"cannot split {n_cells} cell lines into {folds} folds")
        assignment = kfold_assignment(n, folds, cv_seed, groups=data.cell_idx)
        data.train_idx, data.val_idx = fold_indices(assignment, fold)
        data.fold_assignment = assignment
    else:
        order = np.random.default_rng(int(params["rng_seed"])).permutation(n)
        n_val = int(n * float(params["val_split"]))
        if n_val < 1 or n_val >= n:
            raise ValueError(f"val_split={params['val_split']} leaves no validation or no "
                             f"training rows out of {n}")
        data.train_idx, data.val_idx = np.sort(order[: n - n_val]), np.sort(order[n - n_val :])
    return data
