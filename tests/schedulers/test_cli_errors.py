"""The CLI's scheduler paths never end in a traceback or do nothing silently: a local run
cannot be cancelled or waited for (one line, exit 2), a failing scancel/qdel/sbatch is one
line naming the command, its exit code and stderr, and `oversubscribe` is refused where
the allocation could not honour it. Offline: fake scheduler commands on PATH."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.conftest import write

MODEL = "def f(params):\n    return {'val_loss': 0.0}\n"


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _local_sweep(tmp_path: Path) -> Path:
    write(tmp_path / "m.py", MODEL)
    return write(tmp_path / "s.yaml", f"""
        name: loc
        benchmark: "m:f"
        resources:
          scheduler: local
        store: {tmp_path / "runs"}
    """)


def test_cancel_of_a_local_run_says_how_to_stop_it(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    sweep = _local_sweep(tmp_path)
    assert cli("run", str(sweep)).code == 0
    result = cli("cancel", str(tmp_path / "runs" / "loc"))
    assert result.code == 2 and result.out == ""
    line = _one_line(result.err)
    assert line.startswith(f"{tmp_path / 'runs' / 'loc'}: ")
    assert "local run" in line and "Ctrl-C" in line and "SIGTERM" in line


def test_run_wait_on_a_local_sweep_is_refused(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """A local `candle run` already waits for its jobs: --wait was silently ignored."""
    sweep = _local_sweep(tmp_path)
    result = cli("run", "--wait", str(sweep))
    assert result.code == 2
    line = _one_line(result.err)
    assert line.startswith(f"{sweep}:4: resources.scheduler: "), line
    assert "--wait" in line and "local" in line
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_dry_run_on_a_local_sweep_is_a_located_error(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    sweep = _local_sweep(tmp_path)
    result = cli("run", "--dry-run", str(sweep))
    assert result.code == 2
    assert _one_line(result.err).startswith(f"{sweep}:4: resources.scheduler: ")


# -- fake scheduler commands --------------------------------------------------------------

SLURM_FAKES = {
    "sbatch": 'echo 4242',
    "squeue": 'exit 0',
    "sacct": 'echo "sacct: error: Problem talking to the database: Connection refused" >&2; '
             'exit 1',
    "scancel": 'echo "scancel: error: Kill job error on job id 4242: Access/permission '
               'denied" >&2; exit 1',
}
PBS_FAKES = {
    "qsub": 'echo 12.pbsserver',
    "qstat": 'echo "Connection refused" >&2; echo "qstat: cannot connect to server '
             'pbsserver (errno=15010)" >&2; exit 1',
    "qdel": 'echo "qdel: Unauthorized Request  12.pbsserver" >&2; exit 159',
}


def _fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, commands: dict[str, str]) -> None:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name, body in commands.items():
        path = folder / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def _cluster_sweep(tmp_path: Path, scheduler: str, extra: str = "") -> Path:
    write(tmp_path / "m.py", MODEL)
    site = "local-slurm" if scheduler == "slurm" else "generic-pbs"
    return write(tmp_path / "s.yaml", f"""
        name: c
        benchmark: "m:f"
        resources:
          scheduler: {scheduler}
          site: {site}
        {extra}
        store: {tmp_path / "runs"}
    """)


@pytest.mark.parametrize(("scheduler", "fakes", "expected"), [
    ("slurm", SLURM_FAKES, "scancel 4242 exited 1: scancel: error: Kill job error on job id "
                           "4242: Access/permission denied"),
    ("pbs", PBS_FAKES, "qdel 12.pbsserver exited 159: qdel: Unauthorized Request  "
                       "12.pbsserver"),
])
def test_a_failing_cancel_is_one_line_naming_the_command(
        tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch, scheduler: str,  # type: ignore[no-untyped-def]
        fakes: dict[str, str], expected: str) -> None:
    _fakes(tmp_path, monkeypatch, fakes)
    submitted = cli("run", str(_cluster_sweep(tmp_path, scheduler)))
    assert submitted.code == 0, submitted.err
    result = cli("cancel", str(tmp_path / "runs" / "c"))
    assert result.code == 1
    assert expected in _one_line(result.err)


@pytest.mark.parametrize(("scheduler", "fakes"), [("slurm", SLURM_FAKES), ("pbs", PBS_FAKES)])
def test_status_survives_a_failing_status_query(
        tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch, scheduler: str,  # type: ignore[no-untyped-def]
        fakes: dict[str, str]) -> None:
    """sacct and squeue (qstat) failing: the store's counts still show, no traceback."""
    _fakes(tmp_path, monkeypatch, {**fakes, "squeue": "echo 'squeue: error: down' >&2; exit 1"})
    assert cli("run", str(_cluster_sweep(tmp_path, scheduler))).code == 0
    result = cli("status", str(tmp_path / "runs" / "c"), "--format", "json")
    assert result.code == 0 and "Traceback" not in result.err
    assert '"pending": 1' in result.out


@pytest.mark.parametrize(("scheduler", "submit"), [("slurm", "sbatch"), ("pbs", "qsub")])
def test_a_failing_submission_is_one_line(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                          scheduler: str, submit: str) -> None:
    fakes = dict(SLURM_FAKES if scheduler == "slurm" else PBS_FAKES)
    fakes[submit] = f"echo '{submit}: error: invalid account' >&2; exit 1"
    _fakes(tmp_path, monkeypatch, fakes)
    result = cli("run", "--wait", str(_cluster_sweep(tmp_path, scheduler)))
    assert result.code == 1
    line = _one_line(result.err)
    assert f"{submit} " in line and "exited 1: " in line and "invalid account" in line


@pytest.mark.parametrize("scheduler", ["slurm", "pbs"])
def test_oversubscribe_with_a_batch_scheduler_is_a_located_error(
        tmp_path: Path, cli, scheduler: str) -> None:  # type: ignore[no-untyped-def]
    """It validated, then every allocation died with a ValueError: the slots are what the
    scheduler gave, and srun/mpiexec do not start more ranks than that."""
    sweep = _cluster_sweep(tmp_path, scheduler, "  oversubscribe: true")
    for command in ("validate", "plan"):
        result = cli(command, str(sweep))
        assert result.code == 2
        line = _one_line(result.err)
        assert line.startswith(f"{sweep}:6: resources.oversubscribe: "), line
        assert "local" in line


def test_ranks_that_do_not_fit_an_allocation_do_not_suggest_oversubscribe(
        tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    sweep = _cluster_sweep(tmp_path, "slurm", "  ranks_per_job: 5")  # local-slurm: 2 cores
    line = _one_line(cli("validate", str(sweep)).err)
    assert "resources.ranks_per_job: 5 ranks do not fit" in line
    assert "oversubscribe" not in line and "nodes" in line
