"""candle as a user gets it from a wheel: no checkout on the path, run from any directory.

The wheel is built from this tree and installed (not editable) into a fresh virtual
environment that sees the pinned stack (TensorFlow, Horovod, ...) of the project's venv
through a path file, so nothing is downloaded. Then, from a directory outside the checkout:
a sweep of a built-in benchmark runs, and a Slurm batch script is rendered with a packaged
site config."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd),
                               "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding candle from its wheel (and the stack through a .pth): its bin/."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("candle", "benchmarks"):
        shutil.copytree(ROOT / part, source / part, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-build-isolation", "-w", str(work / "dist"), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    wheel = next((work / "dist").glob("candle-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    packages = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
        / "site-packages"
    # The pinned stack only: a .pth line adds a directory; the project's own editable
    # install (a .pth file in that directory) is not processed from there.
    (packages / "stack.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    added = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                            "install", "-q", "--no-deps", str(wheel)],
                           capture_output=True, text=True, timeout=600)
    assert added.returncode == 0, added.stderr
    return venv / "bin"


def test_the_wheel_ships_benchmarks_and_site_configs_under_their_own_names(
        installed: Path, tmp_path: Path) -> None:
    where = _run([str(installed / "python"), "-c",
                  "import candle, candle_benchmarks.nt3, importlib.util as u; "
                  "print(candle.__file__); print(candle_benchmarks.nt3.__file__); "
                  "print(u.find_spec('benchmarks'))"], tmp_path)
    assert where.returncode == 0, where.stderr
    candle_file, nt3_file, plain = where.stdout.split()
    venv = str(installed.parent)
    assert candle_file.startswith(venv) and nt3_file.startswith(venv)
    assert plain == "None"  # no generic top-level "benchmarks" package is installed


def test_a_sweep_runs_from_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    sweep = write(tmp_path / "sweep.yaml", """
        name: from-wheel
        benchmark: nt3
        params: {epochs: 1, samples: 80, features: 60, conv: [4, 5, 1], pool: [2], dense: [8]}
        search: {method: grid, space: {learning_rate: [0.001, 0.01]}}
        resources: {max_concurrent: 2}
    """)
    assert _run([str(installed / "candle"), "validate", "sweep.yaml"], tmp_path).returncode == 0
    done = _run([str(installed / "candle"), "run", "sweep.yaml"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 done" in done.stdout
    summary = _run([str(installed / "candle"), "summary", "runs/from-wheel"], tmp_path)
    assert summary.returncode == 0 and "val_loss" in summary.stdout
    assert sweep.is_file()


def test_a_slurm_dry_run_uses_a_packaged_site(installed: Path, tmp_path: Path) -> None:
    write(tmp_path / "sweep.yaml", """
        name: to-slurm
        benchmark: nt3
        search: {method: grid, space: {learning_rate: [0.001, 0.01]}}
        resources: {scheduler: slurm, site: perlmutter-like, walltime: "00:20:00"}
    """)
    dry = _run([str(installed / "candle"), "run", "sweep.yaml", "--dry-run"], tmp_path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "#SBATCH --constraint=gpu" in dry.stdout
    assert str(installed / "python") in dry.stdout  # the jobs run the installed candle
