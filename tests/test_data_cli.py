"""`candle data synth` writes upstream files that a sweep can point `data` at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_candle, write


@pytest.mark.slow
@pytest.mark.integration
def test_synth_files_then_sweep_on_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "nt3data"
    made = run_candle("data", "synth", "nt3", "--out", str(data_dir), "--set", "features=300",
                      "--set", "samples=120")
    assert made.returncode == 0, made.stderr
    assert (data_dir / "nt_train2.csv").is_file() and (data_dir / "nt_test2.csv").is_file()
    sweep = write(tmp_path / "s.yaml", f"""
        name: files
        benchmark: nt3
        params: {{epochs: 1, data: {data_dir}, conv: [8, 20, 1, 8, 10, 1], dense: [8, 4]}}
        search: {{method: list, points: [{{}}]}}
    """)
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    (result_file,) = (tmp_path / "runs" / "files" / "jobs").glob("*/result.json")
    result = json.loads(result_file.read_text())
    assert result["status"] == "done"
    # parsed once, then cached beside the files for the next job
    assert len(list((data_dir / ".candle-cache").glob("*.npy"))) == 4


def test_broken_data_dir_fails_the_job_naming_the_file(tmp_path: Path) -> None:
    sweep = write(tmp_path / "s.yaml", f"""
        name: nodata
        benchmark: nt3
        params: {{epochs: 1, data: {tmp_path / 'missing'}}}
        search: {{method: list, points: [{{}}]}}
        retries: 0
    """)
    done = run_candle("run", str(sweep))
    assert done.returncode == 1
    (result_file,) = (tmp_path / "runs" / "nodata" / "jobs").glob("*/result.json")
    error = json.loads(result_file.read_text())["error"]
    assert error == f"DataFileError: {tmp_path / 'missing' / 'nt_train2.csv'}: no such file"
