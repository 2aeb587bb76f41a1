"""Thin RQ task functions: they take a run folder and a chunk number, call ``service``, store results."""
