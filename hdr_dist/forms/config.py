"""``FormsConfig``: what a forms run decided before it starts, in one frozen object, as ``ScoreConfig`` is
for score: built by the job from its flags, the cluster and the models' validation curves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FormsConfig:
    inputs: tuple[str, ...]
    template: str  # the template file
    labelled: bool  # a labels file was given
    dropout: str  # how the printed form is dropped: reference or lines
    length_constraint: bool  # a field of known length is decoded under it
    batch_size: int  # pages per inference batch
    max_pixels: int
    commit_rows: int  # pages become durable in pieces of at most this many
    commit_seconds: float
    review_rows: int
    use_gpu: bool
    concurrency: int
    cpus_per_actor: float
    read_tasks: int
    # the reject option: per zone, the confidence each of its answers must reach to be accepted (a comb's
    # cells each, a digit zone's digit, a field's string); None: accept every answer
    target_error: float | None
    thresholds: tuple[float, ...] | None

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_actor))
