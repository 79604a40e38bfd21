"""The review queue of a ``score`` output: ``review/queue.parquet``, every row the reject option
(or an error) sent to people, least confident first, and ``review/review.html`` for the first
``--review-rows`` of them.

The page shows each image twice: the 28x28 crop the model saw and the original.
Neither is kept in the predictions (millions of rows, almost all accepted); the
queue's images are read again from the inputs, through the same reading and
decoding code scoring used, so the crop is the model's input to the pixel and a
hostile file is as harmless here as it was there.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from PIL import Image

from hdr_dist.bulk import labels, outputs, reading
from hdr_dist.common import tables
from hdr_dist.review import page

FOLDER = "review"
QUEUE_FILE = "queue.parquet"
# path: what a --labels file names the image by (labels.absolute), so a correction reads back as it is.
QUEUE_SCHEMA = pa.schema([("path", pa.string()), *tables.PREDICTION_SCHEMA])
ORIGINAL_PX = 160  # the original, shrunk to fit this square on the page


def queue(folder: Path) -> pa.Table:
    """The rows to review, least confident first; errors, which have no confidence, after them."""
    files = outputs.prediction_files(folder)
    if not files:
        return QUEUE_SCHEMA.empty_table()
    rows = pads.dataset(files, format="parquet", schema=tables.PREDICTION_SCHEMA).to_table()
    rows = rows.filter(pc.or_kleene(pc.equal(rows["decision"], "review"), rows["error"].is_valid()))
    where = [
        ("source", "ascending"),
        ("member", "ascending"),
        ("occurrence", "ascending"),
        ("page", "ascending"),
    ]
    scored = rows.filter(rows["confidence"].is_valid()).sort_by([("confidence", "ascending"), *where])
    rows = pa.concat_tables([scored, rows.filter(rows["confidence"].is_null()).sort_by(where)])
    paths = [labels.absolute(s, m) for s, m in zip(rows["source"].to_pylist(), rows["member"].to_pylist())]
    return rows.add_column(0, "path", pa.array(paths, pa.string())).cast(QUEUE_SCHEMA)


def png(gray: np.ndarray, level: int | None = None) -> bytes:
    """PNG bytes, smallest by default; ``level`` 1 for large scanned pictures, whose paper noise costs
    zlib's best effort 47 ms a 780x140 crop for 14 % fewer bytes than level 1's 4 ms."""
    out = io.BytesIO()
    Image.fromarray(gray, "L").save(
        out, "PNG", **({"optimize": True} if level is None else {"compress_level": level})
    )
    return out.getvalue()


def pictures(gray, reader) -> dict:
    """A decoded page -> the PNGs the page shows: what the model saw (``page.Shown.picture``: the 28x28
    crop, or a field model's strip), and the original, shrunk."""
    seen, error = reader.preparation.prepare(gray)
    if gray.dtype != np.uint8:  # a 16- or 32-bit scan, on [0, 1]
        gray = (np.clip(gray, 0, 1) * 255).round().astype(np.uint8)
    original = Image.fromarray(gray, "L")
    original.thumbnail((ORIGINAL_PX, ORIGINAL_PX))
    seen_png = None if error else png(page.SHOWN[reader.kind].picture(seen))
    return {"crop": seen_png, "original": png(np.asarray(original))}


def write(work: Path, output: Path, model, cfg, reader) -> dict:
    """Write the queue and its page into ``work/review``; what summary.json says about them. ``model``
    is the checkpoint's ``TrainConfig``, ``cfg`` the run's ``ScoreConfig``, ``reader`` the model's."""
    folder = work / FOLDER
    folder.mkdir(exist_ok=True)
    rows = queue(work / "predictions")
    pq.write_table(rows, folder / QUEUE_FILE)
    shown = rows.slice(0, cfg.review_rows).to_pylist()
    # A row without a size never got past its header (not an image, unreadable, an unsafe member):
    # there is nothing to picture, and an archive of a million such members is not walked again.
    found = reading.pages_again(
        [r for r in shown if r["width"] is not None], cfg.max_pixels, lambda _, gray: pictures(gray, reader)
    )
    for r in shown:
        r |= found.get((r["source"], r["member"], r["occurrence"] or 0, r["page"]), {})
    html = page.render(
        shown,
        rows.num_rows,
        list(model.labels),
        {"model": model.model, **cfg.rule},
        str(output),
        reader,
        item="image",
        job="score",
    )
    (folder / "review.html").write_text(html, encoding="utf-8")
    return {"review": rows.num_rows, "review_page_rows": len(shown)}
