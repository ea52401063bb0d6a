"""Run directories: the index of runs, their status, and the differences between two."""
