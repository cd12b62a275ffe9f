"""Points x folds x replicas, with stable ids and seeded random search."""

from __future__ import annotations

import json
from pathlib import Path

from candle.plan import count_points, iter_jobs
from candle.spec import load_sweep
from tests.conftest import write

GRID = """
name: g
benchmark: nt3
params: {epochs: 1}
search:
  method: grid
  space:
    learning_rate: [0.001, 0.01, 0.1]
    dense: [[200, 20], [100, 10]]
cv: {folds: 5, seed: 1}
uq: {replicas: 3}
"""

RANDOM = """
name: r
benchmark: nt3
search:
  method: random
  trials: 25
  seed: {seed}
  space:
    learning_rate: {{loguniform: [0.0001, 0.1]}}
    dropout: {{uniform: [0.0, 0.5]}}
    batch_size: {{int: [16, 64], log: true}}
    optimizer: [sgd, adam]
"""


def test_grid_cross_folds_replicas(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path / "s.yaml", GRID))
    jobs = list(iter_jobs(sweep))
    assert count_points(sweep) == 6
    assert len(jobs) == 6 * 5 * 3
    assert len({j.id for j in jobs}) == len(jobs)
    assert {(j.fold, j.replica) for j in jobs if j.point == 0} == {
        (f, r) for f in range(5) for r in range(3)
    }
    assert {j.params["epochs"] for j in jobs} == {1}
    assert {tuple(j.params["dense"]) for j in jobs} == {(200, 20), (100, 10)}
    # replicas get distinct seeds; folds of one replica share a seed
    seeds = {(j.point, j.fold): set() for j in jobs}
    for j in jobs:
        seeds[(j.point, j.fold)].add(j.seed)
    assert all(len(s) == 3 for s in seeds.values())


def test_ids_are_stable_across_loads_and_change_with_params(tmp_path: Path) -> None:
    first = [j.id for j in iter_jobs(load_sweep(write(tmp_path / "a.yaml", GRID)))]
    again = [j.id for j in iter_jobs(load_sweep(write(tmp_path / "b.yaml", GRID)))]
    assert first == again
    changed = GRID.replace("epochs: 1", "epochs: 2")
    other = [j.id for j in iter_jobs(load_sweep(write(tmp_path / "c.yaml", changed)))]
    assert not set(first) & set(other)


def test_random_search_is_seeded_and_in_bounds(tmp_path: Path) -> None:
    a = [j.point_params for j in iter_jobs(load_sweep(write(tmp_path / "a.yaml",
                                                           RANDOM.format(seed=3))))]
    b = [j.point_params for j in iter_jobs(load_sweep(write(tmp_path / "b.yaml",
                                                           RANDOM.format(seed=3))))]
    c = [j.point_params for j in iter_jobs(load_sweep(write(tmp_path / "c.yaml",
                                                           RANDOM.format(seed=4))))]
    assert a == b
    assert a != c
    assert len(a) == 25
    for p in a:
        assert 0.0001 <= p["learning_rate"] <= 0.1
        assert 0.0 <= p["dropout"] <= 0.5
        assert 16 <= p["batch_size"] <= 64 and isinstance(p["batch_size"], int)
        assert p["optimizer"] in ("sgd", "adam")


def test_random_over_a_small_discrete_space_stops_at_its_size(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path / "s.yaml", """
        name: small
        benchmark: nt3
        search: {method: random, trials: 50, space: {optimizer: [sgd, adam], epochs: [1, 2]}}
    """))
    points = [j.point_params for j in iter_jobs(sweep)]
    assert len(points) == 4
    assert len({(p["optimizer"], p["epochs"]) for p in points}) == 4


def test_list_points_override_fixed_params(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path / "s.yaml", """
        name: l
        benchmark: nt3
        params: {epochs: 3, dropout: 0.5}
        search: {method: list, points: [{dropout: 0.1}, {}]}
    """))
    jobs = list(iter_jobs(sweep))
    assert [j.params["dropout"] for j in jobs] == [0.1, 0.5]
    assert all(j.params["epochs"] == 3 for j in jobs)
    assert jobs[0].seed == 7102  # NT3's default rng_seed


def test_a_noise_sweep_crosses_every_point_with_its_levels(tmp_path: Path) -> None:
    text = GRID.replace("uq: {replicas: 3}",
                        "uq: {method: noise, replicas: 2, noise_levels: [0.0, 0.2, 0.5]}")
    sweep = load_sweep(write(tmp_path / "s.yaml", text))
    jobs = list(iter_jobs(sweep))
    assert count_points(sweep) == 6 * 3
    assert len(jobs) == 6 * 3 * 5 * 2
    levels = {(j.point, j.point_params["uq_noise"]) for j in jobs}
    assert len(levels) == 18 and {lvl for _, lvl in levels} == {0.0, 0.2, 0.5}
    assert all(j.params["uq_noise"] == j.point_params["uq_noise"] for j in jobs)
    assert len({j.id for j in jobs}) == len(jobs)
    # one point's levels side by side: points 0, 1, 2 are the first grid point's levels
    first = {j.point: j.point_params for j in jobs if j.point < 3}
    assert [first[i]["uq_noise"] for i in range(3)] == [0.0, 0.2, 0.5]
    assert len({json.dumps({k: v for k, v in p.items() if k != "uq_noise"}, sort_keys=True)
                for p in first.values()}) == 1
