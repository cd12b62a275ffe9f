"""Adaptive search with Optuna: the next trial depends on the results so far.

The supervisor is the study's only writer (it holds the run's lock); jobs report epochs
through files in their job directory and read the prune verdict back, so nothing that
runs on a compute node ever writes the journal.
"""
