"""``python -m hdr_dist.train``: train one model without Ray (``hdr_dist.jobs.train``), by its old name."""

from hdr_dist.jobs.train import main

if __name__ == "__main__":
    raise SystemExit(main())
