"""PBS Pro / OpenPBS: qsub scripts (pack and array modes), batched `qstat -f -F json`
status, qdel, and mpiexec inside the allocation. No PBS server runs where candle is
tested: this backend is checked against real OpenPBS outputs and an offline double."""
