"""Hostile values in batch scripts (Slurm's and PBS's alike): paths, chunk names and site
environment full of quotes, $(...), backticks and ; reach the program intact and execute
nothing. Offline: the rendered script runs under bash with a stub for python."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from candle.schedulers.batch.backend import backend_for
from candle.spec.site import SiteConfig


@pytest.mark.parametrize("scheduler", ["slurm", "pbs"])
def test_hostile_values_reach_the_program_intact_and_execute_nothing(
        tmp_path: Path, scheduler: str) -> None:
    backend = backend_for(scheduler)
    canary = tmp_path / "PWNED"
    stub = tmp_path / "python"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_OUT"\nenv > "$ENV_OUT"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    evil_dir = tmp_path / f"run 'x' $(touch {canary}) `touch {canary}`; touch {canary}"
    site = SiteConfig(scheduler, env={"EVIL": f"$(touch {canary}) `touch {canary}` ' \" ; x"},
                      python=str(stub))
    for text in (
        backend.render_pack(run_id="r", tag="c", run_dir=evil_dir, name="n",
                            walltime="00:01:00", nodes=1, tasks_per_node=1, gpus_per_node=0,
                            site=site),
        backend.render_array(run_id="r", tag="c", run_dir=evil_dir, name="n",
                             walltime="00:01:00", ranks=1, cores_per_node=1, gpus_per_node=0,
                             count=1, throttle=0, chunk=f"c $(touch {canary})", site=site),
    ):
        script = tmp_path / f"job{backend.SUFFIX}"
        script.write_text(text)
        env = {**os.environ, "ARGS_OUT": str(tmp_path / "args"), "ENV_OUT": str(tmp_path / "env")}
        subprocess.run(["bash", str(script)], check=True, env=env, timeout=30)
        args = (tmp_path / "args").read_text().splitlines()
        assert str(evil_dir) in args
        assert f"EVIL=$(touch {canary}) `touch {canary}` ' \" ; x" in \
            (tmp_path / "env").read_text()
        assert not canary.exists()
