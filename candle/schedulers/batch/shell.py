"""The shell part every batch script shares (Slurm's and PBS's): module loads, the site's
own setup lines, quoted exports, and the interpreter that runs candle on compute nodes."""

from __future__ import annotations

import shlex
import sys

from candle.spec.site import LOCAL_SCRATCH_ENV, SiteConfig


def shell_lines(site: SiteConfig) -> dict[str, str]:
    modules = "".join(f"module load {shlex.quote(m)}\n" for m in site.modules)
    setup = "".join(f"{line}\n" for line in site.setup)  # the site's own shell, as written
    env = dict(site.env)
    if site.local_scratch:  # quoted: each job expands $TMPDIR & co. on its own node
        env[LOCAL_SCRATCH_ENV] = site.local_scratch
    exports = "".join(f"export {name}={shlex.quote(value)}\n"
                      for name, value in sorted(env.items()))
    return {"modules": modules, "setup": setup, "exports": exports}


def python_of(site: SiteConfig) -> str:
    return site.python or sys.executable
