"""Zip and tar archives as form archives really come: walked member by member, never extracted,
with every way an archive can be hostile or damaged turned into an error for that member, or
for the archive when it cannot be read to its end.

The driver lists an archive and a read task reads it again later, with the same
walk, so the n-th member of a name is the same member both times: a link or a
device member never stands in for the regular member of the same name. A walk
that stops early says where and why, so no image vanishes without a row.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hdr_dist.common.errors import one_line
from hdr_dist.common.names import archive_kind, escape, unsafe

MAX_MEMBER_BYTES = (
    256 * 2**20
)  # a crop, or even a full form page, is far smaller; beyond is a bomb or a mistake
HEAD_BYTES = 4096  # enough for any accepted format's header
BOMB_RATIO = 1000  # no real tar of scans inflates 1,000-fold; gzip cannot, bzip2 and xz bombs do
BOMB_FLOOR = 256 * 2**20  # small archives may inflate this far whatever their ratio
ZERO_TAIL = 2**20  # zeros after a tar's end marker: 20 KiB is normal, a MiB is already odd
# The signatures Pillow identifies the accepted formats by (PNG, JPEG, BMP, TIFF and BigTIFF, GIF).
SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00",
    b"MM\x00+",
    b"GIF87a",
    b"GIF89a",
    b"%PDF-",
)


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # the path inside the archive, escaped (names.escape); directories are never members
    occurrence: int  # among the archive's members of this name, which one (0: the first)
    error: str | None  # why it cannot be scored; None for a regular member worth reading


def read_head_first(f) -> bytes:
    """A zip member's bytes, but only its first HEAD_BYTES unless they start like an accepted image:
    a bomb's payload, or a PDF, is then never inflated. The head still lets the decoder name the
    format it is. (No member declared over MAX_MEMBER_BYTES gets here, and zipfile inflates none
    past its declared size.)"""
    head = f.read(HEAD_BYTES)
    return head + f.read() if head.startswith(SIGNATURES) else head


def member_error(name: str, size: int, kind: str | None) -> str | None:
    """What is wrong with a member before its bytes are read; ``kind`` names a non-regular type."""
    if why := unsafe(name):
        return why
    if kind:
        return f"archive member is a {kind}, not a file"
    if archive_kind(name):
        return "nested archive not opened: extract it and give it as an INPUT"
    if size > MAX_MEMBER_BYTES:
        return f"archive member too large: {size:,} bytes (limit {MAX_MEMBER_BYTES:,})"
    return None


# ---- zip ----------------------------------------------------------------------------------------

ZIP_KINDS = {
    stat.S_IFLNK: "link",
    stat.S_IFCHR: "device",
    stat.S_IFBLK: "device",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFDIR: "folder",
}


def overlapping(z: zipfile.ZipFile) -> set[int]:
    """Members whose data runs into the next member's header: the overlapping-entries zip bomb,
    where thousands of entries inflate one shared stream (CPython 3.12 refuses them too)."""
    infos = sorted(z.infolist(), key=lambda i: i.header_offset)
    ends = [i.header_offset for i in infos[1:]] + [z.start_dir]
    bad = set()
    for info, end in zip(infos, ends):
        name_bytes = len(info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace"))
        if end == info.header_offset or info.header_offset + 30 + name_bytes + info.compress_size > end:
            bad.add(id(info))
    return bad


def zip_walk(z: zipfile.ZipFile) -> Iterator[tuple[zipfile.ZipInfo, Member]]:
    bombs = overlapping(z)
    seen: dict[str, int] = {}
    for info in z.infolist():
        if info.is_dir():
            continue
        name = escape(info.filename)
        n = seen[name] = seen.get(name, -1) + 1
        mode = info.external_attr >> 16 if info.create_system == 3 else 0  # unix type and permissions
        error = member_error(info.filename, info.file_size, ZIP_KINDS.get(stat.S_IFMT(mode)))
        if error is None and id(info) in bombs:
            error = "archive member overlaps another member's data (a zip bomb)"
        if error is None and info.flag_bits & 0x1:
            error = "archive member is encrypted"
        yield info, Member(name, n, error)


# ---- tar ----------------------------------------------------------------------------------------


def tar_kind(m: tarfile.TarInfo) -> str | None:
    if m.isfile():
        return None
    if m.issym() or m.islnk():
        return "link"
    if m.isfifo():
        return "FIFO"
    return "device" if m.ischr() or m.isblk() else "special entry"


def after_end(t: tarfile.TarFile) -> tuple[int | None, str | None]:
    """Where a tar's walk stopped (``next()`` returned None): is this the archive's real end?

    tarfile ends its walk silently at a bad header after the first one, and at the
    end marker of the first of two joined archives. Returns (offset of a joined
    archive's next header, None) to go on reading, (None, None) at the real end,
    or (None, why) when the rest cannot be read.
    """
    f, at = t.fileobj, t.offset
    f.seek(at)
    block = f.read(tarfile.BLOCKSIZE)
    if not block:
        return None, None
    if block != bytes(len(block)):
        return None, f"unreadable header at byte {at:,}"
    zeros = len(block)
    while True:
        block = f.read(tarfile.BLOCKSIZE)
        if not block:
            return None, None
        if block == bytes(len(block)):
            zeros += len(block)
            if zeros > ZERO_TAIL:
                return None, f"more than {ZERO_TAIL:,} bytes of zeros after the end marker at byte {at:,}"
            continue
        try:
            tarfile.TarInfo.frombuf(block, t.encoding, t.errors)
        except tarfile.HeaderError:
            return None, f"data after the end marker at byte {at + zeros:,} is not a tar header"
        return at + zeros, None  # a second archive joined to the first (cat a.tar b.tar)


def tar_walk(t: tarfile.TarFile, limit: int) -> Iterator[tuple[tarfile.TarInfo, Member]]:
    """Every member of an open tar in order, on through joined archives. Raises ``Stopped`` when
    the archive cannot be read to its end."""
    seen: dict[str, int] = {}
    last = None
    try:
        while True:
            m = t.next()
            t.members.clear()  # tarfile keeps every member it has seen; a million would not fit
            if m is None:
                joined, error = after_end(t)
                if error:
                    raise Stopped(error, last)
                if joined is None:
                    return
                t.offset = joined
                continue
            if m.offset_data + m.size > limit:
                raise Stopped(
                    f"member {escape(m.name)!r} would take it past {limit:,} bytes inflated "
                    "(a decompression bomb)",
                    last,
                )
            last = m.name
            if m.isdir():
                continue
            name = escape(m.name)
            n = seen[name] = seen.get(name, -1) + 1
            yield m, Member(name, n, member_error(m.name, m.size, tar_kind(m)))
    except Stopped:
        raise
    except Exception as e:  # noqa: BLE001 - a truncated stream, a bad checksum, a zlib error, anything
        raise Stopped(one_line(e), last) from None


class Stopped(Exception):
    """An archive could not be read to its end; the message says where, and that the rest was lost."""

    def __init__(self, why: str, last: str | None):
        where = f"; stopped after member {escape(last)!r}, the rest was not read" if last is not None else ""
        super().__init__(f"corrupt archive: {why}{where}")


def open_tar(path: str) -> tarfile.TarFile:
    """Random access (``r:``), so a joined archive's second half can be gone back to; it also reads
    60,000 small members faster than the stream mode (``r|``) on this machine."""
    try:
        return tarfile.open(path, "r:*")
    except Exception as e:  # noqa: BLE001 - not a tar, or a first header already bad
        raise Stopped(one_line(e), None) from None


def open_zip(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except Exception as e:  # noqa: BLE001 - not a zip, a cut directory, a name not valid UTF-8 under its flag
        raise Stopped(one_line(e), None) from None


# ---- both kinds ---------------------------------------------------------------------------------


@contextmanager
def walk(path: str):
    """(how to read a member, the walk over the members): one way in for listing and reading alike.

    A zip member is read head first, since reading it is inflating it and a bomb's payload need
    not be. A tar member is read whole (never more than MAX_MEMBER_BYTES): getting past it costs
    as much, and one read is half the time of two on small members."""
    if archive_kind(path) == "zip":
        with open_zip(path) as z:
            yield (lambda info: read_member(lambda: z.open(info), read_head_first)), zip_walk(z)
    else:
        with open_tar(path) as t:
            yield (
                (lambda info: read_member(lambda: t.extractfile(info), lambda f: f.read())),
                tar_walk(t, bomb_limit(path)),
            )


def members(path: str) -> tuple[list[Member], str | None]:
    """Listing: an archive's members (directories left out) and, when the archive cannot be read
    to its end or at all, why; the members before the stop are kept."""
    found: list[Member] = []
    try:
        with walk(path) as (_, entries):
            found.extend(m for _, m in entries)
    except Stopped as e:
        return found, str(e)
    return found, None


def read(path: str, wanted: set[tuple[str, int]]):
    """Reading: yields (member, bytes, error) for each wanted (name, occurrence) in archive order,
    and stops once it has them all. Raises ``Stopped`` if the archive ends before that."""
    left = len(wanted)
    with walk(path) as (read_bytes, entries):
        for info, m in entries:
            if (m.name, m.occurrence) not in wanted:
                continue
            yield m, *read_bytes(info)
            left -= 1
            if left == 0:
                return


def read_member(open_member, read_bytes) -> tuple[bytes | None, str | None]:
    try:
        with open_member() as f:
            return read_bytes(f), None
    except Exception as e:  # noqa: BLE001 - CRC, inflate, bad local header: that member's error
        return None, f"broken archive member: {one_line(e)}"


def bomb_limit(path: str) -> int:
    return max(BOMB_FLOOR, BOMB_RATIO * os.path.getsize(path))
