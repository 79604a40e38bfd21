"""What a file or archive member's name tells before anything is opened, and how a name that
is not valid UTF-8 is written.

Form archives come from every kind of machine: Windows and macOS zips carry
junk files beside the scans, old tools write names in legacy encodings, and a
hostile archive names members so that extracting them would escape the folder.
Listing and reading both ask these questions, so the answers live here once.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

# Files the desktop of the person who made an archive leaves in it: never scans.
JUNK_FILES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"}
JUNK_FOLDERS = {"__macosx"}

_UNDECODED = re.compile(r"[\udc80-\udcff]")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def archive_kind(name: str) -> str | None:
    name = name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    return None


def junk(name: str) -> bool:
    """``__MACOSX/…``, ``._*`` (macOS resource forks), ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``."""
    parts = name.replace("\\", "/").lower().split("/")
    return parts[-1] in JUNK_FILES or parts[-1].startswith("._") or not JUNK_FOLDERS.isdisjoint(parts[:-1])


def unsafe(name: str) -> str | None:
    """Members that would escape a folder if extracted are refused, extracted or not."""
    if (
        name.startswith(("/", "\\"))
        or (len(name) > 1 and name[1] == ":")
        or ".." in name.replace("\\", "/").split("/")
    ):
        return "unsafe member name (absolute path or '..')"
    return None


def tidy(path: str) -> str:
    """``./3/a.png`` and ``3//a.png`` name ``3/a.png``, as tar and a person writing a CSV may spell it.
    A name with no empty or ``.`` part is already tidy and is returned without parsing it: a listing
    asks this three times per archive member, and parsing them all showed in its time (measured:
    docs/decisions.md)."""
    if path.startswith("/"):
        return path
    parts = path.split("/")
    return path if "" not in parts and "." not in parts else PurePosixPath(path).as_posix()


def escape(name: str) -> str:
    """A name as valid UTF-8 for Parquet, losslessly (``unescape`` inverts it).

    Python hands undecodable bytes of a file or tar member name to us as lone
    surrogates (``surrogateescape``), which no UTF-8 writer accepts. Such a name
    is written with each undecodable byte as ``\\xNN`` and each backslash doubled;
    so is a valid name that happens to hold ``\\x``, so that no two names ever
    escape to the same text. Every other name is written as it is.
    """
    if not _UNDECODED.search(name) and "\\x" not in name:
        return name
    return _UNDECODED.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", name.replace("\\", "\\\\"))


def unescape(text: str) -> str:
    """The name ``escape`` was given: undecodable bytes back as surrogates, ready for ``open``."""
    if "\\x" not in text:
        return text
    return _ESCAPE.sub(lambda m: "\\" if m.group(1) == "\\" else chr(0xDC00 + int(m.group(1)[1:], 16)), text)
