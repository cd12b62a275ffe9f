"""search.method: pbt in a sweep file: what it accepts, and one located line (exit 2) for
what it does not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from candle.errors import UserError
from candle.spec import load_sweep
from tests.conftest import candle_cmd, write

SWEEP = """
name: pbt
benchmark: nt3
params: {{epochs: 10}}
search:
  method: pbt
  population: 4
  space: {{learning_rate: {{loguniform: [0.0001, 0.1]}}, conv: [[16, 20, 1], [8, 20, 1]]}}
{extra}
"""


def load(tmp_path: Path, extra: str = "", **fields: str) -> object:
    text = SWEEP.format(extra=extra)
    for old, new in fields.items():
        text = text.replace(old, new)
    return load_sweep(write(tmp_path / "pbt.yaml", text))


def test_defaults_and_what_may_change(tmp_path: Path) -> None:
    sweep = load(tmp_path)
    pbt = sweep.search.pbt  # type: ignore[attr-defined]
    assert (pbt.population, pbt.epochs, pbt.ready, pbt.truncate) == (4, 10, 2, 0.2)
    assert pbt.perturb == (0.8, 1.2) and pbt.resample == 0.25
    assert pbt.mutable == ("learning_rate",)  # conv is drawn per member, never explored


@pytest.mark.parametrize(("extra", "fields", "words"), [
    ("  ready: 10", {}, "search.ready: a ready point every 10 epochs never comes"),
    ("  exploit: {truncate: 0.7}", {}, "search.exploit.truncate: the quantile that exploits "
                                       "must be in (0, 0.5]"),
    ("  explore: {perturb: []}", {}, "search.explore.perturb: expected a list of factors"),
    ("  explore: {resample: 2}", {}, "search.explore.resample: a probability must be in"),
    ("  population: 1", {"  population: 4\n": ""}, "search.population: "),
    ("", {"learning_rate: {loguniform: [0.0001, 0.1]}, ": ""},
     "search.space: nt3 may change learning_rate, dropout, batch_size mid-training"),
    ("cv: {folds: 3}", {}, "cv: population-based training runs one model per member"),
    ("  schedule: [{start: 2, params: {learning_rate: 0.01, conv: [16, 20, 1]}}]", {},
     "search.schedule[0].start: starts go up from 0"),
    ("  schedule: [{start: 0, params: {learning_rate: 0.01}}]", {},
     "search.schedule[0].params: missing conv"),
])
def test_bad_pbt_settings_name_their_key(tmp_path: Path, extra: str, fields: dict[str, str],
                                         words: str) -> None:
    with pytest.raises(UserError) as info:
        load(tmp_path, extra, **fields)
    assert words in str(info.value), str(info.value)


def test_pbt_keys_belong_to_pbt_and_pbt_to_pack_mode(tmp_path: Path) -> None:
    grid = write(tmp_path / "grid.yaml", """
        name: g
        benchmark: nt3
        search: {method: grid, space: {learning_rate: [0.1]}, ready: 2}
    """)
    with pytest.raises(UserError, match=r"search\.ready: only for method pbt"):
        load_sweep(grid)
    array = write(tmp_path / "array.yaml", SWEEP.format(extra="resources: {scheduler: slurm, "
                                                              "mode: array}"))
    proc = subprocess.run(candle_cmd("validate", str(array)), capture_output=True, text=True)
    assert proc.returncode == 2
    assert "resources.mode: population-based training decides each member's next segment" \
        in proc.stderr and "Traceback" not in proc.stderr
