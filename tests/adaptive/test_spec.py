"""What an optuna sweep file becomes (the error cases live in tests/spec/test_errors.py)."""

from __future__ import annotations

from pathlib import Path

from candle.adaptive.config import OptunaConfig
from candle.spec import load_sweep
from candle.spec.model import Choice, IntRange, Uniform
from tests.conftest import write


def test_optuna_search_with_options_objectives_and_scientific_bounds(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path / "s.yaml", """
        name: s
        benchmark: nt3
        search:
          method: optuna
          sampler: {name: nsga2, population_size: 6}
          trials: 30
          seed: 4
          metric: [val_loss, val_accuracy]
          direction: [minimize, maximize]
          space:
            learning_rate: {loguniform: [1e-4, 1e-2]}
            batch_size: {int: [8, 64], step: 8}
            dense: [[32, 8], [64]]
    """))
    search = sweep.search
    assert search.method == "optuna" and search.trials == 30
    assert search.sampler == "nsga2" and search.sampler_options == {"population_size": 6}
    assert search.objectives == (("val_loss", "minimize"), ("val_accuracy", "maximize"))
    assert search.space["learning_rate"] == Uniform(1e-4, 1e-2, log=True)
    assert search.space["batch_size"] == IntRange(8, 64, step=8)
    assert search.space["dense"] == Choice(([32, 8], [64]))
    config = OptunaConfig.of(sweep.name, search)
    again = OptunaConfig.from_record(config.to_record())
    assert again == config and again.dimensions() == search.space
    assert again.multi_objective and not again.pruning


def test_list_valued_choices_travel_through_optuna_as_json(tmp_path: Path) -> None:
    from candle.spec.samplers import search_space

    space = search_space({"dense": Choice(([32, 8], [64])), "act": Choice(("relu", "tanh"))})
    assert space.distributions["dense"].choices == ("[32, 8]", "[64]")
    assert space.decode({"dense": "[64]", "act": "tanh"}) == {"dense": [64], "act": "tanh"}
