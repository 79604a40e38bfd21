"""The ``hdr`` console script, and the one way every job runs from a command line.

Each job module (``compare``, ``tune``, ``score``, ``forms``, ``report``, ``export``, ``models``) has its
own ``parser`` and ``main``; this module finds the job a command names, and runs it the same way
for every job: the console it prints to, a user mistake as one line, Ctrl-C as
the hint to resume.
"""

from __future__ import annotations

import importlib
import sys

from rich.console import Console

from hdr_dist.common.errors import UserError

COMMANDS = ("compare", "score", "forms", "tune", "report", "export", "models")


def job_console() -> Console:
    """Rich's console, wide enough for the results table when output goes to a log or a job."""
    c = Console()
    return c if c.is_terminal else Console(width=160)


def run_job(run, args, prog: str, resume_hint: str, flags: dict[str, str] | None = None) -> int:
    """A job's ``run(args, console)``, with a user mistake as one line (status 2) and Ctrl-C as
    the hint to resume (status 130), never a traceback. ``flags`` maps the settings whose flag is not
    ``--`` and their name (``errors.flag``) to what this job calls them."""
    try:
        return run(args, job_console())
    except UserError as e:
        shown = {"job": run.__module__.rsplit(".", 1)[-1]} | (flags or {})
        print(f"{prog}: error: {e.line(shown)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {resume_hint}", file=sys.stderr)
        return 130


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(
            f"usage: hdr {{{','.join(COMMANDS)}}} [flags]  (hdr COMMAND --help for its flags)",
            file=sys.stderr,
        )
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    job = importlib.import_module(f"hdr_dist.jobs.{argv[0]}")
    return job.main(argv[1:], prog=f"hdr {argv[0]}")


if __name__ == "__main__":
    raise SystemExit(main())
