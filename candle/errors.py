"""User-facing errors: one line, naming the file, line and key, exit code 2."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix; the CLI prints it as one line and exits with code 2."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        key = f"{self.key}: " if self.key else ""
        # Newlines would break the one-line contract (e.g. a YAML problem mark).
        return (where + key + self.message).replace("\n", " ")
