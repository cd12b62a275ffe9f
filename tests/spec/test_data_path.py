"""A built-in's data directory is relative to the sweep file (like `store`) and absolute in
every job's params, so jobs find it wherever they start and its id names the data it read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from candle.plan import iter_jobs
from candle.spec import load_sweep
from tests.conftest import write


def test_relative_data_resolves_against_the_sweep_file(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    sweeps = tmp_path / "sweeps"
    write(sweeps / "a.yaml", """
        name: a
        benchmark: nt3
        params: {data: ../datasets/nt3, epochs: 1}
        search: {method: grid, space: {data: [../datasets/nt3, synthetic]}}
    """)
    monkeypatch.chdir(tmp_path)  # not the sweep's folder
    spec = load_sweep(sweeps / "a.yaml")
    expected = str((tmp_path / "datasets" / "nt3").resolve())
    assert spec.params["data"] == expected
    assert [j.params["data"] for j in iter_jobs(spec)] == [expected, "synthetic"]
    assert os.path.isabs(spec.params["data"])


def test_the_same_relative_path_beside_two_sweeps_is_two_datasets(tmp_path: Path) -> None:
    text = """
        name: a
        benchmark: nt3
        params: {data: nt3-files, epochs: 1}
    """
    first = load_sweep(write(tmp_path / "one" / "s.yaml", text))
    second = load_sweep(write(tmp_path / "two" / "s.yaml", text))
    assert next(iter_jobs(first)).id != next(iter_jobs(second)).id


def test_a_data_path_that_cannot_be_expanded_is_one_line(tmp_path: Path) -> None:
    """`~nobody` (no such user here) is the user's mistake: one line naming the file, line
    and key, not a RuntimeError from pathlib (found by tests/chaos/test_fuzz_sweeps.py)."""
    from candle.errors import UserError

    path = write(tmp_path / "a.yaml", """
        name: a
        benchmark: nt3
        params:
          data: "~nobody-here-at-all/x"
        search: {method: grid, space: {epochs: [1]}}
    """)
    with pytest.raises(UserError) as caught:
        load_sweep(path)
    assert str(caught.value).startswith(f"{path}:4: params.data: cannot use ~nobody-here")
