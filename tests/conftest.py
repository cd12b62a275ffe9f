"""Shared helpers: run the real `candle` entry point in-process and write sweep files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from candle.cli import main

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    def invoke(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["candle", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def candle_cmd(*args: str) -> list[str]:
    """argv for running candle as a separate process (for kill/interrupt tests)."""
    return [sys.executable, "-m", "candle.cli", *args]


def run_candle(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(candle_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


SLURM_SCRIPTS = ROOT / "scripts" / "slurm"


def slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                          timeout=30)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="session")
def live_slurm() -> Iterator[None]:
    """A REAL Slurm (scripts/slurm/start-local-slurm.sh: 4 emulated nodes, slurmdbd +
    MariaDB): started when it is not up (root needed), stopped at the end if started here."""
    started = False
    if not slurm_up():
        if os.geteuid() != 0:
            pytest.fail("these tests need a live Slurm: run scripts/slurm/start-local-slurm.sh "
                        "as root (make test does)")
        subprocess.run(["bash", str(SLURM_SCRIPTS / "start-local-slurm.sh")], check=True,
                       timeout=900)
        started = True
    yield
    if started:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "stop-local-slurm.sh")], check=False,
                       timeout=300)
