"""A site config (YAML) → SiteConfig: what a cluster needs in every batch script.

Named sites ship inside the package (``candle/sites/*.yaml``, package data; the repository's
``configs/`` is a link to that folder), so a ``pip install`` of the wheel has them too. A
sweep's own site file sits beside it and wins over a packaged one of the same name.

Values end up in `#SBATCH`/`#PBS` lines and shell lines, so besides types this checks
the one thing quoting cannot fix: a line break (it would end the directive and start a
shell command)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from candle.errors import UserError
from candle.spec.checks import Ctx
from candle.spec.yaml_lines import load_yaml

SITE_KEYS = ("scheduler", "account", "partition", "qos", "constraint", "gres", "cores_per_node",
             "gpus_per_node", "modules", "setup", "env", "directives", "mpi", "python",
             "description", "queue", "filesystems", "place", "select_extra", "local_scratch")
SLURM_ONLY = ("partition", "qos", "constraint", "gres")
PBS_ONLY = ("queue", "filesystems", "place", "select_extra")
MPI_CHOICES = {"slurm": None, "pbs": ("pals", "hydra", "openmpi")}  # slurm: srun --mpi=any
# Slurm: "" passes no --mpi, so srun uses the cluster's MpiDefault (a named plugin such as
# pmix fails outright where the cluster lacks it).
DEFAULT_MPI = {"slurm": "", "pbs": "pals"}
SITES_DIR = Path(__file__).resolve().parents[1] / "sites"  # the packaged sites
SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# What account/partition/qos/constraint/gres values look like on real sites (constraint
# expressions use & | [ ] ( ) * !): never whitespace, quotes, $, backticks or ;.
DIRECTIVE_VALUE = re.compile(r"^[A-Za-z0-9_.,:=+@%/&|\[\]()*!-]+$")

# local_scratch: an absolute path, or one that starts at a variable ($TMPDIR, ${SCRATCH}) or
# ~; path characters only. It reaches jobs unexpanded, as this variable, and each job
# expands it on its node (a login node's $TMPDIR is not a compute node's).
LOCAL_SCRATCH_ENV = "CANDLE_LOCAL_SCRATCH"
LOCAL_SCRATCH = re.compile(r"^(/|~|\$[A-Za-z_]|\$\{[A-Za-z_][A-Za-z0-9_]*\})"
                           r"([A-Za-z0-9_.+@%/~-]|\$[A-Za-z_]|\$\{[A-Za-z_][A-Za-z0-9_]*\})*$")


@dataclass(frozen=True)
class SiteConfig:
    """Defaults assume nothing about the cluster (generic-slurm.yaml)."""

    scheduler: str = "slurm"
    account: str = ""
    partition: str = ""
    qos: str = ""
    constraint: str = ""
    gres: str = ""
    cores_per_node: int = 0  # 0: unknown; each node is asked for one job's ranks, and
    # ranks take the CPUs the scheduler gave as threads (SLURM_CPUS_ON_NODE, PBS NCPUS)
    gpus_per_node: int = 0
    modules: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()  # shell lines run before candle (e.g. activate a venv)
    env: dict[str, str] = field(default_factory=dict)
    directives: tuple[str, ...] = ()  # extra scheduler options, one per line, e.g. --exclusive
    mpi: str = ""  # Slurm: srun --mpi= ("": the cluster's MpiDefault); PBS: the mpiexec
    # flavour (pals, hydra, openmpi; load_site fills it in)
    queue: str = ""  # PBS -q
    filesystems: str = ""  # PBS -l filesystems= (ALCF: home:eagle)
    place: str = ""  # PBS -l place= ("" means scatter: one chunk per host; with "excl" the
    # nodes are the job's alone, so an array subjob is given all their cores)
    select_extra: str = ""  # appended to each select chunk, e.g. system=polaris
    python: str = ""  # the interpreter on compute nodes; "" means this one
    local_scratch: str = ""  # node-local storage jobs stage their data to ($TMPDIR,
    # /local/scratch, /dev/shm), expanded on the node; "": jobs read the shared copy
    source: Path | None = None


def load_site(path: Path) -> SiteConfig:
    data, lines, _ = load_yaml(path)
    ctx = Ctx(path, lines)
    if data is None:
        return SiteConfig(source=path)
    raw = ctx.mapping(data, (), SITE_KEYS)

    def text(key: str, pattern: re.Pattern[str] | None = None) -> str:
        value = raw.get(key, "")
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        value = _one_line(ctx, ctx.string(value, (key,)), (key,))
        if pattern is not None and value and not pattern.match(value):
            raise ctx.fail((key,), f"{value!r} has characters a scheduler directive cannot "
                                   "carry (spaces, quotes, $, `, ; ...)")
        return value

    def lines_of(key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ctx.fail((key,), "expected a list of strings")
        return tuple(_one_line(ctx, ctx.string(v, (key, i)), (key, i))
                     for i, v in enumerate(value))

    env_raw = raw.get("env", {}) or {}
    if not isinstance(env_raw, dict):
        raise ctx.fail(("env",), "expected a mapping of NAME: value")
    env: dict[str, str] = {}
    for name, value in env_raw.items():
        if not isinstance(name, str) or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise ctx.fail(("env", str(name)), "not a valid environment variable name")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ctx.fail(("env", name), "expected a string or number")
        env[name] = _one_line(ctx, str(value), ("env", name))
    scheduler = ctx.string(raw.get("scheduler", "slurm"), ("scheduler",), ("slurm", "pbs"))
    foreign = SLURM_ONLY if scheduler == "pbs" else PBS_ONLY
    for key in foreign:
        if raw.get(key):
            other = "Slurm" if scheduler == "pbs" else "PBS"
            raise ctx.fail((key,), f"a {other} setting; this site's scheduler is {scheduler}")
    mpi = text("mpi", DIRECTIVE_VALUE) or DEFAULT_MPI[scheduler]
    choices = MPI_CHOICES[scheduler]
    if choices is not None and mpi not in choices:
        raise ctx.fail(("mpi",), f"{mpi!r} is not an mpiexec flavour candle knows for PBS "
                                 f"(one of {', '.join(choices)})")
    scratch = text("local_scratch")
    if scratch and not LOCAL_SCRATCH.match(scratch):
        raise ctx.fail(("local_scratch",), f"{scratch!r} is not a node-local folder candle "
                                           "can use: an absolute path, or one starting with "
                                           "$VAR, ${VAR} or ~ (path characters only)")
    for i, directive in enumerate(lines_of("directives")):
        if not directive.startswith("-"):
            raise ctx.fail(("directives", i), "write options as on the command line, e.g. "
                                              "--exclusive or -l filesystems=home")
    return SiteConfig(
        scheduler=scheduler, account=text("account", DIRECTIVE_VALUE),
        partition=text("partition", DIRECTIVE_VALUE), qos=text("qos", DIRECTIVE_VALUE),
        constraint=text("constraint", DIRECTIVE_VALUE), gres=text("gres", DIRECTIVE_VALUE),
        cores_per_node=ctx.integer(raw.get("cores_per_node", 0), ("cores_per_node",), 0),
        gpus_per_node=ctx.integer(raw.get("gpus_per_node", 0), ("gpus_per_node",), 0),
        modules=lines_of("modules"), setup=lines_of("setup"), env=env,
        directives=lines_of("directives"), mpi=mpi, python=text("python"),
        queue=text("queue", DIRECTIVE_VALUE), filesystems=text("filesystems", DIRECTIVE_VALUE),
        place=text("place", DIRECTIVE_VALUE), select_extra=text("select_extra", DIRECTIVE_VALUE),
        local_scratch=scratch, source=path,
    )


def _one_line(ctx: Ctx, value: str, path: tuple[str | int, ...]) -> str:
    if any(c in value for c in "\n\r\0"):
        raise ctx.fail(path, "must be a single line (a line break would end the directive and "
                             "start a shell command)")
    return value


def packaged_sites() -> list[str]:
    """The names of the sites that ship with candle (``candle/sites/*.yaml``)."""
    return sorted(path.stem for path in SITES_DIR.glob("*.yaml"))


def resolve_site(name: str, sweep_dir: Path, sites_dir: Path = SITES_DIR) -> Path:
    """``resources.site`` → its file: a path relative to the sweep file (or absolute), then
    ``NAME`` or ``NAME.yaml`` beside the sweep, then a packaged site of that name."""
    try:
        local = Path(name).expanduser()
    except RuntimeError:  # ~someone who has no home directory here
        local = Path(name)
    candidates = [sweep_dir / local, sweep_dir / f"{name}.yaml"]
    if SITE_NAME.match(name):  # a bare name, never a path out of the packaged folder
        candidates += [sites_dir / name, sites_dir / f"{name}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(f"no site config {name!r}: neither {name!r} nor {name + '.yaml'!r} beside "
                    f"the sweep file, nor one of candle's sites: {', '.join(packaged_sites())}")
