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
])
def test_bad_site_values_are_located_errors(tmp_path: Path, text: str, line: int, key: str,
                                            words: str) -> None:
    path = write(tmp_path / "site.yaml", text)
    with pytest.raises(UserError) as info:
        load_site(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert words in message
