"""Measurement: within-study vs cross-study error of P1B3 on its synthetic studies (issue 21).

    python scripts/perf/p1b3_cross_study.py [--studies CCLE,CTRP,GDSC,NCI60,gCSI]
        [--epochs 30] [--cells 60] [--drugs 100] [--seeds 1] [--groups cell_drug]
        [--json OUT]

For each study S: train P1B3 (a small MLP, through the benchmark's own training function)
on S's rows only (cross-study design: train_studies [S], test_studies all others), with
``val_split`` of S's groups held out (``--groups``: (cell line, drug) pairs by default, so
that within-study rows are as unseen as another study's; ``rows``: upstream's random rows);
report the validation MSE on S's held-out rows (within-study) and the test MSE on each
other study's rows (cross-study: test_<T>_mse).
The studies differ by a growth offset, an IC50 shift, the curve's steepness and noise
(candle_benchmarks.p1b3.data.study_effects), and each screens its own subset of cell
lines x drugs, so cross-study error should be measurably worse. Prints a table (MSE in
(growth/100)^2 units, as the model's loss), the ratio of the mean cross-study to the mean
within-study MSE, and the cross-study MSE on only the (cell line, drug) pairs the model
trained on (what the studies' own shifts cost, apart from unseen cell lines and drugs).
CPU is enough (about a minute per seed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", default="CCLE,CTRP,GDSC,NCI60,gCSI")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--cells", type=int, default=60)
    parser.add_argument("--drugs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per study")
    parser.add_argument("--groups", default="cell_drug",
                        choices=("cell_drug", "cell", "drug", "rows"),
                        help="what the within-study validation holds out")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from candle.api import TrainContext
    from candle_benchmarks.p1b3 import BENCHMARK
    from candle_benchmarks.p1b3.data import load, study_effects
    from candle_benchmarks.p1b3.train import train

    studies = [s for s in args.studies.split(",") if s]
    params: dict[str, Any] = BENCHMARK.defaults() | {
        "studies": studies, "cells": args.cells, "drugs": args.drugs,
        "cell_features": 200, "drug_features": 100, "dense": [128, 64], "dropout": 0.0,
        "optimizer": "adam", "learning_rate": 1e-3, "batch_size": 64,
        "epochs": args.epochs, "subsample": "none", "val_split": 0.2,
    }
    for name, effect in study_effects(params).items():
        print(f"# {name}: offset {effect['offset']:+.1f} pp, IC50 shift "
              f"{effect['ic50_shift']:+.2f} log10, slope x{effect['slope']:.2f}, "
              f"noise {effect['noise']:.1f} pp")
    rows: list[dict[str, Any]] = []
    for source in studies:
        others = [s for s in studies if s != source]
        groups = None if args.groups == "rows" else args.groups
        design = {"groups": groups, "holdout": 0.0, "seed": 0, "train_studies": [source],
                  "test_studies": others, "node": None, "children": 0, "split": None}
        dose = load(params, None, None, 0, design)
        trained = set(zip(dose.cell_idx[dose.train_idx].tolist(),
                          dose.drug_idx[dose.train_idx].tolist(), strict=True))
        for seed in range(1, args.seeds + 1):
            with tempfile.TemporaryDirectory() as job_dir:
                result = train(params, TrainContext(job_dir=Path(job_dir), seed=seed,
                                                    design=design))
                model = tf.keras.models.load_model(Path(job_dir) / result["model_file"],
                                                   compile=False)
            metrics = result["metrics"]
            cross = {t: metrics[f"test_{t}_mse"] for t in others}
            # The same test rows, only those of (cell line, drug) pairs the model trained
            # on: what is left there is the studies' own difference.
            seen: dict[str, float] = {}
            for t in others:
                idx = dose.test_idx[t]
                mask = np.array([(c, d) in trained for c, d in zip(
                    dose.cell_idx[idx].tolist(), dose.drug_idx[idx].tolist(), strict=True)])
                if mask.any():
                    pred = model.predict(dose.rows(idx[mask]), verbose=0, batch_size=1024)
                    seen[t] = float(np.mean((pred[:, 0] - dose.y[idx[mask]]) ** 2))
            rows.append({"train": source, "seed": seed, "within": metrics["val_mse"],
                         "cross": cross, "cross_seen_pairs": seen})
    print(f"{'train on':<10} {'within':>8} " + " ".join(f"{s:>8}" for s in studies)
          + f" {'cross mean':>10} {'seen pairs':>10}")
    for row in rows:
        cells = " ".join(f"{row['cross'].get(s, float('nan')):8.4f}" if s != row["train"]
                         else f"{'-':>8}" for s in studies)
        print(f"{row['train']:<10} {row['within']:8.4f} {cells} "
              f"{statistics.mean(row['cross'].values()):10.4f} "
              f"{statistics.mean(row['cross_seen_pairs'].values()):10.4f}")
    within = statistics.mean(r["within"] for r in rows)
    cross = statistics.mean(v for r in rows for v in r["cross"].values())
    seen_mean = statistics.mean(v for r in rows for v in r["cross_seen_pairs"].values())
    worse = sum(v > r["within"] for r in rows for v in r["cross"].values())
    worse_seen = sum(v > r["within"] for r in rows for v in r["cross_seen_pairs"].values())
    total = sum(len(r["cross"]) for r in rows)
    total_seen = sum(len(r["cross_seen_pairs"]) for r in rows)
    print(f"mean within-study MSE {within:.4f}; mean cross-study MSE {cross:.4f} "
          f"(x{cross / within:.2f}; worse in {worse}/{total} pairs of studies); on the "
          f"(cell line, drug) pairs trained on only {seen_mean:.4f} (x{seen_mean / within:.2f}; "
          f"worse in {worse_seen}/{total_seen})")
    if args.json:
        args.json.write_text(json.dumps({"params": {k: params[k] for k in (
            "studies", "cells", "drugs", "cell_features", "drug_features", "dense", "epochs",
            "rng_seed")}, "groups": args.groups, "runs": rows, "within_mean": within,
            "cross_mean": cross, "cross_seen_pairs_mean": seen_mean},
            indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
