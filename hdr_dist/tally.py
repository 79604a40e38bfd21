"""The ``Tally`` actor that ``hdr score``'s inference actors count into.

It lives apart from the pipeline so that its process imports no torch: it starts with the job, at
the moment the inference actors import torch on the same CPUs, and an import of torch it does
not need delayed the first result (benchmarks/score_throughput.py).
"""

from __future__ import annotations

import heapq
import time

from hdr_dist import tables


class Tally:
    """A Ray actor the inference actors count into, so the driver can show live progress
    and the summary can say how the work spread over the cluster's nodes.

    A batch Ray Data runs again (its actor was lost before the result came back)
    reports again; ``batch`` (its first row and size) lets it count once.
    """

    def __init__(self):
        self.scored = self.failed = 0
        self.first = None  # wall-clock time of the first result: what start-up costs
        self.by_node: dict[str, int] = {}
        self.wrong: list[dict] = []  # the most confident mistakes so far, for the report
        self.batches: set[tuple] = set()

    def add(self, batch: tuple, scored: int, failed: int, node: str, mistakes: list[dict]) -> None:
        if batch in self.batches:
            return
        self.batches.add(batch)
        self.first = self.first or time.time()
        self.scored += scored
        self.failed += failed
        self.by_node[node] = self.by_node.get(node, 0) + scored + failed
        if mistakes:
            self.wrong = heapq.nlargest(tables.MISTAKES, self.wrong + mistakes, key=lambda m: m["confidence"])

    def mistakes(self) -> list[dict]:
        return self.wrong

    def images_by_node(self) -> dict[str, int]:
        return self.by_node

    def counts(self) -> tuple[int, int]:
        return self.scored, self.failed

    def first_result(self) -> float | None:
        return self.first
