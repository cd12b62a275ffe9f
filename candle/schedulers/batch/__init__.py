"""What every batch scheduler shares: submission records, waves and continuations,
following a run, and the supervisor inside an allocation, over the `Backend` protocol."""
