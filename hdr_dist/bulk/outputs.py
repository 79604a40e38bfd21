"""A ``score`` OUTPUT folder: never overwritten, never written by two runs at once, resumed only
by the model that began it, and what it already holds.

A run writes into ``OUTPUT.partial`` and renames it to ``OUTPUT`` when complete,
so a crashed run never leaves output that looks finished. ``run.json`` records
which checkpoint (by content) the rows come from, so ``--resume`` cannot mix two
models' answers in one output. A ``.lock`` file inside the folder, held with
``flock`` for the whole run, keeps a second run out; the kernel drops it when
the process ends, however it ends, so a crash leaves no stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq

from hdr_dist.bulk.inputs import Item
from hdr_dist.common.errors import SettingError, disk_full, quoted, setting

LOCK = ".lock"
RUN_FILE = "run.json"
IDENTITY = ("model", "checkpoint", "checkpoint_sha256", "threshold")


def partial_of(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def lock(folder: Path, output: Path) -> int:
    """Hold ``folder``'s lock, or fail in one line if another run holds it; returns the descriptor."""
    try:
        fd = os.open(folder / LOCK, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise SettingError("output", output, f"cannot write there ({e.strerror or e})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SettingError(
            "output",
            output,
            "another hdr score is writing into it now; wait for it to finish, or choose another folder",
        ) from None
    return fd


def recorded_identity(folder: Path) -> dict | None:
    """Which model a folder's rows came from: its run.json, or an older output's summary.json."""
    for name in (RUN_FILE, "summary.json"):
        try:
            record = json.loads((folder / name).read_text())
            return {k: record.get(k) for k in IDENTITY}
        except (OSError, ValueError, AttributeError):
            continue
    return None


def check_identity(folder: Path, identity: dict, output: Path) -> None:
    before = recorded_identity(folder)
    if before is None:
        return
    same = (
        before["checkpoint_sha256"] == identity["checkpoint_sha256"]
        if before["checkpoint_sha256"]
        else (before["model"], before["checkpoint"]) == (identity["model"], identity["checkpoint"])
    )
    if not same and (before["model"], before["checkpoint"]) == (identity["model"], identity["checkpoint"]):
        raise SettingError(
            "output",
            output,
            f"its rows were read by {identity['model']} with another template or other reading settings "
            f"(a checkpoint, the dropout, the calibration); {setting('resume')} would mix two readings. "
            "Choose another folder",
        )
    if not same:
        raise SettingError(
            "output",
            output,
            f"its rows were scored by {quoted(before['model'], plain=True)} "
            f"({quoted(before['checkpoint'], plain=True)}), "
            f"not {identity['model']} ({identity['checkpoint']}); "
            f"{setting('resume')} would mix two models' answers. "
            "Choose another folder",
        )
    if before["threshold"] != identity.get("threshold"):
        raise SettingError(
            "output",
            output,
            f"its rows were decided at threshold {quoted(before['threshold'], plain=True)}, not "
            f"{identity.get('threshold')}; {setting('resume')} would mix two thresholds' decisions. "
            "Choose another folder",
        )


def check_output(output: Path, resume: bool, identity: dict) -> None:
    """Refuse, before anything starts, to overwrite, mix or race with earlier work."""
    work = partial_of(output)
    finished = output.is_dir() and any(output.iterdir())
    if output.exists() and not output.is_dir():
        raise SettingError("output", output, "exists and is not a folder")
    if finished and not (output / "summary.json").is_file():
        raise SettingError(
            "output", output, "exists and is not the output of hdr score; choose another folder"
        )
    for folder in (work, output):
        if folder.is_dir() and (folder / LOCK).exists():
            os.close(lock(folder, output))  # only a probe: fails if a run holds it now
    if not resume:
        if finished:
            raise SettingError(
                "output",
                output,
                f"holds an earlier run's results; pass {setting('resume')} to add to them, "
                "or choose another folder",
            )
        if work.exists():
            raise SettingError(
                "output",
                output,
                f"{work} holds an interrupted run; pass {setting('resume')} to continue it, "
                "or delete it to start over",
            )
    for folder in (work, output):
        if folder.is_dir():
            check_identity(folder, identity, output)


@contextlib.contextmanager
def writing(
    output: Path, resume: bool, identity: dict, folders: tuple[str, ...] = ("predictions",)
) -> Iterator[Path]:
    """The folder this run writes into, locked for the run (``prepare``); a disk that fills up meanwhile
    is the one line that says what was kept (``full``)."""
    work, held = prepare(output, resume, identity, folders)
    try:
        yield work
    except OSError as e:
        if disk_full(e):
            raise full(output) from None
        raise
    finally:
        os.close(held)


def prepare(
    output: Path, resume: bool, identity: dict, folders: tuple[str, ...] = ("predictions",)
) -> tuple[Path, int]:
    """The folder this run writes into, and the lock it holds on it until it closes the descriptor
    (or the process ends). ``check_output`` has already vetted ``output``; this settles races with a
    run started since."""
    work = partial_of(output)
    fd = None
    try:
        if resume and work.is_dir():
            fd = lock(work, output)
            check_identity(work, identity, output)
        elif resume and output.is_dir() and any(output.iterdir()):
            fd = lock(output, output)
            check_identity(output, identity, output)
            output.rename(work)  # from here until the end, the output no longer looks complete
        else:
            if output.exists():
                output.rmdir()
            work.mkdir(parents=True)  # not exist_ok: if it exists, a run that started meanwhile made it
            fd = lock(work, output)
        for name in folders:
            (work / name).mkdir(exist_ok=True)
        (work / RUN_FILE).write_text(json.dumps(identity, indent=2) + "\n")
        return work, fd
    except BaseException as e:
        if fd is not None:
            os.close(fd)
        if isinstance(e, FileExistsError):
            raise SettingError(
                "output", output, "another hdr score started writing into it just now; choose another folder"
            ) from None
        if disk_full(e):
            raise full(output) from None
        if isinstance(e, OSError):
            raise SettingError("output", output, f"cannot write there ({e.strerror or e})") from None
        raise


def full(output: Path) -> SettingError:
    """The one line for a disk that filled up during a run: what was committed stays, and
    ``--resume`` goes on from there."""
    return SettingError(
        "output",
        output,
        f"the disk is full (no space left on device); what was scored so far is "
        f"kept in {partial_of(output)}. Free some space, then run the same command with {setting('resume')} "
        "to continue",
    )


def prediction_files(folder: Path) -> list[Path]:
    """Finished Parquet files. Pieces are committed whole (``committer``), but a file an older
    version's crash cut short is removed (its images are scored again)."""
    files = []
    for f in sorted(folder.glob("*.parquet")):
        try:
            pq.read_metadata(f)
            files.append(f)
        except Exception:  # noqa: BLE001 - truncated by the crash
            f.unlink()
    return files


def already_scored(folder: Path, schema) -> dict[tuple, tuple[int, set]]:
    """(source, member, occurrence) -> (its page count, the pages already in the output)."""
    done: dict[tuple, tuple[int, set]] = {}
    files = prediction_files(folder)
    if not files:
        return done
    # The schema fills in what an older version's files lack (occurrence: null, read as 0).
    columns = ["source", "member", "occurrence", "page", "pages"]
    table = pads.dataset(files, format="parquet", schema=schema).to_table(columns=columns)
    for source, member, occurrence, page, pages in zip(*(table[c].to_pylist() for c in columns)):
        done.setdefault((source, member, occurrence or 0), (pages, set()))[1].add(page)
    return done


def skip_scored(items: list[Item], done: dict) -> tuple[list[Item], int]:
    """The items still to score (a multi-page file that was cut short keeps its missing pages)."""
    todo, skipped = [], 0
    for it in items:
        pages, seen = done.get((it.source, it.member, it.occurrence), (0, set()))
        if pages and len(seen) >= pages:
            skipped += 1
        else:
            todo.append(replace(it, skip_pages=tuple(sorted(seen))) if seen else it)
    return todo, skipped
