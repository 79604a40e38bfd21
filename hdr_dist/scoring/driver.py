"""The driver's side of a score run: it pulls the pipeline's rows, counts them for the live line and
for where the work ran, and commits them as they come (``committer``).

Counting the rows the driver receives, rather than in a helper actor, leaves the job no actor of
its own whose loss could cost it; the clock thread commits rows that have waited while the
pipeline is slow to deliver more, and redraws the live line.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.console import Console

from hdr_dist.common import cluster, tables
from hdr_dist.common.errors import UserError
from hdr_dist.scoring import pipeline
from hdr_dist.scoring.committer import Committer
from hdr_dist.scoring.config import ScoreConfig
from hdr_dist.scoring.inputs import Item


class Received:
    """What the driver has pulled off the pipeline so far: the live line's counts, when the first
    result came, and the images each node's actors scored. Counting the rows themselves, in the
    driver, leaves no helper actor whose loss could cost the job."""

    def __init__(self):
        self.scored = self.failed = 0
        self.first: float | None = None  # wall-clock time of the first result: what start-up costs
        self.by_node: dict[str, int] = {}

    def add(self, batch) -> None:
        self.first = self.first or time.time()
        failed = batch.num_rows - batch["error"].null_count
        self.scored += batch.num_rows - failed
        self.failed += failed
        for node, count in zip(*(c.to_pylist() for c in batch[pipeline.NODE].value_counts().flatten())):
            self.by_node[node] = self.by_node.get(node, 0) + count


class Clock(threading.Thread):
    """Every half second: commits the rows that have waited long enough while the pipeline is slow to
    deliver more, and redraws the live line (without a terminal: a line every 10 s and at each
    tenth of the job, so a `ray job submit` log shows how far a job got)."""

    def __init__(self, received: Received, committer: Committer, total: int, console: Console):
        super().__init__(daemon=True)
        self.received, self.committer, self.total, self.console = received, committer, total, console
        self.started = time.perf_counter()
        self.stopping = threading.Event()
        self.error: BaseException | None = None  # a commit that failed here fails the job in the driver

    def run(self) -> None:
        try:
            (self.bar if self.console.is_terminal else self.lines)()
        except BaseException as e:  # noqa: BLE001 - handed to the driver's loop, which raises it
            self.error = e

    def tick(self) -> tuple[int, float]:
        self.committer.commit_if_due()
        done = self.received.scored + self.received.failed
        return done, done / max(time.perf_counter() - self.started, 1e-9)

    def lines(self) -> None:
        said, tenth = time.perf_counter(), 0
        while not self.stopping.wait(0.5):
            done, rate = self.tick()
            if time.perf_counter() - said >= 10 or 10 * done // max(self.total, 1) > tenth:
                said, tenth = time.perf_counter(), 10 * done // max(self.total, 1)
                self.console.print(f"scored {done:,}/{self.total:,} images ({100 * done / max(self.total, 1):.0f} %), "
                                   f"{rate:,.0f} img/s, {self.received.failed:,} errors")

    def bar(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                      TextColumn("{task.fields[errors]}"), TimeElapsedColumn(), console=self.console,
                      transient=True) as bar:
            task = bar.add_task("score", total=self.total, rate="", errors="")
            while not self.stopping.wait(0.5):
                done, rate = self.tick()
                bar.update(task, completed=done, rate=f"{rate:,.0f} img/s", errors=f"{self.received.failed:,} errors")

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def execute(items: list[Item], state: dict, cfg: ScoreConfig, reader, work: Path, console: Console) -> dict:
    """Run the pipeline, committing its rows into ``work/predictions`` as they come (``committer``),
    with the live line; this run's timings and where its images were scored."""
    import ray

    received = Received()
    committer = Committer(work / "predictions", tables.PREDICTION_SCHEMA, cfg.commit_rows, cfg.commit_seconds)
    clock = Clock(received, committer, len(items), console)
    start, wall_start = time.perf_counter(), time.time()
    clock.start()
    try:
        if items:
            weights = ray.put({k: state[k] for k in ("model", "config", "temperature")})
            rows = pipeline.build(items, weights, cfg, len(cluster.alive_nodes()), reader)
            for batch in rows.iter_batches(batch_size=None, batch_format="pyarrow"):
                clock.check()
                received.add(batch)
                committer.add(batch.drop_columns([pipeline.NODE]))
        clock.check()
        committer.close()
    except ray.exceptions.GetTimeoutError:
        raise UserError(f"--concurrency {cfg.concurrency}: the inference actors did not all start within "
                        f"{pipeline.ACTOR_START_TIMEOUT_S} s; the cluster has no room for them now") from None
    finally:
        clock.stop()
    seconds = time.perf_counter() - start
    # Until the first result the inference actors are starting (a fixed few seconds);
    # after it, the job runs at the rate a long job keeps.
    startup = min(seconds, max(0.0, received.first - wall_start)) if received.first else seconds
    return {"seconds": seconds, "startup": startup, "images_by_node": received.by_node}
