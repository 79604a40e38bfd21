"""The committer on its own: pieces of exactly N rows, rows that waited T seconds committed by the
clock, a temporary file a killed run left removed, and every piece whole under its final name."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.parquet as pq

from hdr_dist.bulk.committer import Committer, leftovers

SCHEMA = pa.schema([("n", pa.int64())])


def rows(start: int, count: int) -> pa.Table:
    return pa.table({"n": pa.array(range(start, start + count), pa.int64())})


def committed(folder) -> list[list[int]]:
    return [pq.read_table(f)["n"].to_pylist() for f in sorted(folder.glob("part-*.parquet"))]


def test_pieces_of_n_rows_in_order_and_the_rest_on_close(tmp_path):
    c = Committer(tmp_path, SCHEMA, rows=4, seconds=3600)
    c.add(rows(0, 3))
    assert committed(tmp_path) == []
    c.add(rows(3, 10))  # 13 rows: three pieces of 4, one row waits
    assert committed(tmp_path) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    c.close()
    assert committed(tmp_path)[-1] == [12]
    assert (c.pieces, c.committed) == (4, 13)
    assert leftovers(tmp_path) == []


def test_rows_that_waited_are_committed_by_the_clock(tmp_path):
    c = Committer(tmp_path, SCHEMA, rows=1000, seconds=0.2)
    c.add(rows(0, 5))
    c.commit_if_due()
    assert committed(tmp_path) == []
    time.sleep(0.25)
    c.commit_if_due()
    assert committed(tmp_path) == [[0, 1, 2, 3, 4]]
    c.commit_if_due()  # nothing new: no empty piece
    assert len(committed(tmp_path)) == 1


def test_a_killed_runs_temporary_piece_is_removed_and_never_read(tmp_path):
    (tmp_path / ".part-20261203-000000-abcdef-000003.parquet.tmp").write_bytes(b"PAR1 half a piece")
    assert len(leftovers(tmp_path)) == 1
    Committer(tmp_path, SCHEMA)
    assert leftovers(tmp_path) == []
    assert list(tmp_path.iterdir()) == []
