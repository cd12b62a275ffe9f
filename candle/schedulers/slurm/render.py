"""sbatch scripts from two small templates. Every value that reaches a shell line is
`shlex.quote`d; directive values were checked by the site config (no spaces, quotes, $);
paths never appear in directives (sbatch runs in the run's slurm/ folder, so outputs are
relative), because sbatch splits #SBATCH lines on whitespace."""

from __future__ import annotations

import shlex
from pathlib import Path
from string import Template

from candle.schedulers.batch.shape import job_shape
from candle.schedulers.batch.shell import python_of, shell_lines
from candle.spec.site import SiteConfig

# --signal=B:USR1@lead: the batch shell (exec'd into the supervisor) is warned ``lead``
# seconds before the walltime and drains; --requeue: a preempted or NODE_FAIL job comes
# back and resumes from the store; --open-mode=append: a requeued run keeps its first log.
HEADER = Template("""#!/bin/bash
#SBATCH --job-name=$name
#SBATCH --comment=$tag
#SBATCH --time=$time
#SBATCH --output=$output
$resources$site_directives
# candle $kind script for run $run_id; written by `candle run`, safe to read, re-submittable.
set -eo pipefail
$modules$setup$exports""")

PACK_BODY = Template("""
# One allocation; the supervisor inside keeps its slots full, one srun step per job.
exec $python -m candle.cli supervise $run_dir
""")

ARRAY_BODY = Template("""
# Task i of this array runs job number i of $chunk (one job id per line).
exec $python -m candle.cli array-task $run_dir $chunk
""")


def _directives(site: SiteConfig) -> str:
    lines = [f"--{key}={value}" for key, value in (
        ("partition", site.partition), ("account", site.account), ("qos", site.qos),
        ("constraint", site.constraint), ("gres", site.gres)) if value]
    lines += list(site.directives)
    return "".join(f"#SBATCH {line}\n" for line in lines)


def _lifecycle(signal_lead: int) -> list[str]:
    """Walltime warning, requeue on preemption / node failure, logs appended across runs."""
    warn = [f"--signal=B:USR1@{signal_lead}"] if signal_lead else []
    return [*warn, "--requeue", "--open-mode=append"]


def _header(kind: str, output: str, resources: list[str], *, run_id: str, tag: str,
            name: str, walltime: str, site: SiteConfig) -> str:
    return HEADER.substitute(
        name=f"candle-{name}", tag=tag, time=walltime, output=output, kind=kind,
        run_id=run_id, resources="".join(f"#SBATCH {r}\n" for r in resources),
        site_directives=_directives(site), **shell_lines(site))


def render_pack(*, run_id: str, tag: str, run_dir: Path, name: str, walltime: str,
                nodes: int, tasks_per_node: int, site: SiteConfig, signal_lead: int = 0,
                gpus_per_node: int = 0) -> str:
    """One allocation of ``nodes`` x ``tasks_per_node`` slots running the supervisor, and
    the nodes' ``gpus_per_node`` GPUs (the site config names no GPUs itself: an array task
    asks for its own, one per rank)."""
    gpus = [f"--gpus-per-node={gpus_per_node}"] if gpus_per_node else []
    header = _header("pack", "pack-%j.out",
                     [f"--nodes={nodes}", f"--ntasks-per-node={tasks_per_node}", *gpus,
                      *_lifecycle(signal_lead)],
                     run_id=run_id, tag=tag, name=name, walltime=walltime, site=site)
    return header + PACK_BODY.substitute(python=shlex.quote(python_of(site)),
                                         run_dir=shlex.quote(str(run_dir)))


def render_array(*, run_id: str, tag: str, run_dir: Path, name: str, walltime: str,
                 ranks: int, cores_per_node: int, count: int, throttle: int, chunk: str,
                 site: SiteConfig, signal_lead: int = 0, gpus_per_node: int = 0) -> str:
    """``count`` tasks, each one job of ``ranks`` ranks; at most ``throttle`` at once.
    Each task asks for what its job uses: its ranks, and on GPU nodes one GPU per rank with
    that GPU's share of the node's cores (never all of a node's GPUs for a 1-rank job)."""
    shape = job_shape(ranks, cores_per_node, gpus_per_node)
    per_rank = [f"--cpus-per-task={shape.cpus_per_rank}"] if shape.cpus_per_rank > 1 else []
    if shape.gpus_per_rank:
        per_rank.append(f"--gpus-per-task={shape.gpus_per_rank}")
    spec = f"0-{count - 1}" + (f"%{throttle}" if throttle else "")
    header = _header("array", "array-%A_%a.out",
                     [f"--array={spec}", f"--nodes={shape.nodes}", f"--ntasks={ranks}",
                      *per_rank, *_lifecycle(signal_lead)],
                     run_id=run_id, tag=tag, name=name, walltime=walltime, site=site)
    return header + ARRAY_BODY.substitute(python=shlex.quote(python_of(site)),
                                          run_dir=shlex.quote(str(run_dir)),
                                          chunk=shlex.quote(chunk))
