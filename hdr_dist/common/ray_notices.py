"""Ray's notices that are not about the user's run, kept off the terminal and written to a log file.

Ray streams every worker's and actor's stderr to the driver's ``sys.stderr``, one line at a time,
each prefixed with the process it came from: ``(TrainController pid=123) ...``. Two kinds of line
read as failures of the user's run and are not:

- Ray Train's controller starts a ``PreemptionWatcher`` actor whose restart Ray's core worker warns
  about on every run (``core_worker.cc: ... max_restarts > 0``);
- when the CPUs are busy, Train's autoscaling coordinator logs a whole traceback that its own message
  calls "safe to ignore".

The job's ``main`` wraps its ``sys.stderr`` in ``Filtered``: those lines, with the traceback that
follows them from the same process, go to the log file in full, and the terminal gets at most one
explained line per kind. Every other line, Ray's real warnings included, passes through unchanged.
The patterns follow Ray's wording: ``tests/test_ray_notices.py`` holds real lines of each kind.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

LOG_FILE = "ray-notices.log"
_PREFIXED = re.compile(r"^(?:\x1b\[[0-9;]*m)?\((?P<who>[^)]*)\)(?:\x1b\[[0-9;]*m)? ?(?P<message>.*)$", re.S)
# What follows a logged exception from the same process: the traceback and the exception's own line.
_TRACEBACK = re.compile(
    r"^(?:$|\s|Traceback \(most recent call last\)|During handling of the above|"
    r"The above exception|[A-Za-z_][\w.]*(?:Error|Exception)\b)"
)


@dataclass(frozen=True)
class Notice:
    marker: str  # a phrase of Ray's line that says which notice it is
    says: str | None  # the one line the terminal gets instead (None: nothing)


NOTICES = (
    Notice("has constructor arguments in the object store and max_restarts > 0", None),
    Notice(
        "it's safe to ignore this error",
        "Ray Train's autoscaling coordinator timed out while the CPUs were busy; "
        "Ray calls this safe to ignore",
    ),
)


class Filtered(io.TextIOBase):
    """A text stream that passes lines on to ``stream``, except Ray's notices, which go to ``log``."""

    def __init__(self, stream, log: Path):
        super().__init__()
        self.stream, self.log = stream, log
        self.partial = ""
        self.following: str | None = None  # the process whose notice's traceback is still coming
        self.said: set[str] = set()
        self.lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self.lock:
            lines = (self.partial + text).split("\n")
            self.partial = lines.pop()
            for line in lines:
                self.route(line)
        return len(text)

    def flush(self) -> None:
        with self.lock:
            if self.partial:  # a line written in parts: what is here so far shows now
                self.stream.write(self.partial)
                self.partial = ""
            self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", "utf-8")

    def route(self, line: str) -> None:
        found = _PREFIXED.match(line)
        if found is None:
            self.following = None
            self.stream.write(line + "\n")
            return
        who, message = found["who"], found["message"]
        notice = next((n for n in NOTICES if n.marker in message), None)
        if notice is None and not (who == self.following and _TRACEBACK.match(message)):
            self.following = None
            self.stream.write(line + "\n")
            return
        self.following = who
        with self.log.open("a", encoding="utf-8") as f:
            f.write(f"({who}) {message}\n")
        if notice is not None and notice.says and notice.marker not in self.said:
            self.said.add(notice.marker)
            self.stream.write(f"note: {notice.says}; Ray's own lines are in {self.log}\n")


@contextlib.contextmanager
def kept_off_the_terminal(log: Path):
    """``sys.stderr`` filtered for the duration: Ray's driver prints the lines it streams to whatever
    ``sys.stderr`` is when each arrives."""
    before = sys.stderr
    sys.stderr = Filtered(before, log)
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = before
