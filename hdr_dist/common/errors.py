"""The one exception type that means "the user gave us something wrong", and the one-line form
every error takes, on the terminal and in an output row.

Commands catch ``UserError`` at the top and print its message as a single line
with a non-zero exit; anything else is a bug and keeps its traceback.

The library never spells a command line: an error names the *setting* that caused it (a config
field, such as ``concurrency``), and the job that took the setting from a flag shows it as that flag
(``UserError.line``). A setting is shown as ``--`` and its name, argparse's own spelling of a
destination, unless the job maps it to another (export's ``model`` is its RESULTS argument).
"""

from __future__ import annotations

import errno
import os
import re
import reprlib
from collections.abc import Mapping

MARK = "\x00"  # no path or name can hold a NUL, so a marked setting is never a user's text
MARKED = re.compile(f"{MARK}([^{MARK}]*){MARK}")
JOB = f"{MARK}job{MARK}"  # the job a message is shown by ("score takes the deep models"), named by it
# A setting's value is most often a path: 255 characters is the longest file name most file systems
# take, so a real path's last part shows whole and a hostile one (a 10 MB name) cannot flood the line.
VALUE_LIMIT = 256
# reprlib walks a nested value no deeper and no wider than this, so showing a value costs at most
# 4 ** 3 leaves however large the value is (a few hundred bytes of YAML aliases expand to hundreds of
# millions of items).
BRIEF = reprlib.Repr()
BRIEF.maxlevel, BRIEF.maxlist, BRIEF.maxtuple, BRIEF.maxdict, BRIEF.maxset = 3, 4, 4, 4, 4
BRIEF.maxfrozenset, BRIEF.maxdeque, BRIEF.maxarray, BRIEF.maxstring, BRIEF.maxother = 4, 4, 4, 40, 40


def setting(name: str) -> str:
    """A setting named inside an error's text; the job shows it as its flag."""
    return f"{MARK}{name}{MARK}"


def flag(name: str) -> str:
    """A setting's flag when the job maps it to no other: argparse's spelling of its destination."""
    return "--" + name.replace("_", "-")


def shown(text: str, flags: Mapping[str, str] | None = None) -> str:
    """A text that names settings (an error, or a warning a job prints), each setting shown as ``flags``
    maps it, else as its flag."""
    flags = flags or {}
    return MARKED.sub(lambda m: flags.get(m[1]) or (m[1] if m[1] == "job" else flag(m[1])), text)


def quoted(value, limit: int = 80, *, plain: bool = False) -> str:
    """A user's value as a message quotes it: at most ``limit`` characters of it, and, when that is not
    all of it, how long the whole is. The value is never shown whole first, so a value too large to show
    (a 10 MB name, a list that YAML aliases expand to billions of items) costs no more than a short one.
    Texts and paths are shown as ``repr`` shows them, or as they are with ``plain``."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, (str, bytes)):
        head = value[:limit]
        text = head if plain and isinstance(head, str) else repr(head)
        if len(value) <= limit:
            return text
        unit = "characters" if isinstance(value, str) else "bytes"
        cut = f"{head}…" if text is head else f"{text[:-1]}…{text[-1]}"
        return f"{cut} ({len(value):,} {unit})"
    try:
        text = BRIEF.repr(value)
    except ValueError:  # an int past Python's 4,300 digits has no repr
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else f"{text[:limit]}…"


class UserError(Exception):
    """A bad flag, path or input file, worded for the person who supplied it."""

    def line(self, flags: Mapping[str, str] | None = None) -> str:
        """The message, each setting it names shown as ``flags`` maps it (else as its flag)."""
        return shown(str(self.args[0]) if self.args else "", flags)

    def __str__(self) -> str:
        return self.line()


class SettingError(UserError):
    """A user error that one setting caused: the setting, the value it was given, and why that value
    cannot be (its reason may name other settings with ``setting``)."""

    def __init__(self, name: str, value, reason: str):
        shown = "" if value is None else f" {quoted(value, VALUE_LIMIT, plain=True)}"
        super().__init__(f"{setting(name)}{shown}: {reason}")
        self.setting, self.value, self.reason = name, value, reason

    def __reduce__(self):
        """Pickled by its parts, so one raised in a Ray task or actor reaches the driver whole."""
        return SettingError, (self.setting, self.value, self.reason)

    def renamed(self, name: str) -> SettingError:
        """The same error, caused by another setting: one call made for two settings (forms' digit and
        field model names) says which of the two it was."""
        return SettingError(name, self.value, self.reason)


def one_line(e: BaseException) -> str:
    """An exception as one line of valid UTF-8: a hostile file's name inside the message must not
    break the terminal or the Parquet write. Messages that say nothing get the exception's type."""
    text = " ".join(str(e).split())
    if len(text) < 4:  # '' or "'a'" (a KeyError) says nothing alone
        text = f"{type(e).__name__}: {text}".rstrip(": ")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:300]


def disk_full(e: BaseException) -> bool:
    """Whether ``e`` says the disk is full: an OSError with ENOSPC (or EDQUOT, a quota), or pyarrow's
    OSError, which carries the errno only in its message."""
    return isinstance(e, OSError) and (
        e.errno in (errno.ENOSPC, errno.EDQUOT)
        or "No space left on device" in str(e)
        or "Disk quota exceeded" in str(e)
    )
