"""Site configs: every bad value is one located error, `FILE:LINE: KEY: message`, for
Slurm and PBS sites alike (what the values do in scripts: tests/schedulers/*render*)."""

from __future__ import annotations

from pathlib import Path

import pytest

from candle.errors import UserError
from candle.spec.site import load_site
from tests.conftest import write


@pytest.mark.parametrize(("text", "line", "key", "words"), [
    ("account: 'my proj'\n", 1, "account", "cannot carry"),
    ("partition: \"debug\\n#SBATCH --x\"\n", 1, "partition", "single line"),
    ("qos: $(reboot)\n", 1, "qos", "cannot carry"),
    ("env:\n  OK: 1\n  'BAD NAME': x\n", 3, "env.BAD NAME", "not a valid environment"),
    ("directives:\n  - exclusive\n", 2, "directives[0]", "as on the command line"),
    ("modules: [gcc, \"x\\ny\"]\n", 1, "modules[1]", "single line"),
    ("colour: blue\n", 1, "colour", "valid keys"),
    ("scheduler: pbs\nqueue: 'prod q'\n", 2, "queue", "cannot carry"),
    ("scheduler: pbs\nfilesystems: \"home\\n#PBS -x\"\n", 2, "filesystems", "single line"),
    ("scheduler: pbs\npartition: debug\n", 2, "partition", "a Slurm setting"),
    ("scheduler: slurm\nqueue: prod\n", 2, "queue", "a PBS setting"),
    ("scheduler: pbs\nmpi: pmix\n", 2, "mpi", "one of pals, hydra, openmpi"),
    ("scheduler: pbs\nselect_extra: $(reboot)\n", 2, "select_extra", "cannot carry"),
    ("local_scratch: scratch/here\n", 1, "local_scratch", "an absolute path"),
    ("local_scratch: $(reboot)\n", 1, "local_scratch", "not a node-local folder"),
    ("local_scratch: '/tmp/a b'\n", 1, "local_scratch", "path characters only"),
])
def test_bad_site_values_are_located_errors(tmp_path: Path, text: str, line: int, key: str,
                                            words: str) -> None:
    path = write(tmp_path / "site.yaml", text)
    with pytest.raises(UserError) as info:
        load_site(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert words in message


# -- where a site comes from: beside the sweep, then candle's own (packaged) sites --------

PACKAGED = Path(__import__("candle").__file__).resolve().parent / "sites"
MY_PBS = "scheduler: pbs\nqueue: q1\ncores_per_node: 8\nmpi: hydra\n"


@pytest.mark.parametrize("given", ["mypbs", "mypbs.yaml", "./mypbs.yaml"])
def test_a_site_is_found_beside_the_sweep_by_name_or_file_name(tmp_path: Path,
                                                               given: str) -> None:
    from candle.spec import load_sweep

    write(tmp_path / "mypbs.yaml", MY_PBS)
    sweep = write(tmp_path / "s.yaml", f"name: s\nbenchmark: nt3\nresources:\n"
                                       f"  scheduler: pbs\n  site: {given}\n")
    site = load_sweep(sweep).resources.site
    assert site is not None and site.source == (tmp_path / "mypbs.yaml").resolve()
    assert (site.queue, site.cores_per_node) == ("q1", 8)


def test_a_site_beside_the_sweep_wins_over_a_packaged_one(tmp_path: Path) -> None:
    from candle.spec import load_sweep

    write(tmp_path / "polaris-like.yaml", MY_PBS)
    sweep = write(tmp_path / "s.yaml", "name: s\nbenchmark: nt3\nresources:\n"
                                       "  scheduler: pbs\n  site: polaris-like\n")
    site = load_sweep(sweep).resources.site
    assert site is not None and site.queue == "q1"


def test_packaged_sites_come_from_the_candle_package(tmp_path: Path) -> None:
    """A `pip install` of the wheel has no repository: the named sites ship inside candle
    (package data), and configs/ is only a link to them."""
    import tomllib

    from candle.spec import load_sweep

    sweep = write(tmp_path / "s.yaml", "name: s\nbenchmark: nt3\nresources:\n"
                                       "  scheduler: pbs\n  site: polaris-like\n")
    site = load_sweep(sweep).resources.site
    assert site is not None and site.source == PACKAGED / "polaris-like.yaml"
    root = Path(__file__).resolve().parents[2]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert "sites/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["candle"]
    assert (root / "configs").is_symlink() and (root / "configs").resolve() == PACKAGED


def test_an_unknown_site_lists_the_packaged_ones(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    sweep = write(tmp_path / "s.yaml", "name: s\nbenchmark: nt3\nresources:\n"
                                       "  scheduler: pbs\n  site: mypbs\n")
    result = cli("validate", str(sweep))
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert result.err.startswith(f"{sweep}:5: resources.site: no site config 'mypbs'")
    assert "beside the sweep" in result.err
    for name in sorted(p.stem for p in PACKAGED.glob("*.yaml")):
        assert name in result.err
    assert "generic-slurm" in result.err and "generic-pbs" in result.err
