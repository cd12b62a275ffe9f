"""What every batch scheduler shares: submission records, waves and continuations,
following a run (over `Provider`), and the supervisor inside an allocation (`Allocation`)."""
