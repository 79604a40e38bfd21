"""``ScoreConfig``: everything a score run decided before it starts, in one frozen object.

The job builds it from its flags, the cluster's resources (``plan``) and the model's validation
curve (the reject rule), and hands it to the pipeline, the driver's loop and the summary, so none
of them reads a flag.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoreConfig:
    inputs: tuple[str, ...]  # the INPUT arguments, as given
    labelled: bool  # true labels were given (a labels file, or folder names)
    batch_size: int  # images per inference batch
    top_k: int
    max_pixels: int  # larger pages are refused as decompression bombs
    commit_rows: int  # rows become durable in pieces of at most this many
    commit_seconds: float  # and wait at most this long to
    review_rows: int  # rows the review page shows
    # where and how wide inference runs: what the cluster can place
    use_gpu: bool
    concurrency: int  # inference actors
    cpus_per_actor: float
    read_tasks: int  # read tasks at once
    # the reject option: accept at or above ``threshold`` (None: accept every scored image)
    threshold: float | None
    threshold_source: str
    expected_coverage: float | None  # what the validation curve expects accepting at the threshold to do
    expected_error: float | None

    @property
    def threads(self) -> int:
        """torch threads per inference actor: as many as the CPUs it reserved."""
        return max(1, int(self.cpus_per_actor))

    @property
    def rule(self) -> dict:
        """The reject rule as summary.json and the review page state it."""
        return {
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "expected_coverage": self.expected_coverage,
            "expected_error": self.expected_error,
        }
