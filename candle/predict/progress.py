"""The rows-done bar of `candle predict` (stderr, only when it is a terminal)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

Progress = Callable[[int, int], None]


@contextlib.contextmanager
def rows_progress(label: str) -> Iterator[Progress | None]:
    """A transient bar of rows done / rows in the file, with the rate; None when stderr is
    not a terminal (logs, pipes, tests)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with Bar(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(),
             TextColumn("rows"), TimeRemainingColumn(), console=console,
             transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
