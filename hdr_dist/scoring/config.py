"""``ScoreConfig``: everything a score run decided before it starts, in one frozen object: the bulk
engine's settings (``BulkConfig``) and score's own, its top-k and its reject rule.

The job builds it from its flags, the cluster's resources and the model's validation curve (the
reject rule), and hands it to the pipeline, the driver's loop and the summary, so none of them
reads a flag.
"""

from __future__ import annotations

from dataclasses import dataclass

from hdr_dist.bulk.config import BulkConfig


@dataclass(frozen=True)
class ScoreConfig(BulkConfig):
    top_k: int
    # the reject option: accept at or above ``threshold`` (None: accept every scored image)
    threshold: float | None
    threshold_source: str
    expected_coverage: float | None  # what the validation curve expects accepting at the threshold to do
    expected_error: float | None

    @property
    def rule(self) -> dict:
        """The reject rule as summary.json and the review page state it."""
        return {
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "expected_coverage": self.expected_coverage,
            "expected_error": self.expected_error,
        }
