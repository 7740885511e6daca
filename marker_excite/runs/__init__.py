"""A run directory and what it holds: file names, locks, checkpoints, log, the read-back Run."""
