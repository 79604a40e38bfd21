"""The driver's side of a bulk run: it pulls the pipeline's rows, counts them for the live line and
for where the work ran, and commits them as they come (``committer``).

Counting the rows the driver receives, rather than in a helper actor, leaves the job no actor of
its own whose loss could cost it; the clock thread commits rows that have waited while the
pipeline is slow to deliver more, and redraws the live line.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from rich.console import Console

from hdr_dist.bulk import plan
from hdr_dist.bulk.actor import NODE
from hdr_dist.bulk.committer import Committer

RATES = {"image": "img/s", "page": "pages/s"}  # how the live line says a rate of each item


def rate_text(rate: float) -> str:
    """A live rate as a person reads it: two significant digits below 10 a second, whole numbers from 10
    up. A forms job reads about 2 pages/s on two CPUs after some 30 s of start-up (docs/forms.md), so
    its early rate is a fraction of a page a second, which a whole number showed as 0."""
    if rate >= 9.95:  # what two digits would round to 10
        return f"{rate:,.0f}"
    if rate >= 0.001:
        return f"{rate:#.2g}"  # 2.0, 0.42: the second digit kept, zero or not
    return "0" if rate == 0 else "<0.001"


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
        for node, count in zip(*(c.to_pylist() for c in batch[NODE].value_counts().flatten())):
            self.by_node[node] = self.by_node.get(node, 0) + count


class Clock(threading.Thread):
    """Every half second: commits the rows that have waited long enough while the pipeline is slow to
    deliver more, and redraws the live line (without a terminal: a line every 10 s and at each
    tenth of the job, so a `ray job submit` log shows how far a job got). ``item`` and ``done`` are
    the job's words for a row and what it did to it (image, scored; page, read)."""

    def __init__(
        self,
        received: Received,
        committer: Committer,
        total: int | None,
        console: Console,
        item: str,
        done: str,
    ):
        super().__init__(daemon=True)
        self.received, self.committer, self.total, self.console = received, committer, total, console
        self.item, self.done = item, done
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
            share = 10 * done // max(self.total, 1) if self.total else 0
            if time.perf_counter() - said >= 10 or share > tenth:
                said, tenth = time.perf_counter(), share
                of = (
                    f"/{self.total:,} {self.item}s ({100 * done / max(self.total, 1):.0f} %)"
                    if self.total
                    else f" {self.item}s"
                )
                self.console.print(
                    f"{self.done} {done:,}{of}, {rate_text(rate)} {RATES[self.item]}, "
                    f"{self.received.failed:,} errors"
                )

    def bar(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn(self.done),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[errors]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        ) as bar:
            task = bar.add_task(self.done, total=self.total, rate="", errors="")
            while not self.stopping.wait(0.5):
                done, rate = self.tick()
                bar.update(
                    task,
                    completed=done,
                    rate=f"{rate_text(rate)} {RATES[self.item]}",
                    errors=f"{self.received.failed:,} errors",
                )

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.stopping.set()
        self.join()


@dataclass(frozen=True)
class RunStats:
    """What one run of a pipeline took: its seconds, the start-up among them (until the first result),
    and the rows each node's actors made."""

    seconds: float
    startup: float
    rows_by_node: dict[str, int]


def pull(
    rows, committer: Committer, total: int | None, concurrency: int, console: Console, item: str, done: str
) -> RunStats:
    """Pull a pipeline's rows (``rows()`` builds it; None: nothing to do), count them and commit them as
    they come; the timings, and the rows each node's actors made. ``total``: the rows to expect, where
    the listing knows it (None: the live line counts without a total); ``item`` and ``done``: the live
    line's words, the job's own (``flags.BulkJob``)."""
    import ray

    received = Received()
    clock = Clock(received, committer, total, console, item, done)
    start, wall_start = time.perf_counter(), time.time()
    clock.start()
    try:
        if rows is not None:
            for batch in rows().iter_batches(batch_size=None, batch_format="pyarrow"):
                clock.check()
                received.add(batch)
                committer.add(batch.drop_columns([NODE]))
        clock.check()
        committer.close()
    except ray.exceptions.GetTimeoutError:
        raise plan.actors_did_not_start(concurrency) from None
    finally:
        clock.stop()
    seconds = time.perf_counter() - start
    # Until the first result the inference actors are starting (a fixed few seconds);
    # after it, the job runs at the rate a long job keeps.
    startup = min(seconds, max(0.0, received.first - wall_start)) if received.first else seconds
    return RunStats(seconds, startup, received.by_node)


@dataclass(frozen=True)
class ThisRun:
    """What a bulk output's summary says of the run that finished it, beside the counts over every row
    (a resumed run's rows among them)."""

    stats: RunStats
    inputs_seen: int
    skipped: int  # inputs an earlier run of the same output had finished
    rows_before: int  # rows the output held before this run
    notes: dict  # the job's own entries of summary.json (its review queue, what it skipped), as they are

    def rates(self, rows_now: int, unit: str, digits: int) -> dict:
        """summary.json's timings of this run: its rows (of ``rows_now`` in the output), its seconds and
        start-up, the rate over the whole run and after start-up, and the rows each node made; ``unit``
        names the rows (images, pages), ``digits`` the rates' rounding."""
        rows, seconds, startup = rows_now - self.rows_before, self.stats.seconds, self.stats.startup
        return {
            f"{unit}_this_run": rows,
            "seconds": round(seconds, 3),
            f"{unit}_per_s": round(rows / max(seconds, 1e-9), digits),
            "startup_seconds": round(startup, 3),
            f"steady_{unit}_per_s": round(rows / max(seconds - startup, 1e-9), digits),
            f"{unit}_by_node": self.stats.rows_by_node,
        }
