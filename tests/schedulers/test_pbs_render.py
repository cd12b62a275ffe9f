"""Rendered qsub scripts: golden files, what each directive carries (hostile values:
test_render_hostile.py), PBS site configs. All offline: no PBS server exists here (the shared
backend suite submits these scripts to the PBS double, tests/schedulers/pbs_double/)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from candle.schedulers.pbs.render import render_array, render_pack
from candle.spec.site import SiteConfig, load_site

GOLDEN = Path(__file__).parent / "golden"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SITE = SiteConfig(scheduler="pbs", account="PROJ123", queue="prod", filesystems="home:eagle",
                  place="scatter", select_extra="system=polaris", cores_per_node=32,
                  gpus_per_node=4, mpi="pals", setup=("module use /soft/modulefiles",
                                                      "module load conda"),
                  env={"MPICH_GPU_SUPPORT_ENABLED": "1", "NOTE": "it's $(not) run"},
                  directives=("-m n",), python="/opt/venv/bin/python")


def test_pack_script_matches_golden() -> None:
    text = render_pack(run_id="r1", tag="candle-run:r1:t1", run_dir=Path("/lus/runs/a"),
                       name="nt3", walltime="1-02:00:00", nodes=4, tasks_per_node=32,
                       gpus_per_node=4, site=SITE, signal_lead=300)
    assert text == (GOLDEN / "pack.pbs").read_text()
    assert "#PBS -l select=4:ncpus=32:mpiprocs=4:ngpus=4:system=polaris\n" in text
    assert "#PBS -l walltime=26:00:00\n" in text  # PBS counts hours past a day


def test_array_script_matches_golden() -> None:
    text = render_array(run_id="r1", tag="candle-run:r1:t2", run_dir=Path("/lus/runs/a"),
                        name="nt3", walltime="00:30:00", ranks=4, cores_per_node=32,
                        gpus_per_node=4, count=25, throttle=5, chunk="chunk-0003.txt",
                        site=SITE, signal_lead=120)
    assert text == (GOLDEN / "array.pbs").read_text()
    assert "#PBS -J 0-24\n#PBS -W max_run_subjobs=5\n" in text
    assert "#PBS -o array-0003.^array_index^.out\n" in text  # one log per subjob


def test_a_chunk_of_one_job_is_a_plain_job() -> None:
    text = render_array(run_id="r", tag="c", run_dir=Path("/r"), name="n",
                        walltime="00:10:00", ranks=2, cores_per_node=0, gpus_per_node=0,
                        count=1, throttle=3, chunk="chunk-0001.txt", site=SiteConfig("pbs"))
    assert "-J" not in text and "max_run_subjobs" not in text
    assert "#PBS -o array-0001.out\n" in text
    assert "#PBS -l select=1:ncpus=2:mpiprocs=2\n" in text


def test_pbs_site_configs_ship() -> None:
    polaris = load_site(CONFIGS / "polaris-like.yaml")
    assert (polaris.scheduler, polaris.mpi, polaris.gpus_per_node) == ("pbs", "pals", 4)
    assert (polaris.filesystems, polaris.select_extra) == ("home:eagle", "system=polaris")
    generic = load_site(CONFIGS / "generic-pbs.yaml")
    assert (generic.scheduler, generic.mpi) == ("pbs", "hydra")


@pytest.mark.parametrize("workflow", ["nt3_polaris_pack.yaml", "pbs_array.yaml"])
def test_dry_run_prints_qsub_scripts(workflow: str, tmp_path: Path) -> None:
    """`candle run --dry-run` with scheduler pbs, as a Polaris user would type it. Array mode
    asks the server for its limits; with no qstat here it says so and uses the defaults."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [str(root / ".venv" / "bin" / "python"), "-m", "candle.cli", "run", "--dry-run",
         str(root / "workflows" / workflow)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("#!/bin/bash") == 1
    assert "#PBS -l filesystems=home:eagle" in proc.stdout
    assert "#PBS -v CANDLE_TAG=candle-run:" in proc.stdout
    if workflow == "pbs_array.yaml":
        assert "#PBS -J 0-11\n#PBS -W max_run_subjobs=4" in proc.stdout
        assert "array-task" in proc.stdout
    else:
        assert "#PBS -l select=2:ncpus=32:mpiprocs=4:ngpus=4:system=polaris" in proc.stdout
        assert "candle.cli supervise" in proc.stdout


# -- an array subjob asks for what its job uses, not a whole node -------------------------

SHARED = SiteConfig("pbs", cores_per_node=2, mpi="openmpi")
POLARIS = SiteConfig("pbs", place="scatter", select_extra="system=polaris", cores_per_node=32,
                     gpus_per_node=4, mpi="pals")


def _subjob_select(site: SiteConfig, ranks: int, cores: int, gpus: int) -> str:
    text = render_array(run_id="r", tag="c", run_dir=Path("/r"), name="n",
                        walltime="00:10:00", ranks=ranks, cores_per_node=cores,
                        gpus_per_node=gpus, count=6, throttle=2, chunk="chunk-0000.txt",
                        site=site)
    (line,) = [x for x in text.splitlines() if x.startswith("#PBS -l select=")]
    return line.removeprefix("#PBS -l select=")


@pytest.mark.parametrize(("site", "ranks", "cores", "gpus", "select_spec"), [
    # a 1-rank job on a shared 2-core node: one core, so max_run_subjobs=2 runs two at once
    (SHARED, 1, 2, 0, "1:ncpus=1:mpiprocs=1"),
    (SHARED, 2, 2, 0, "1:ncpus=2:mpiprocs=2"),
    (SHARED, 3, 2, 0, "2:ncpus=2:mpiprocs=2"),
    (SiteConfig("pbs"), 3, 0, 0, "1:ncpus=3:mpiprocs=3"),  # node size unknown
    # GPU ranks: one GPU each and its share of the node's cores (32 / 4) as threads
    (POLARIS, 1, 32, 4, "1:ncpus=8:mpiprocs=1:ngpus=1:system=polaris"),
    (POLARIS, 4, 32, 4, "1:ncpus=32:mpiprocs=4:ngpus=4:system=polaris"),
    (POLARIS, 8, 32, 4, "2:ncpus=32:mpiprocs=4:ngpus=4:system=polaris"),  # GPUs bound it
])
def test_an_array_subjob_asks_for_what_its_job_uses(site: SiteConfig, ranks: int, cores: int,
                                                     gpus: int, select_spec: str) -> None:
    assert _subjob_select(site, ranks, cores, gpus) == select_spec


def test_an_exclusive_node_site_gives_the_subjob_the_whole_nodes_cores() -> None:
    """place=excl (Polaris): the node is the subjob's anyway, so its ranks get every core
    as threads (NCPUS); the GPUs asked are still the ones its ranks bind."""
    excl = SiteConfig("pbs", place="scatter:excl", select_extra="system=polaris",
                      cores_per_node=32, gpus_per_node=4, mpi="pals")
    assert _subjob_select(excl, 1, 32, 4) == "1:ncpus=32:mpiprocs=1:ngpus=1:system=polaris"
    polaris = load_site(CONFIGS / "polaris-like.yaml")
    assert "excl" in polaris.place
