"""One training run, started by the launcher on every rank; rank 0 writes the result."""
