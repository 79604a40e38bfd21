"""``python -m hdr_dist.samples``: scan-like image sets (``hdr_dist.jobs.samples``), by its old name."""

from hdr_dist.jobs.samples import main

if __name__ == "__main__":
    raise SystemExit(main())
