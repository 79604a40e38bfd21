"""An adversarial generator: every hostile or odd kind of input a form archive or file share can
hold, built on disk from real MNIST digits, each with the rows ``score`` must give it.

``build(folder, digits)`` writes them all under ``folder`` and returns one ``Case``
per file it made at the top of the folder (and the files some cases place
deeper), so a test can check every source's exact row count and error text.
Zips are written by hand where Python's zipfile refuses to write what attackers
write (links, overlapping entries, members inflating to tens of GiB).
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from hdr_dist.data import samples

BOMB_MEMBER = 255 * 2**20  # each bomb member inflates to just under the member limit (256 MiB)


@dataclass
class Case:
    """What one source on disk must give: ``rows`` maps (member or None, occurrence) to the start
    of the error it must carry (None: scored), for every row of that source."""

    path: Path
    rows: dict = field(default_factory=dict)
    pages: int = 0  # a multi-page file: rows per page instead (page -> error start)


def png(digit: np.ndarray, size: int = 28) -> bytes:
    return samples.render(digit, size, "PNG")


# ---- zips written by hand -----------------------------------------------------------------------


@dataclass
class Entry:
    name: bytes
    data: bytes  # as stored: deflated when method == 8
    size: int  # inflated size
    crc: int
    method: int = 0
    flags: int = 0
    mode: int = 0o100644  # unix type and permissions (stat.S_IFLNK | 0o777 for a link)
    shared_with: int | None = None  # index of an earlier entry whose local header this one points at


def stored(name: str | bytes, data: bytes, **kw) -> Entry:
    name = name.encode() if isinstance(name, str) else name
    return Entry(name, data, len(data), zlib.crc32(data), **kw)


def deflated_zeros(size: int, prefix: bytes = b"") -> tuple[bytes, int]:
    """``prefix`` then zeros to ``size`` bytes, raw-deflated (about 1,000:1), and its CRC."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out, crc = [c.compress(prefix)], zlib.crc32(prefix)
    chunk = bytes(2**24)
    left = size - len(prefix)
    while left:
        piece = chunk[: min(left, len(chunk))]
        out.append(c.compress(piece))
        crc = zlib.crc32(piece, crc)
        left -= len(piece)
    out.append(c.flush())
    return b"".join(out), crc


def entry_fields(e: Entry) -> tuple:
    """What a zip's local header and its central directory say alike of an entry: its flags, method,
    time and date, CRC, sizes, name length and extra length."""
    return (e.flags, e.method, 0, 0x21, e.crc, len(e.data), e.size, len(e.name), 0)


