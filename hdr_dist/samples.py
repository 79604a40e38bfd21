"""``python -m hdr_dist.samples``: scan-like image sets (``hdr_dist.data.samples``), by its old name."""

from hdr_dist.data.samples import main

if __name__ == "__main__":
    raise SystemExit(main())
