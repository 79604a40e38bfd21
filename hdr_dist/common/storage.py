"""Where a job writes: its output folder, Ray's checkpoint storage (a folder or a URI), and
the run names that let the same command find its earlier run there and resume it.

Every "is this a URI?" question in the project is ``is_uri``, so a local path and a
pyarrow URI (s3://, gs://, ...) are told apart the same way everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from hdr_dist.common.errors import SettingError

SPECIAL = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
    stat.S_IFSOCK: "a socket",
}


def special(mode: int) -> str | None:
    """Why a file that is not a regular file is refused, unopened: reading a FIFO or a device blocks
    for ever or never ends."""
    kind = SPECIAL.get(stat.S_IFMT(mode))
    return f"not a regular file ({kind}): not opened" if kind else None


def size_of(location: str) -> int:
    """A file's size in bytes, here or behind a URI, without reading it; a local file that is not a
    regular file (a FIFO, a device) is refused with ``ValueError``, as reading it would never end."""
    if not is_uri(location):
        st = os.stat(location)
        if why := special(st.st_mode):
            raise ValueError(why)
        return st.st_size
    fs, path = filesystem(location)
    return fs.get_file_info(path).size


def is_uri(path: str) -> bool:
    """s3://bucket/key, gs://..., file:///..., as opposed to a path on this machine."""
    return "://" in path


def filesystem(location: str):
    """The pyarrow filesystem of a folder or a URI, and the path within it."""
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(location if is_uri(location) else Path(location).resolve().as_uri())


def read_bytes(location: str) -> bytes:
    """A whole file, from this machine or from a URI."""
    if not is_uri(location):
        return Path(location).read_bytes()
    fs, path = filesystem(location)
    with fs.open_input_file(path) as f:
        return f.read()


def write_bytes(location: str, data: bytes) -> None:
    """A whole file, replaced whole: written beside it, then renamed over it (here), or one upload (a URI)."""
    if not is_uri(location):
        tmp = Path(f"{location}.tmp")
        tmp.write_bytes(data)
        tmp.replace(location)
        return
    fs, path = filesystem(location)
    with fs.open_output_stream(path) as f:
        f.write(data)


def prepare_output(path: str) -> Path:
    """``--output``, made and proven writable before any work starts."""
    out = Path(path).expanduser().resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".hdr-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise SettingError("output", out, f"cannot write there ({e.strerror or e})") from None
    return out


def storage_location(flag: str | None, default: Path) -> str:
    """``--storage-path`` as Ray wants it: a URI as given, a folder made absolute."""
    if flag is None:
        return str(default)
    return flag if is_uri(flag) else str(Path(flag).expanduser().resolve())


def shared_locations(storage_flag: str | None, output: Path, storage: str) -> dict[str, str]:
    """The setting that chose the checkpoint storage (``storage_path``, else ``output``), and where it
    is: what every node must reach, as ``cluster.require_shared`` takes it."""
    return {"storage_path": storage} if storage_flag else {"output": str(output)}


def run_name(prefix: str, settings: dict) -> str:
    """Same settings -> same name -> Ray resumes that run; changed settings start a new one."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{prefix}-{digest}"
