"""The read stage of ``score``: items -> blocks of their bytes, and the Ray Data datasource that
runs it as read tasks.

A read task holds a bounded number of bytes, whatever it is given: a block is
yielded once it has BLOCK_ROWS rows or BLOCK_BYTES of image bytes, and no file
or member larger than MAX_FILE_BYTES is read. Plain files go in slices of
ITEMS_PER_TASK; each archive is one task, because a tar can only be read front
to back and a zip's directory of a million members costs seconds to parse.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator

import pyarrow as pa

from hdr_dist.bulk import archives
from hdr_dist.bulk.inputs import Item
from hdr_dist.common import ray_compat
from hdr_dist.common.errors import one_line
from hdr_dist.common.names import unescape
from hdr_dist.common.storage import special
from hdr_dist.imaging import images

MAX_FILE_BYTES = archives.MAX_MEMBER_BYTES
ITEMS_PER_TASK = 1000  # plain files per read task
BLOCK_ROWS = 256  # rows per block a read task yields
BLOCK_BYTES = 32 * 2**20  # image bytes per block: 256 full-page scans would not fit otherwise

READ_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("member", pa.string()),
        ("occurrence", pa.int32()),
        ("true_label", pa.string()),
        ("data", pa.binary()),
        ("error", pa.string()),
        ("skip_pages", pa.list_(pa.int32())),
    ]
)


def read_plain(path: str) -> tuple[bytes | None, str | None]:
    """A plain file's bytes. It is opened only if it is a regular file, and without blocking, so a
    FIFO or device swapped in after the listing is still refused rather than waited on. Like an
    archive member, a file that does not start like an image is read no further than its head."""
    try:
        st = os.stat(path)
        if special(st.st_mode):
            return None, special(st.st_mode)
        if st.st_size > MAX_FILE_BYTES:
            return None, f"file too large: {st.st_size:,} bytes (limit {MAX_FILE_BYTES:,})"
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                return None, special(mode) or "not a regular file: not read"
            data = os.read(fd, min(st.st_size, archives.HEAD_BYTES) + 1)  # a small file whole, in one read
            if not data.startswith(archives.SIGNATURES):
                return data[: archives.HEAD_BYTES], None
            while len(data) < st.st_size and (more := os.read(fd, st.st_size - len(data))):
                data += more  # never past the size it had when it was opened
            return data, None
        finally:
            os.close(fd)
    except OSError as e:
        return None, f"cannot read: {e.strerror or one_line(e)}"


def archive_rows(source: str, items: list[Item]) -> Iterator[tuple[Item, bytes | None, str | None]]:
    """One pass over an archive, picking the listed members by name and occurrence."""
    wanted = {(it.member, it.occurrence): it for it in items}
    try:
        for m, data, error in archives.read(unescape(source), set(wanted)):
            it = wanted.pop((m.name, m.occurrence), None)
            if it is not None:
                yield it, data, error
    except archives.Stopped as e:
        missing = f"broken archive member: not reached ({e})"
    except Exception as e:  # noqa: BLE001 - whatever else the archive does, its members get rows
        missing = f"broken archive member: not reached ({one_line(e)})"
    else:
        missing = "archive member not found when reading the archive again"
    for it in wanted.values():
        yield it, None, missing


def read_items(items: list[Item], block_rows: int = BLOCK_ROWS) -> Iterator[pa.Table]:
    """Bytes for each item, in blocks of at most ``block_rows`` rows and about BLOCK_BYTES bytes."""
    columns: dict[str, list] = {name: [] for name in READ_SCHEMA.names}
    size = 0

    def emit(it: Item, data, error) -> bool:
        nonlocal size
        for name, value in (
            ("source", it.source),
            ("member", it.member),
            ("occurrence", it.occurrence),
            ("true_label", it.label),
            ("data", data),
            ("error", it.error or error),
            ("skip_pages", list(it.skip_pages)),
        ):
            columns[name].append(value)
        size += len(data or b"")
        return len(columns["source"]) >= block_rows or size >= BLOCK_BYTES

    def block() -> pa.Table:
        nonlocal size
        table = pa.Table.from_pydict(columns, schema=READ_SCHEMA)
        for values in columns.values():
            values.clear()
        size = 0
        return table

    archived, rest = by_archive(items)
    for it in rest:
        if emit(it, *((None, None) if it.error else read_plain(unescape(it.source)))):
            yield block()
    for source, members in archived.items():
        for row in archive_rows(source, members):
            if emit(*row):
                yield block()
    if columns["source"]:
        yield block()


def pages_again(rows: list[dict], max_pixels: int, make, pdf_width: int | None = None) -> dict[tuple, object]:
    """(source, member, occurrence, page) -> ``make(key, gray)`` of each of ``rows``' pages that decodes,
    read again from the inputs through the same reading and decoding code scoring used (an output
    keeps no pixels; its review page and its report show a few of them)."""
    wanted: dict[tuple, set[int]] = {}
    for r in rows:
        wanted.setdefault((r["source"], r["member"], r["occurrence"] or 0), set()).add(r["page"])
    items = [Item(source, member, key="", occurrence=occurrence) for source, member, occurrence in wanted]
    found = {}
    for block in read_items(items):
        for row in block.select(["source", "member", "occurrence", "data"]).to_pylist():
            key = (row["source"], row["member"], row["occurrence"])
            pages = wanted.get(key, set())
            for page, _, _, _, gray, error in (
                images.decode(row["data"], max_pixels, pdf_width) if row["data"] else ()
            ):
                if page in pages and error is None:
                    # A page scoring survived must not stop what shows it: shown as not readable.
                    with contextlib.suppress(Exception):
                        found[(*key, page)] = make((*key, page), gray)
                if page >= max(pages, default=-1):
                    break  # a long TIFF is not decoded past the last page wanted
    return found


def by_archive(items: list[Item]) -> tuple[dict[str, list[Item]], list[Item]]:
    """The archive members still to read, by archive; and the rest (plain files, listing errors)."""
    archived: dict[str, list[Item]] = {}
    rest = []
    for it in items:
        if it.member is not None and it.error is None:
            archived.setdefault(it.source, []).append(it)
        else:
            rest.append(it)
    return archived, rest


def read_tasks(items: list[Item], per_task: int = ITEMS_PER_TASK) -> list[list[Item]]:
    """Each archive's readable members as one task; plain files and listing errors in slices."""
    archived, rest = by_archive(items)
    return list(archived.values()) + [rest[i : i + per_task] for i in range(0, len(rest), per_task)]


def reader(items_ref, block_rows: int):
    """A read task's function. The items travel through the object store, so the function
    Ray serialises stays small even for an archive of a million members."""

    def read_image_files():
        import ray

        return read_items(ray.get(items_ref), block_rows)

    return read_image_files


def datasource(items: list[Item], block_rows: int = BLOCK_ROWS, per_task: int = ITEMS_PER_TASK):
    """A Ray Data ``Datasource`` over the items (built here so importing this module needs no Ray).
    ``block_rows`` and ``per_task`` (plain files per read task) bound the blocks the next stage's
    tasks take, so the work of one of its tasks."""
    Datasource, ReadTask, BlockMetadata = ray_compat.datasource_api()

    class ImageFiles(Datasource):
        def __init__(self, tasks: list[list[Item]]):
            super().__init__()
            self.tasks = tasks

        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            import ray

            return [
                ReadTask(
                    reader(ray.put(task), block_rows),
                    BlockMetadata(num_rows=len(task), size_bytes=None, input_files=None, exec_stats=None),
                    schema=READ_SCHEMA,
                    per_task_row_limit=per_task_row_limit,
                )
                for task in self.tasks
            ]

    return ImageFiles(read_tasks(items, per_task))
