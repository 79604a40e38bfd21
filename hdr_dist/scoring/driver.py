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

RATES = {"images": "img/s", "pages": "pages/s"}  # how the live line says a rate of each unit


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

    def __init__(
        self,
        received: Received,
        committer: Committer,
        total: int | None,
        console: Console,
        unit: str = "images",
    ):
        super().__init__(daemon=True)
        self.received, self.committer, self.total, self.console, self.unit = (
            received,
            committer,
            total,
            console,
            unit,
        )
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
                    f"/{self.total:,} {self.unit} ({100 * done / max(self.total, 1):.0f} %)"
                    if self.total
                    else f" {self.unit}"
                )
                self.console.print(
                    f"scored {done:,}{of}, {rate:,.0f} {RATES[self.unit]}, {self.received.failed:,} errors"
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
            TextColumn("scoring"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[errors]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        ) as bar:
            task = bar.add_task("score", total=self.total, rate="", errors="")
            while not self.stopping.wait(0.5):
                done, rate = self.tick()
                bar.update(
                    task,
                    completed=done,
                    rate=f"{rate:,.0f} {RATES[self.unit]}",
                    errors=f"{self.received.failed:,} errors",
                )

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def execute(items: list[Item], state: dict, cfg: ScoreConfig, reader, work: Path, console: Console) -> dict:
    """Run score's pipeline, committing its rows into ``work/predictions`` as they come, with the live
    line; this run's timings and where its images were scored."""
    import ray

    def rows():
        weights = ray.put({k: state[k] for k in ("model", "config", "temperature", "onnx") if k in state})
        return pipeline.build(items, weights, cfg, len(cluster.alive_nodes()), reader)

    committer = Committer(work / "predictions", tables.PREDICTION_SCHEMA, cfg.commit_rows, cfg.commit_seconds)
    return pull(rows if items else None, committer, len(items), cfg.concurrency, console)


def pull(
    rows, committer: Committer, total: int | None, concurrency: int, console: Console, unit: str = "images"
) -> dict:
    """Pull a pipeline's rows (``rows()`` builds it; None: nothing to do), count them and commit them as
    they come; the timings, and the rows each node's actors made. ``total``: the rows to expect, where
    the listing knows it (None: the live line counts without a total)."""
    import ray

    received = Received()
    clock = Clock(received, committer, total, console, unit)
    start, wall_start = time.perf_counter(), time.time()
    clock.start()
    try:
        if rows is not None:
            for batch in rows().iter_batches(batch_size=None, batch_format="pyarrow"):
                clock.check()
                received.add(batch)
                committer.add(batch.drop_columns([pipeline.NODE]))
        clock.check()
        committer.close()
    except ray.exceptions.GetTimeoutError:
        raise UserError(
            f"--concurrency {concurrency}: the inference actors did not all start within "
            f"{pipeline.ACTOR_START_TIMEOUT_S} s; the cluster has no room for them now"
        ) from None
    finally:
        clock.stop()
    seconds = time.perf_counter() - start
    # Until the first result the inference actors are starting (a fixed few seconds);
    # after it, the job runs at the rate a long job keeps.
    startup = min(seconds, max(0.0, received.first - wall_start)) if received.first else seconds
    return {"seconds": seconds, "startup": startup, "images_by_node": received.by_node}


def resource_plan(gpu: str, concurrency: int | None, cpus_per_actor: float, decode_cpus: float) -> dict:
    """Whether to use GPUs, how many inference actors and read tasks run at once; a request the
    cluster can never place fails now, where Ray would wait forever."""
    import ray

    total = ray.cluster_resources()
    gpus, cpus = int(total.get("GPU", 0)), int(total.get("CPU", 0))
    if gpu == "on" and gpus == 0:
        raise UserError("--gpu on: the Ray cluster has no GPU")
    use_gpu = gpu != "off" and gpus > 0
    concurrency = concurrency or (gpus if use_gpu else max(1, cpus // 4))
    if use_gpu and concurrency > gpus:
        raise UserError(
            f"--concurrency {concurrency} with GPUs needs {concurrency} GPUs; the Ray cluster has {gpus}"
        )
    if cpus_per_actor <= 0:
        raise UserError(f"--cpus-per-actor {cpus_per_actor:g}: must be more than 0")
    actor_cpus = 1 if use_gpu else cpus_per_actor
    if concurrency * actor_cpus + decode_cpus > cpus:
        raise UserError(
            f"--concurrency {concurrency} x {actor_cpus:g} CPUs per inference actor leaves too few of "
            f"the cluster's {cpus} CPUs for decoding ({decode_cpus:g})"
        )
    return {"use_gpu": use_gpu, "concurrency": concurrency, "read_tasks": max(2, cpus)}
