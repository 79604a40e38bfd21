"""Rows made durable while a job runs: Parquet pieces committed every N rows or T seconds.

Ray Data's ``write_parquet`` commits when the whole dataset is written, so a
driver killed at hour nine of an archive kept nothing. The job's driver pulls
its rows off the pipeline instead, and this writer commits them in bounded
pieces: each piece is written to a hidden temporary file, flushed to the disk,
then renamed into place. A rename is atomic, so a file under its final name is
always whole, and a kill at any moment loses at most the rows of the one piece
not yet committed. ``--resume`` keeps every committed piece and scores only what
no piece holds, so no row is ever written twice.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

COMMIT_ROWS = 2_000  # a piece holds at most this many rows
COMMIT_SECONDS = 10.0  # and no received row waits longer than this to be committed
PREFIX = "part-"
TEMPORARY = ".tmp"


def leftovers(folder: Path, before: tuple = ()) -> list[Path]:
    """Pieces a killed run was writing when it died: never committed, so never read. With ``before``
    (a piece's other tables, written ahead of ``folder``'s), also their pieces whose ``folder`` piece,
    the one that commits them all, was never written."""
    found = sorted(folder.glob(f".{PREFIX}*{TEMPORARY}"))
    committed = {f.name for f in folder.glob(f"{PREFIX}*.parquet")}
    for other, _, _ in before:
        found += sorted(other.glob(f".{PREFIX}*{TEMPORARY}"))
        found += [f for f in sorted(other.glob(f"{PREFIX}*.parquet")) if f.name not in committed]
    return found


class Committer:
    """Collects rows and commits them as pieces; thread-safe, so a clock thread can commit rows
    that have waited ``seconds`` while the pipeline is slow to deliver more.

    ``before`` lists other tables each piece also writes, as ``(folder, schema, derive)``: ``derive``
    makes that table from the piece's rows (a form's page row -> one row per field). They are written
    first, under the piece's name; the piece in ``folder`` is written last, and its rename commits
    them all, so a kill in between leaves pieces ``leftovers`` removes, never half a piece."""

    def __init__(
        self,
        folder: Path,
        schema: pa.Schema,
        rows: int = COMMIT_ROWS,
        seconds: float = COMMIT_SECONDS,
        before: tuple = (),
        derive=None,
    ):
        self.folder, self.schema, self.rows, self.seconds, self.before = folder, schema, rows, seconds, before
        self.derive = derive  # what ``folder``'s table is made of the rows by; None: the rows as they are
        # Pieces of one run sort together and after an earlier run's; the random part keeps two
        # runs that start in the same second apart.
        self.run = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.since: float | None = None  # when the oldest uncommitted row arrived
        self.pieces = self.committed = 0
        self.lock = threading.Lock()
        for f in leftovers(folder, before):
            f.unlink()

    def add(self, table: pa.Table) -> None:
        with self.lock:
            if table.num_rows == 0:
                return
            self.pending.append(table)
            self.pending_rows += table.num_rows
            self.since = self.since or time.monotonic()
            while self.pending_rows >= self.rows:
                whole = pa.concat_tables(self.pending)
                self._write(whole.slice(0, self.rows))
                rest = whole.slice(self.rows)
                self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
                self.since = time.monotonic() if rest.num_rows else None
            self._flush_if_due()

    def commit_if_due(self) -> None:
        """Commit what has waited ``seconds`` (the clock thread calls this)."""
        with self.lock:
            self._flush_if_due()

    def close(self) -> None:
        """Commit everything received."""
        with self.lock:
            if self.pending_rows:
                self._flush()

    def _flush_if_due(self) -> None:
        if self.pending_rows and time.monotonic() - self.since >= self.seconds:
            self._flush()

    def _flush(self) -> None:
        self._write(pa.concat_tables(self.pending))
        self.pending, self.pending_rows, self.since = [], 0, None

    def _write(self, table: pa.Table) -> None:
        name = f"{PREFIX}{self.run}-{self.pieces:06d}.parquet"
        for folder, schema, derive in self.before:
            durable(derive(table).cast(schema), folder, name)
        durable((self.derive(table) if self.derive else table).cast(self.schema), self.folder, name)
        self.pieces += 1
        self.committed += table.num_rows


def durable(table: pa.Table, folder: Path, name: str) -> None:
    """``table`` as ``folder/name``, whole or not at all: written beside, flushed to the disk, renamed."""
    tmp = folder / f".{name}{TEMPORARY}"
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, folder / name)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave a half piece taking its space
        raise
    sync(folder)  # the rename itself survives a power cut


def sync(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
