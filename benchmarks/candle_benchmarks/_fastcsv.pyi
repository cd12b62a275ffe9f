"""Types of the compiled one-pass CSV parser (_fastcsv.c)."""

from typing import Any

from typing_extensions import Buffer

# features and labels: writable numpy arrays (numpy 1.26's stubs do not call them Buffer)
def parse(text: Buffer, features: Any, labels: Any, width: int, /) -> int: ...
def lines(text: Buffer, /) -> int: ...
