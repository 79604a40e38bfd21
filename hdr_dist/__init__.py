"""hdr-dist: distributed training, evaluation and bulk scoring of handwritten
digit and letter classifiers on Ray."""

__version__ = "0.1.0"
