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
        # (seconds, the tree's RSS, the largest RSS, the largest private memory) samples: a process's RSS
        # counts the object store's shared pages it has touched, which rise over a run to the store's size
        self.timeline: list[tuple[float, int, int, int]] | None = [] if timeline else None
        self.process = self.tree = self.machine = 0
        self.process_name = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        baseline, started = psutil.virtual_memory().used, time.monotonic()
        while True:
            total = largest = private = 0
            for p in ([] if self.descendants_only else [self.root]) + self._children():
                try:
                    info, name = p.memory_info(), p.name()
                except psutil.Error:
                    continue
                rss = info.rss
                total += rss
                largest = max(largest, rss)
                private = max(private, rss - getattr(info, "shared", 0))
                if rss > self.process:
                    self.process, self.process_name = rss, name
            self.tree = max(self.tree, total)
            if self.timeline is not None:
                self.timeline.append((time.monotonic() - started, total, largest, private))
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
