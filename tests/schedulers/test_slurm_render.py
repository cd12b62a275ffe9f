"""Rendered sbatch scripts: golden files and the shipped site configs (hostile values:
test_render_hostile.py).

These run offline; the live-Slurm tests (tests/schedulers/test_slurm_live.py) submit the
same scripts to a real Slurm."""

from __future__ import annotations

from pathlib import Path

from candle.schedulers.slurm.render import render_array, render_pack
from candle.spec.site import SiteConfig, load_site
from tests.conftest import write

GOLDEN = Path(__file__).parent / "golden"
SITE = SiteConfig(partition="gpu", account="proj123", qos="normal", constraint="a100&ib",
                  gres="gpu:4", modules=("gcc/12", "openmpi/4.1"),
                  setup=("source /opt/venv/bin/activate",),
                  env={"OMPI_MCA_btl": "self,tcp", "NOTE": "it's $(not) run"},
                  directives=("--exclusive",), python="/opt/venv/bin/python")


def test_pack_script_matches_golden() -> None:
    text = render_pack(run_id="r1", tag="candle-run:r1:t1", run_dir=Path("/scratch/runs/a"),
                       name="nt3", walltime="02:00:00", nodes=4, tasks_per_node=8, site=SITE,
                       signal_lead=300)
    assert text == (GOLDEN / "pack.sbatch").read_text()


def test_array_script_matches_golden() -> None:
    text = render_array(run_id="r1", tag="candle-run:r1:t2",
                        run_dir=Path("/scratch/runs/a"), name="nt3", walltime="00:30:00",
                        ranks=4, cores_per_node=2, count=25, throttle=5,
                        chunk="chunk-0000.txt", site=SITE, signal_lead=120)
    assert text == (GOLDEN / "array.sbatch").read_text()


def test_shipped_site_configs_load() -> None:
    configs = Path(__file__).resolve().parents[2] / "configs"
    names = sorted(p.name for p in configs.glob("*.yaml"))
    assert {"local-slurm.yaml", "frontier-like.yaml", "perlmutter-like.yaml"} <= set(names)
    for name in names:
        assert load_site(configs / name).scheduler in ("slurm", "pbs")


def test_array_mode_chunks_to_the_cluster_limits(tmp_path: Path) -> None:
    from candle.plan.jobs import iter_jobs
    from candle.schedulers.batch.submit import build_scripts
    from candle.spec import load_sweep

    write(tmp_path / "m.py", "def f(p):\n    return {'val_loss': 0.0}\n")
    sweep = load_sweep(write(tmp_path / "s.yaml", f"""
        name: big
        benchmark: "m:f"
        search:
          method: list
          points: {[{"x": i} for i in range(25)]}
        resources: {{scheduler: slurm, mode: array, array_throttle: 3}}
    """))
    jobs = list(iter_jobs(sweep))
    scripts = build_scripts(sweep, jobs, tmp_path / "run", limits=(11, 1000))  # 10 per array
    assert [len(s.chunk_ids) for s in scripts] == [10, 10, 5]
    assert sum((s.chunk_ids for s in scripts), ()) == tuple(j.id for j in jobs)
    assert "#SBATCH --array=0-9%3" in scripts[0].text
    assert "#SBATCH --array=0-4%3" in scripts[2].text
    assert len({s.tag for s in scripts}) == 3  # each submission its own tag
    few = build_scripts(sweep, jobs, tmp_path / "run", limits=(1001, 16))  # MaxSubmitJobs 16
    assert [len(s.chunk_ids) for s in few] == [8, 8, 8, 1]


def _array_resources(ranks: int, cores: int, gpus: int) -> list[str]:
    text = render_array(run_id="r", tag="c", run_dir=Path("/r"), name="n",
                        walltime="00:10:00", ranks=ranks, cores_per_node=cores, count=6,
                        throttle=2, chunk="chunk-0000.txt", site=SiteConfig(),
                        gpus_per_node=gpus)
    return [line.removeprefix("#SBATCH ") for line in text.splitlines()
            if line.startswith("#SBATCH --") and not line.startswith(
                ("#SBATCH --job-name", "#SBATCH --comment", "#SBATCH --time",
                 "#SBATCH --output", "#SBATCH --array", "#SBATCH --signal", "#SBATCH --requeue",
                 "#SBATCH --open-mode"))]


def test_an_array_task_asks_for_what_its_job_uses() -> None:
    """Each task one job: its ranks, and on GPU nodes one GPU per rank with that GPU's
    share of the node's cores; never the node's GPUs for a 1-rank job (the PBS mistake)."""
    assert _array_resources(1, 2, 0) == ["--nodes=1", "--ntasks=1"]
    assert _array_resources(3, 2, 0) == ["--nodes=2", "--ntasks=3"]
    assert _array_resources(1, 64, 4) == ["--nodes=1", "--ntasks=1", "--cpus-per-task=16",
                                          "--gpus-per-task=1"]
    assert _array_resources(8, 64, 4) == ["--nodes=2", "--ntasks=8", "--cpus-per-task=16",
                                          "--gpus-per-task=1"]  # 4 GPUs a node bound it
    assert _array_resources(2, 0, 0) == ["--nodes=1", "--ntasks=2"]  # node size unknown


def test_gpus_are_asked_per_node_for_a_pack_and_not_by_the_shipped_sites() -> None:
    """A site's GPUs used to be a `--gpus-per-node` directive in every script, so an array
    task of one rank held all of a node's GPUs. The renderer asks for them now."""
    text = render_pack(run_id="r", tag="c", run_dir=Path("/r"), name="n",
                       walltime="00:10:00", nodes=2, tasks_per_node=4, site=SiteConfig(),
                       gpus_per_node=4)
    assert "#SBATCH --gpus-per-node=4\n" in text
    for name in ("perlmutter-like", "frontier-like"):
        site = load_site(Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml")
        assert not [d for d in site.directives if "gpu" in d], (name, site.directives)
        assert "gpu" not in site.gres