def write_zip(path: Path, entries: list[Entry]) -> None:
    local, central, offsets = bytearray(), bytearray(), []
    for e in entries:
        if e.shared_with is not None:
            offsets.append(offsets[e.shared_with])
        else:
            offsets.append(len(local))
            local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, *entry_fields(e)) + e.name + e.data
    for e, offset in zip(entries, offsets):
        # made by Unix (3) zip 2.0; needs 2.0; the fields above; no comment, disk 0, no internal
        # attributes; the Unix mode; where the local header is
        fields = (0x02014B50, (3 << 8) | 20, 20, *entry_fields(e), 0, 0, 0, e.mode << 16, offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", *fields) + e.name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))


# ---- tars ---------------------------------------------------------------------------------------


def tar_bytes(members: list[tuple], fmt=tarfile.GNU_FORMAT) -> bytes:
    """(name, data) for regular members, (name, b"", type, linkname) for the others."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as t:
        for name, data, *rest in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if rest:
                info.type, info.linkname = rest[0], rest[1] if len(rest) > 1 else ""
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def bad_block_after(raw: bytes, members: int) -> bytes:
    """A tar whose header after ``members`` members is overwritten with garbage."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        at = t.getmembers()[members].offset
    return raw[:at] + b"\xde\xad" * 256 + raw[at + 512 :]


def tiff(digits: np.ndarray, pages: int) -> bytes:
    frames = [Image.fromarray(255 - digits[i % len(digits)]) for i in range(pages)]
    out = io.BytesIO()
    frames[0].save(out, "TIFF", save_all=True, append_images=frames[1:])
    return out.getvalue()


def cut_tiff_directory(raw: bytes, pages: int) -> bytes:
    """A little-endian TIFF whose page directory points into garbage after ``pages`` pages."""
    at = struct.unpack_from("<I", raw, 4)[0]
    for _ in range(pages - 1):
        count = struct.unpack_from("<H", raw, at)[0]
        at = struct.unpack_from("<I", raw, at + 2 + 12 * count)[0]
    count = struct.unpack_from("<H", raw, at)[0]
    pointer = at + 2 + 12 * count
    return raw[:pointer] + struct.pack("<I", len(raw) + 10) + raw[pointer + 4 :] + b"\xff" * 64


def too_deep(top: Path, limit: int = 4096) -> Path:
    """Folders nested under ``top`` past PATH_MAX, with a digit in the deepest; returns the first
    folder whose path is too long to list (the row must name it)."""
    top.mkdir()
    fd, path, first = os.open(top, os.O_RDONLY), str(top), None
    while len(path) < limit + 300:
        os.mkdir("d" * 200, dir_fd=fd)
        fd, old = os.open("d" * 200, os.O_RDONLY, dir_fd=fd), fd
        os.close(old)
        path += "/" + "d" * 200
        first = first or (path if len(path) >= limit else None)
    inside = os.open("lost.png", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
    os.write(inside, b"\x89PNG\r\n\x1a\n")
    os.close(inside)
    os.close(fd)
    return Path(first)


# ---- the set ------------------------------------------------------------------------------------


def build(root: Path, digits: np.ndarray, tiny_members: int = 20_000, tiff_pages: int = 3000) -> list[Case]:
    """Every hostile kind under ``root`` (made here), from real digits; one Case per source."""
    root.mkdir(parents=True)
    good = [png(d) for d in digits[:8]]
    return (
        plain_files(root, digits, good, tiff_pages)
        + special_files(root, good)
        + zips(root, good, tiny_members)
        + tars(root, good)
    )


def plain_files(root: Path, digits: np.ndarray, good: list[bytes], tiff_pages: int) -> list[Case]:
    """Odd names, and plain files that are broken, bombs, extreme, or thousands of pages."""
    cases: list[Case] = []

    def plain(name: str | bytes, data: bytes, error: str | None = None) -> None:
        path = root / os.fsdecode(name)
        path.write_bytes(data)
        cases.append(Case(path, {(None, 0): error}))

    plain(b"caf\xe9-latin1-name.png", good[0])  # not UTF-8: kept, escaped
    plain("back\\xslash.png", good[1])  # a valid name that looks escaped
    plain("truncated.png", good[2][:60], "corrupt image")
    huge = io.BytesIO()
    Image.new("1", (1, 1)).save(huge, "PNG")
    declared = bytearray(huge.getvalue())
    declared[16:24] = struct.pack(">II", 100_000, 100_000)  # a header that claims 10^10 pixels
    declared[29:33] = struct.pack(">I", zlib.crc32(bytes(declared[12:29])))
    plain("claims-10-gigapixels.png", bytes(declared), "image too large")
    strip = np.full((2, 20_000_000), 255, np.uint8)  # 40 M pixels, 10^7 : 1
    strip[:, 9_000_000:9_000_400] = 0
    out = io.BytesIO()
    Image.fromarray(strip).save(out, "PNG")
    plain("extreme-aspect-2x20000000.png", out.getvalue())
    plain("thousands-of-pages.tif", tiff(digits, tiff_pages))
    cases[-1].pages = tiff_pages
    plain("broken-page-directory.tif", cut_tiff_directory(tiff(digits, 6), 4))
    cases[-1].pages = 5
    return cases


def special_files(root: Path, good: list[bytes]) -> list[Case]:
    """What is not a regular file, links, a folder too deep to list, and desktop junk."""
    cases: list[Case] = []
    # Files that are not regular: refused unopened (reading would block for ever).
    os.mkfifo(root / "pipe.png")
    cases.append(Case(root / "pipe.png", {(None, 0): "not a regular file (a FIFO)"}))
    os.mkfifo(root.parent / "pipe-elsewhere")
    os.symlink(root.parent / "pipe-elsewhere", root / "link-to-pipe.png")
    cases.append(Case(root / "link-to-pipe.png", {(None, 0): "not a regular file (a FIFO)"}))
    os.symlink("/dev/zero", root / "link-to-dev-zero.png")
    cases.append(Case(root / "link-to-dev-zero.png", {(None, 0): "not a regular file (a device)"}))

    # A symlinked folder: reported, not followed.
    (root.parent / "elsewhere").mkdir(exist_ok=True)
    (root.parent / "elsewhere" / "x.png").write_bytes(good[3])
    os.symlink(root.parent / "elsewhere", root / "linked-folder")
    cases.append(Case(root / "linked-folder", {(None, 0): "symlinked folder not followed"}))

    # A folder that cannot be listed: its path is longer than the kernel takes (PATH_MAX), so even root
    # cannot read it; it was made one level at a time, relative to its parent.
    cases.append(Case(too_deep(root / "deep"), {(None, 0): "cannot list folder: File name too long"}))

    # Desktop junk: skipped, no row.
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._a.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    return cases


def zips(root: Path, good: list[bytes], tiny_members: int) -> list[Case]:
    """Zips with links, repeated names, bombs, overlapping entries, odd members, and a host of tiny ones."""
    return [
        links_and_duplicates_zip(root, good),
        bomb_zip(root),
        overlapping_zip(root, good),
        odd_members_zip(root, good),
        *broken_zips(root, good),
        tiny_members_zip(root, tiny_members),
    ]


def links_and_duplicates_zip(root: Path, good: list[bytes]) -> Case:
    """A link and a FIFO under one name with two images, and desktop junk (no rows)."""
    link = stored("a.png", b"../../../etc/passwd", mode=stat.S_IFLNK | 0o777)
    fifo = stored("a.png", b"", mode=stat.S_IFIFO | 0o644)
    write_zip(
        root / "links-and-duplicates.zip",
        [
            link,
            stored("a.png", good[4]),
            fifo,
            stored("a.png", good[5]),
            stored("__MACOSX/._a.png", b"junk"),
            stored(".DS_Store", b"junk"),
        ],
    )
    return Case(
        root / "links-and-duplicates.zip",
        {
            ("a.png", 0): "archive member is a link",
            ("a.png", 1): None,
            ("a.png", 2): "archive member is a FIFO",
            ("a.png", 3): None,
        },
    )


def bomb_zip(root: Path) -> Case:
    """A hundred members, each inflating to just under the member limit: read whole, then refused by
    Pillow."""
    payload, crc = deflated_zeros(BOMB_MEMBER)
    looks_png, png_crc = deflated_zeros(BOMB_MEMBER, b"\x89PNG\r\n\x1a\n")
    bomb = [Entry(f"zeros-{i:03d}.bin".encode(), payload, BOMB_MEMBER, crc, method=8) for i in range(96)]
    bomb += [
        Entry(f"looks-like-{i}.png".encode(), looks_png, BOMB_MEMBER, png_crc, method=8) for i in range(4)
    ]
    write_zip(root / "inflates-to-25-GiB.zip", bomb)
    return Case(
        root / "inflates-to-25-GiB.zip",
        {
            **{(f"zeros-{i:03d}.bin", 0): "not an image" for i in range(96)},
            **{(f"looks-like-{i}.png", 0): "not an image" for i in range(4)},
        },
    )


def overlapping_zip(root: Path, good: list[bytes]) -> Case:
    """Six central entries that all point at one local header."""
    shared = [stored("kernel.png", good[6], method=0)] + [
        Entry(f"overlap-{i}.png".encode(), good[6], len(good[6]), zlib.crc32(good[6]), shared_with=0)
        for i in range(5)
    ]
    write_zip(root / "overlapping-entries.zip", shared)
    return Case(
        root / "overlapping-entries.zip",
        {
            ("kernel.png", 0): "archive member overlaps",
            **{(f"overlap-{i}.png", 0): "archive member overlaps" for i in range(5)},
        },
    )


def odd_members_zip(root: Path, good: list[bytes]) -> Case:
    """An encrypted member, a nested archive, a name that climbs out, and a cp437 name."""
    write_zip(
        root / "odd-members.zip",
        [
            stored("secret.png", good[0], flags=0x1),
            stored("inner.zip", b"PK\x05\x06" + bytes(18)),
            stored("../escape.png", good[0]),
            stored(b"caf\xe9.png", good[7]),
            stored("ok/7.png", good[7]),
        ],
    )
    return Case(
        root / "odd-members.zip",
        {
            ("secret.png", 0): "archive member is encrypted",
            ("inner.zip", 0): "nested archive not opened",
            ("../escape.png", 0): "unsafe member name",
            (b"caf\xe9.png".decode("cp437"), 0): None,
            ("ok/7.png", 0): None,
        },
    )


def broken_zips(root: Path, good: list[bytes]) -> list[Case]:
    """A zip whose UTF-8 flag lies about a name, and an empty zip: one archive row each."""
    write_zip(root / "bad-utf8-flag.zip", [stored(b"\xff\xfe.png", good[0], flags=0x800)])
    write_zip(root / "empty.zip", [])
    return [
        Case(root / "bad-utf8-flag.zip", {(None, 0): "corrupt archive"}),
        Case(root / "empty.zip", {(None, 0): "archive holds no files"}),
    ]


def tiny_members_zip(root: Path, tiny_members: int) -> Case:
    """A host of one-byte members, none an image."""
    with zipfile.ZipFile(root / "tiny-members.zip", "w") as z:
        for i in range(tiny_members):
            z.writestr(f"t/{i:06d}", b"x")
    return Case(root / "tiny-members.zip", {(f"t/{i:06d}", 0): "not an image" for i in range(tiny_members)})


def tars(root: Path, good: list[bytes]) -> list[Case]:
    """Tars cut short, joined, holding links and devices, and a bzip2 bomb."""
    regular = [(f"{i}.png", good[i]) for i in range(8)]
    return [*cut_tars(root, regular), *joined_tars(root, regular), links_tar(root, good), bz2_bomb_tar(root)]


def cut_tars(root: Path, regular: list[tuple[str, bytes]]) -> list[Case]:
    """A tar with a garbage header part way, and a .tar.gz cut short."""
    raw = tar_bytes(regular)
    (root / "bad-header-part-way.tar").write_bytes(bad_block_after(raw, 5))
    whole = gzip.compress(raw)
    (root / "truncated.tar.gz").write_bytes(whole[: len(whole) * 2 // 3])
    return [
        Case(
            root / "bad-header-part-way.tar",
            {**{(f"{i}.png", 0): None for i in range(5)}, (None, 0): "corrupt archive: unreadable header"},
        ),
        Case(root / "truncated.tar.gz", {}),  # members before the cut, then one archive row: see check
    ]


def joined_tars(root: Path, regular: list[tuple[str, bytes]]) -> list[Case]:
    """Two tars end to end, and two gzip streams end to end: every member of both is read."""
    (root / "joined.tar").write_bytes(tar_bytes(regular[:3]) + tar_bytes(regular[3:6]))
    (root / "joined-streams.tar.gz").write_bytes(
        gzip.compress(tar_bytes(regular[:4])) + gzip.compress(tar_bytes(regular[4:]))
    )
    return [
        Case(root / "joined.tar", {(f"{i}.png", 0): None for i in range(6)}),
        Case(root / "joined-streams.tar.gz", {(f"{i}.png", 0): None for i in range(8)}),
    ]


def links_tar(root: Path, good: list[bytes]) -> Case:
    """Symbolic and hard links, a FIFO and a device under one name with an image, and a name not UTF-8."""
    (root / "links.tar").write_bytes(
        tar_bytes(
            [
                ("b.png", b"", tarfile.SYMTYPE, "/etc/passwd"),
                ("b.png", good[1]),
                ("b.png", b"", tarfile.LNKTYPE, "b.png"),
                ("b.png", b"", tarfile.FIFOTYPE),
                ("b.png", b"", tarfile.CHRTYPE),
                (os.fsdecode(b"n\xe4me.png"), good[2]),
            ]
        )
    )
    return Case(
        root / "links.tar",
        {
            ("b.png", 0): "archive member is a link",
            ("b.png", 1): None,
            ("b.png", 2): "archive member is a link",
            ("b.png", 3): "archive member is a FIFO",
            ("b.png", 4): "archive member is a device",
            ("n\\xe4me.png", 0): None,
        },
    )


def bz2_bomb_tar(root: Path) -> Case:
    """A bzip2 tar whose one header claims 8 GiB of data."""
    declared = tar_bytes([("huge.png", b"")])
    header = bytearray(declared[:512])
    header[124:136] = b"%011o\x00" % (8 * 2**30)  # claims 8 GiB of data
    header[148:156] = b"        "
    header[148:156] = b"%06o\x00 " % sum(header)
    (root / "bz2-bomb.tar").write_bytes(bz2.compress(bytes(header) + bytes(2**20)))
    return Case(root / "bz2-bomb.tar", {(None, 0): "corrupt archive: member 'huge.png' would take it past"})
