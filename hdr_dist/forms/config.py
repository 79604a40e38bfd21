"""``FormsConfig``: what a forms run decided before it starts, in one frozen object: the bulk engine's
settings (``BulkConfig``) and the reading's own, built by the job from its flags, the cluster and the
models' validation curves."""

from __future__ import annotations

from dataclasses import dataclass

from hdr_dist.bulk.config import BulkConfig


@dataclass(frozen=True)
class FormsConfig(BulkConfig):
    template: str  # the template file
    dropout: str  # how the printed form is dropped: reference or lines
    length_constraint: bool  # a field of known length is decoded under it
    # the reject option: per zone, the confidence each of its answers must reach to be accepted (a comb's
    # cells each, a digit zone's digit, a field's string); None: accept every answer
    target_error: float | None
    thresholds: tuple[float, ...] | None
    threshold_source: str  # where the thresholds came from, as the review page states it
