"""The ``hdr`` console script: one subcommand per job."""

from __future__ import annotations

import sys

from hdr_dist import compare

COMMANDS = {"compare": compare.main}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: hdr {{{','.join(COMMANDS)}}} [flags]  (hdr COMMAND --help for its flags)",
              file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:], prog=f"hdr {argv[0]}")


if __name__ == "__main__":
    raise SystemExit(main())
