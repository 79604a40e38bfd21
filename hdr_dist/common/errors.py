"""The one exception type that means "the user gave us something wrong", and the one-line form
every error takes, on the terminal and in an output row.

Commands catch ``UserError`` at the top and print its message as a single line
with a non-zero exit; anything else is a bug and keeps its traceback.
"""

import errno


class UserError(Exception):
    """A bad flag, path or input file, worded for the person who supplied it."""


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
