"""What ``score`` reads: INPUT arguments -> one ``Item`` per image file or archive member.

Archives are listed here, in the driver, but never extracted: the read tasks
open them again and read each member into memory. Listing first is what lets
a bad labels file, an unknown folder label or an already-scored input be dealt
with before any work starts, and it gives the progress line its total.

Whatever a file share holds, every file ends up as exactly one item: an image
to read, or an error the output will carry (an unreadable folder, a FIFO, a
symlinked folder, an archive cut short). Desktop junk is skipped and counted,
and a file named twice (two INPUTs, overlapping folders, a link) is read once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hdr_dist.bulk import archives
from hdr_dist.common.errors import UserError
from hdr_dist.common.names import archive_kind, escape, junk, tidy
from hdr_dist.common.storage import special


@dataclass(frozen=True, slots=True)
class Item:
    source: str  # the file, or the archive holding it: absolute path, escaped (names.escape)
    member: str | None  # the path inside the archive, escaped; None for a plain file
    key: str  # the path under its INPUT, an archive counting as a folder: what --labels names
    occurrence: int = 0  # among the archive's members of this name (an archive may repeat one), which one
    error: str | None = None  # set when listing already found it unreadable
    label: str | None = None
    skip_pages: tuple = ()  # pages a resumed run already scored
    root: int = 0  # which INPUT it was found under


@dataclass
class Listing:
    items: list[Item] = field(default_factory=list)
    junk: int = 0  # desktop junk skipped (__MACOSX/, ._*, .DS_Store, Thumbs.db)
    duplicates: int = 0  # files and members already listed under another name or INPUT


class Finder:
    """Walks the INPUTs once, keeping count of what it skipped and which files it has seen."""

    def __init__(self):
        self.listing = Listing()
        self.seen: set = set()

    def add(self, item: Item) -> None:
        self.listing.items.append(item)

    def first_time(self, identity) -> bool:
        if identity in self.seen:
            self.listing.duplicates += 1
            return False
        self.seen.add(identity)
        return True

    def file(self, path: str, key: str, root: int, named: bool = False) -> None:
        """One file found in a folder, or ``named`` as an INPUT: an image, an archive, or an error.
        An empty archive found in a folder is an error row; named as an INPUT, it is nothing."""
        source = escape(path)
        try:
            st = os.stat(path)  # follows a link: a link to a FIFO is refused like the FIFO
        except OSError as e:
            if self.first_time(("path", os.path.realpath(path))):
                self.add(Item(source, None, key, error=f"cannot read: {e.strerror or e}", root=root))
            return
        if not self.first_time((st.st_dev, st.st_ino)):
            return
        if special(st.st_mode) or archive_kind(path) is None:
            self.add(Item(source, None, key, error=special(st.st_mode), root=root))
            return
        members, stop = archives.members(path)
        prefix = "" if key == "" else key + "/"
        for m in members:
            if junk(m.name):
                self.listing.junk += 1
            else:
                self.add(Item(source, m.name, prefix + tidy(m.name), m.occurrence, m.error, root=root))
        if stop or not (members or named):
            self.add(
                Item(source, None, key or Path(path).name, error=stop or "archive holds no files", root=root)
            )

    def folder(self, top: str, root: int) -> None:
        """Every file under ``top``, in os.walk's order but without its recursion (a folder a thousand
        levels deep would exhaust Python's stack); symlinked sub-folders are reported, not followed
        (they could loop, leave the share, or name the same files twice)."""
        failed: list[OSError] = []
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as found:
                    entries = list(found)
            except OSError as e:  # unreadable, or a path too long to open: the folder gets its row
                failed.append(e)
                continue
            dirs = sorted(e.name for e in entries if is_dir(e))
            for name in [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
                dirs.remove(name)
                path = os.path.join(folder, name)
                self.add(
                    Item(
                        escape(path),
                        None,
                        escape(os.path.relpath(path, top)),
                        root=root,
                        error=f"symlinked folder not followed (-> {escape(os.readlink(path))}); "
                        "give it as an INPUT to score it",
                    )
                )
            for name in sorted(e.name for e in entries if not is_dir(e)):
                path = os.path.join(folder, name)
                key = escape(os.path.relpath(path, top))
                if junk(key):
                    self.listing.junk += 1
                else:
                    self.file(path, key, root)
            stack.extend(os.path.join(folder, d) for d in reversed(dirs))
        for e in failed:
            self.add(
                Item(
                    escape(e.filename),
                    None,
                    escape(os.path.relpath(e.filename, top)),
                    root=root,
                    error=f"cannot list folder: {e.strerror}; its files were not read",
                )
            )


def is_dir(entry: os.DirEntry) -> bool:
    """As os.walk asks it: a link to a folder counts (and is then reported, not followed)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def find(inputs: list[str]) -> Listing:
    """Every file under each INPUT (folders recursively, archives opened), in a stable order.
    An INPUT that holds nothing to score is the user's mistake: one line, before any work."""
    finder = Finder()
    listing = finder.listing
    for root, text in enumerate(inputs):
        path = os.path.expanduser(text)
        if not os.path.lexists(path):
            raise UserError(f"INPUT {escape(text)}: no such file or folder")
        path = os.path.realpath(path)
        items, junk_files, duplicates = len(listing.items), listing.junk, listing.duplicates
        if os.path.isdir(path):
            finder.folder(path, root)
        elif archive_kind(path):
            finder.file(
                path, "", root, named=True
            )  # the archive is the INPUT: its members' paths are their keys
        else:
            finder.file(path, escape(os.path.basename(path)), root, named=True)
        if len(listing.items) == items and listing.duplicates == duplicates:
            skipped = listing.junk - junk_files
            raise UserError(
                f"INPUT {escape(text)}: holds no files to score"
                + (f" (only {skipped:,} desktop junk files, skipped)" if skipped else "")
            )
    return listing
