"""The ``hdr`` console script, and what every job's command line shares.

Each job module (``compare``, ``score``) has its own ``parser`` and ``main``;
this module holds the pieces they share: one-line errors for bad flags, the
way a job finds its Ray cluster, and the console it prints to.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import sys

from rich.console import Console

from hdr_dist.errors import UserError

COMMANDS = ("compare", "score", "tune", "report")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr, like every other user error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def connect(address: str | None, log_to_driver: bool = True) -> None:
    """Join ``--address`` or RAY_ADDRESS (set by ``ray job submit``); otherwise start a private local Ray.

    Without an address Ray would also try the last cluster ``ray start`` left on this
    machine and hang if it is gone, so a plain local run asks for ``"local"``;
    ``--address auto`` joins a running ``ray start`` cluster on purpose.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    host, _, port = address.rpartition(":")
    if port.isdigit() and "://" not in address:  # a GCS host:port; Ray itself would retry for minutes
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as e:
            raise UserError(f"--address {address}: no Ray cluster answers there ({e.strerror or e})") from None
    ray.init(address=address, logging_level="WARNING", log_to_driver=log_to_driver)


def console() -> Console:
    """Rich's console, wide enough for the results table when output goes to a log or a job."""
    c = Console()
    return c if c.is_terminal else Console(width=160)


def run_job(run, args, prog: str, resume_hint: str) -> int:
    """A job's ``run(args, console)``, with a user mistake as one line (status 2) and Ctrl-C as
    the hint to resume (status 130), never a traceback."""
    try:
        return run(args, console())
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {resume_hint}", file=sys.stderr)
        return 130


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: hdr {{{','.join(COMMANDS)}}} [flags]  (hdr COMMAND --help for its flags)",
              file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    job = importlib.import_module(f"hdr_dist.{argv[0]}")
    return job.main(argv[1:], prog=f"hdr {argv[0]}")


if __name__ == "__main__":
    raise SystemExit(main())
