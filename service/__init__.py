"""slicelab: capability-slice labeling of evaluation samples and pretraining documents."""

__version__ = "0.1.0"
