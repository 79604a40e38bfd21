"""Peak memory of a job while it runs, sampled from outside: the largest single process, the whole
process tree, and the machine's used memory above where it started.

The tree's sum over-counts (shared pages such as Ray's object store are counted
once per process that maps them); the largest process is what a read or decode
task holds, the figure that must stay bounded whatever the input.
"""

from __future__ import annotations

import threading
import time

import psutil


class Peak:
    """``with Peak(pid) as peak: ...`` samples ``pid`` and its descendants every ``interval`` s;
    with ``descendants_only``, not ``pid`` itself (a test process sampling the Ray it started)."""

    def __init__(
        self, pid: int, interval: float = 0.1, descendants_only: bool = False, timeline: bool = False
    ):
        self.root, self.interval, self.descendants_only = psutil.Process(pid), interval, descendants_only
        self.timeline: list[tuple[float, int]] | None = (
            [] if timeline else None
        )  # (seconds, tree RSS) samples
        self.process = self.tree = self.machine = 0
        self.process_name = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        baseline, started = psutil.virtual_memory().used, time.monotonic()
        while True:
            total = 0
            for p in ([] if self.descendants_only else [self.root]) + self._children():
                try:
                    rss, name = p.memory_info().rss, p.name()
                except psutil.Error:
                    continue
                total += rss
                if rss > self.process:
                    self.process, self.process_name = rss, name
            self.tree = max(self.tree, total)
            if self.timeline is not None:
                self.timeline.append((time.monotonic() - started, total))
            self.machine = max(self.machine, psutil.virtual_memory().used - baseline)
            if self._stop.wait(self.interval):
                return

    def _children(self) -> list[psutil.Process]:
        try:
            return self.root.children(recursive=True)
        except psutil.Error:
            return []

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def gib(self) -> dict:
        return {
            "peak_process_gib": round(self.process / 2**30, 3),
            "peak_process": self.process_name,
            "peak_tree_rss_gib": round(self.tree / 2**30, 3),
            "peak_machine_used_gib": round(self.machine / 2**30, 3),
        }
