"""A site's `local_scratch` (issue 18) reaches every job as CANDLE_LOCAL_SCRATCH, unexpanded:
the batch script exports it quoted, and each job expands $TMPDIR & co. on its own node.
Offline: the rendered script runs under bash with a stub for python."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from candle.schedulers.batch.backend import backend_for
from candle.spec.site import SiteConfig, load_site
from tests.conftest import write


@pytest.mark.parametrize("value", ["$TMPDIR", "${TMPDIR}/candle", "/dev/shm",
                                   "/local/scratch/$USER", "~/scratch"])
def test_local_scratch_values_load(tmp_path: Path, value: str) -> None:
    site = load_site(write(tmp_path / "site.yaml", f"local_scratch: '{value}'\n"))
    assert site.local_scratch == value
    assert load_site(write(tmp_path / "none.yaml", "scheduler: slurm\n")).local_scratch == ""


@pytest.mark.parametrize("scheduler", ["slurm", "pbs"])
def test_the_batch_script_carries_local_scratch_unexpanded(tmp_path: Path,
                                                          scheduler: str) -> None:
    backend = backend_for(scheduler)
    stub = tmp_path / "python"
    stub.write_text('#!/bin/sh\nenv > "$ENV_OUT"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    site = SiteConfig(scheduler, local_scratch="${TMPDIR}/candle", python=str(stub))
    for text in (
        backend.render_pack(run_id="r", tag="c", run_dir=tmp_path, name="n",
                            walltime="00:01:00", nodes=1, tasks_per_node=1, gpus_per_node=0,
                            site=site),
        backend.render_array(run_id="r", tag="c", run_dir=tmp_path, name="n",
                             walltime="00:01:00", ranks=1, cores_per_node=1, gpus_per_node=0,
                             count=1, throttle=0, chunk="c", site=site),
    ):
        script = tmp_path / f"job{backend.SUFFIX}"
        script.write_text(text)
        env = {**os.environ, "ENV_OUT": str(tmp_path / "env"), "TMPDIR": "/login/tmp"}
        subprocess.run(["bash", str(script)], check=True, env=env, timeout=30)
        assert "CANDLE_LOCAL_SCRATCH=${TMPDIR}/candle" in \
            (tmp_path / "env").read_text().splitlines()
    plain = backend.render_pack(run_id="r", tag="c", run_dir=tmp_path, name="n",
                                walltime="00:01:00", nodes=1, tasks_per_node=1,
                                gpus_per_node=0, site=SiteConfig(scheduler))
    assert "CANDLE_LOCAL_SCRATCH" not in plain
