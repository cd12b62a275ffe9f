"""Malformed sweep files: one line `FILE:LINE: KEY: message`, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write

GOOD = """
name: ok
benchmark: nt3
params:
  epochs: 1
search:
  method: grid
  space:
    learning_rate: [0.001, 0.01]
"""

OPT = ("name: x\nbenchmark: nt3\nsearch:\n  method: optuna\n  space:\n"
       "    dropout: {uniform: [0.1, 0.5]}\n")

CASES = [
    # (file text, expected line, expected key, expected words in message)
    ("name: x\nbenchmark: nt3\nsearch: [unclosed\n", 4, None, "invalid YAML"),
    ("name: x\nbenchmark: nt3\nbogus: 1\n", 3, "bogus", "valid keys: name, benchmark"),
    ("name: x\nbenchmark: nt3\nparams:\n  epochs: many\n", 4, "params.epochs",
     "expected an integer"),
    ("name: x\nbenchmark: nt3\nparams:\n  epochs: 2\n  lernrate: 0.1\n", 5, "params.lernrate",
     "has no parameter 'lernrate'; did you mean 'learning_rate'?; its parameters: activation"),
    ("name: x\nbenchmark: nt3\nsearch:\n  metric: val_los\n", 4, "search.metric",
     "benchmark nt3 does not report 'val_los'; did you mean 'val_loss'?; it reports: loss"),
    ("name: x\nbenchmark: p1b3\nsearch:\n  method: optuna\n  space: {dropout: [0.1]}\n"
     "  metric: [val_loss, val_r3]\n  direction: [minimize, maximize]\n", 6,
     "search.metric[1]", "does not report 'val_r3'; did you mean 'val_r2'?"),
    ("name: x\nbenchmark: nt4\n", 2, "benchmark", "unknown benchmark 'nt4'"),
    ("name: x\nbenchmark: nt3\nsearch:\n  method: grid\n  space: {}\n", 5, "search.space",
     "non-empty"),
    ("name: x\nbenchmark: nt3\nsearch:\n  method: grid\n  space:\n    dropout: []\n", 6,
     "search.space.dropout", "empty list"),
    ("name: x\nbenchmark: nt3\nsearch:\n  method: grid\n  space:\n"
     "    dropout: {uniform: [0, 1]}\n", 6, "search.space.dropout", "grid search needs a list"),
    ("name: x\nbenchmark: nt3\nsearch:\n  method: random\n  space:\n"
     "    dropout: {uniform: [0.5, 0.1]}\n", 6, "search.space.dropout.uniform", "greater than"),
    ("name: x\nbenchmark: nt3\nsearch:\n  method: anneal\n", 4, "search.method",
     "expected one of grid, random, list"),
    ("name: x\nbenchmark: nt3\nsearch:\n  method: list\n  points:\n    - {dropout: 0.1}\n"
     "    - {epochz: 3}\n", 7, "search.points[1].epochz", "has no parameter 'epochz'"),
    ("name: x\nbenchmark: nt3\ncv: {folds: 1}\n", 3, "cv.folds", "must be >= 2"),
    ("name: x\nbenchmark: nt3\nuq:\n  method: dropout\n", 4, "uq.method",
     "expected one of ensemble, bootstrap, mc_dropout, noise"),
    ("name: x\nbenchmark: nt3\nuq:\n  method: ensemble\n  samples: 5\n", 5, "uq.samples",
     "only for uq.method mc_dropout"),
    ("name: x\nbenchmark: nt3\nuq:\n  method: mc_dropout\n  samples: 1\n", 5, "uq.samples",
     "must be >= 2"),
    ("name: x\nbenchmark: nt3\nparams:\n  dropout: 0\nuq: {method: mc_dropout}\n", 4,
     "params.dropout", "needs dropout > 0"),
    ("name: x\nbenchmark: nt3\nuq:\n  method: noise\n", 3, "uq.noise_levels",
     "non-empty list of noise levels"),
    ("name: x\nbenchmark: nt3\nuq:\n  method: noise\n  noise: labels\n"
     "  noise_levels: [0.1, 1.5]\n", 6, "uq.noise_levels[1]", "outside 0..1"),
    ("name: x\nbenchmark: nt3\nuq:\n  method: noise\n  noise_levels: [0.1, 0.1]\n", 5,
     "uq.noise_levels", "levels repeat"),
    ("name: x\nbenchmark: nt3\nuq:\n  loss: heteroscedastic\n", 4, "uq.loss",
     "regression benchmark p1b3"),
    ("name: x\nbenchmark: p1b3\nuq:\n  loss: gaussian\n", 4, "uq.loss",
     "expected one of heteroscedastic, quantile"),
    ("name: x\nbenchmark: nt3\nresources:\n  max_concurrent: -1\n", 4,
     "resources.max_concurrent", "must be >= 0"),
    ("name: x\nbenchmark: nt3\nresources:\n  ranks_per_job: 8\n  slots_per_node: 4\n", 4,
     "resources.ranks_per_job", "8 ranks do not fit in 1 node(s) x 4 slots"),
    ("name: x\nbenchmark: nt3\nresources:\n  ranks_per_job: 6\n  gpus_per_node: 4\n", 4,
     "resources.ranks_per_job", "x 4 GPUs"),
    ("name: x\nbenchmark: nt3\nresources:\n  nodes: 2\n", 4, "resources.nodes",
     "nodes must be 1"),
    ("name: x\nbenchmark: nt3\nresources:\n  oversubscribe: maybe\n", 4,
     "resources.oversubscribe", "expected true or false"),
    ("name: x\nbenchmark: nt3\nresources:\n  walltime: 30min\n", 4, "resources.walltime",
     "HH:MM:SS"),
    ("name: x\nbenchmark: nt3\nresources:\n  scheduler: lsf\n", 4, "resources.scheduler",
     "expected one of local, slurm, pbs"),
    ("name: x\nbenchmark: nt3\nresources:\n  scheduler: pbs\n  site: local-slurm\n", 5,
     "resources.site", "a slurm site; this sweep's scheduler is pbs"),
    ("name: x\nbenchmark: nt3\nresources:\n  scheduler: slurm\n  mode: batch\n", 5,
     "resources.mode", "expected one of pack, array"),
    ("name: x\nbenchmark: nt3\nresources:\n  scheduler: slurm\n  site: nowhere\n", 5,
     "resources.site", "no site config 'nowhere'"),
    ("name: x\nbenchmark: nt3\nresources:\n  mode: array\n", 4, "resources.mode",
     "only for a cluster scheduler"),
    ("name: ../../etc\nbenchmark: nt3\n", 1, "name", "names a directory"),
    ("benchmark: nt3\n", 1, None, "missing required key 'name'"),
    ("", None, None, "the file is empty"),
    ("- just\n- a list\n", 1, None, "expected a mapping"),
    ("name: x\nbenchmark: nt3\nparams:\n  conv: [16, oops, 1]\n", 4, "params.conv",
     "expected an integer, got 'oops'"),
    ("name: x\nbenchmark: nt3\nretries: yes\n", 3, "retries", "expected an integer"),
    # Optuna searches
    (OPT + "  sampler: annealing\n", 7, "search.sampler", "expected one of tpe, gp, cmaes"),
    (OPT + "  sampler: {name: tpe, n_startup: 3}\n", 7, "search.sampler.n_startup",
     "TPESampler has no option 'n_startup'; its options: "),
    (OPT + "  sampler: {n_startup_trials: 3}\n", 7, "search.sampler", "missing 'name'"),
    (OPT + "  pruner: {name: percentile, percentile: 150.0}\n", 7, "search.pruner",
     "PercentilePruner: Percentile must be between 0 and 100"),
    (OPT + "  metric: [val_loss, val_accuracy]\n  direction: [minimize]\n", 8, "search.direction",
     "1 directions for 2 metrics"),
    (OPT + "  metric: [val_loss, val_accuracy]\n  direction: minimize\n  pruner: median\n", 9,
     "search.pruner", "cannot prune a multi-objective study"),
    ("name: x\nbenchmark: nt3\nsearch:\n  method: grid\n  space: {dropout: [0.1]}\n"
     "  sampler: tpe\n", 6, "search.sampler", "only for method optuna"),
    ("name: x\nbenchmark: nt3\nsearch:\n  method: random\n  space: {dropout: [0.1]}\n"
     "  metric: [val_loss, val_accuracy]\n", 6, "search.metric", "expected a string"),
    (OPT.replace("{uniform: [0.1, 0.5]}", "{int: [1, 64], log: true, step: 2}")
     .replace("dropout", "batch_size"), 6, "search.space.batch_size",
     "both log-scaled and stepped"),
    (OPT + "resources:\n  scheduler: slurm\n  mode: array\n", 9, "resources.mode",
     "set search.batch: N"),
    (OPT + "  batch: 4\n  pruner: median\nresources:\n  scheduler: slurm\n  mode: array\n",
     8, "search.pruner", "array tasks have none"),
]


@pytest.mark.parametrize(("text", "line", "key", "words"), CASES)
def test_malformed_sweep_gives_one_line_error(cli, tmp_path: Path, text, line, key, words):  # type: ignore[no-untyped-def]
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(text)
    for command in ("validate", "plan"):
        result = cli(command, str(sweep))
        assert result.code == 2, result
        assert result.out == ""
        lines = result.err.strip().splitlines()
        assert len(lines) == 1, result.err
        message = lines[0]
        assert "Traceback" not in message
        prefix = f"{sweep}:{line}: " if line is not None else f"{sweep}: "
        assert message.startswith(prefix), message
        if key is not None:
            assert message[len(prefix):].startswith(f"{key}: "), message
        assert words in message, message
    assert not (tmp_path / "runs").exists()  # nothing written


def test_missing_file(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("validate", str(tmp_path / "nope.yaml"))
    assert result.code == 2
    assert result.err.strip() == f"{tmp_path / 'nope.yaml'}: no such file"


def test_good_file_validates(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sweep = write(tmp_path / "sweep.yaml", GOOD)
    result = cli("validate", str(sweep))
    assert result.code == 0
    assert "ok (nt3, grid, 2 points)" in result.out


def test_user_model_params_are_not_checked_against_a_benchmark(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sweep = write(tmp_path / "sweep.yaml", """
        name: mine
        benchmark: "mymodel:fit"
        params: {anything: 1}
        search: {method: list, points: [{whatever: [1, 2]}]}
    """)
    assert cli("validate", str(sweep)).code == 0
