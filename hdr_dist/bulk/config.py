"""``BulkConfig``: what every bulk run decided before it starts, in one frozen object; each job's config
extends it with its own settings (``ScoreConfig``, ``FormsConfig``). The job builds it from its flags
and the cluster's resources (``plan.ResourcePlan``), and hands it to the stages, the driver and the
summary, so none of them reads a flag.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BulkConfig:
    inputs: tuple[str, ...]  # the INPUT arguments, as given
    labelled: bool  # true labels were given
    batch_size: int  # rows (images or pages) per inference batch
    max_pixels: int  # larger pages are refused as decompression bombs
    commit_rows: int  # rows become durable in pieces of at most this many
    commit_seconds: float  # and wait at most this long to
    review_rows: int  # rows the review page shows
    # where and how wide inference runs: what the cluster can place (``plan.ResourcePlan``)
    use_gpu: bool
    concurrency: int  # inference actors
    cpus_per_actor: float
    read_tasks: int  # read tasks at once
    decoders: int  # decoding tasks or actors at once (forms' preparing actors)

    @property
    def threads(self) -> int:
        """torch threads per inference actor: as many as the CPUs it reserved."""
        return max(1, int(self.cpus_per_actor))
