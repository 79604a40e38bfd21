"""The review queue of a forms output: every field the reject option (or an error) sent to people, least
confident first, in ``review/queue.parquet``, and ``review/review.html`` for the first ``--review-rows``:
each field's zone as the model read it (the form dropped out) and a thumbnail of its page with the zone
outlined. The page saves the corrections as ``path,page,field,label``, which ``--labels`` reads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from hdr_dist.bulk import labels, outputs, reading
from hdr_dist.forms import registration, zones
from hdr_dist.forms.records import FIELDS_SCHEMA
from hdr_dist.forms.template import Template
from hdr_dist.inference import readers
from hdr_dist.review import page as review_page
from hdr_dist.review.queue import FOLDER, QUEUE_FILE, png

THUMBNAIL_PX = 240
COLUMNS = ("path", "page", "field")
QUEUE_SCHEMA = pa.schema([("path", pa.string()), ("pages", pa.int32()), *FIELDS_SCHEMA])


def queue(folder: Path, forms_folder: Path) -> pa.Table:
    """The fields to review, least confident first, errors after them; with each row's page count."""
    files = outputs.prediction_files(folder)
    if not files:
        return QUEUE_SCHEMA.empty_table()
    rows = pads.dataset(files, format="parquet", schema=FIELDS_SCHEMA).to_table()
    rows = rows.filter(pc.equal(rows["decision"], "review"))
    where = [
        ("source", "ascending"),
        ("member", "ascending"),
        ("occurrence", "ascending"),
        ("page", "ascending"),
        ("field", "ascending"),
    ]
    rows = pa.concat_tables(
        [
            rows.filter(rows["confidence"].is_valid()).sort_by([("confidence", "ascending"), *where]),
            rows.filter(rows["confidence"].is_null()).sort_by(where),
        ]
    )
    pages = (
        pads.dataset(outputs.prediction_files(forms_folder), format="parquet")
        .to_table(columns=["source", "member", "occurrence", "pages"])
        .to_pylist()
    )
    count = {(p["source"], p["member"], p["occurrence"] or 0): p["pages"] for p in pages}
    paths = [labels.absolute(s, m) for s, m in zip(rows["source"].to_pylist(), rows["member"].to_pylist())]
    page_counts = [
        count.get((s, m, o or 0), 1)
        for s, m, o in zip(
            rows["source"].to_pylist(), rows["member"].to_pylist(), rows["occurrence"].to_pylist()
        )
    ]
    return (
        rows.add_column(0, "pages", pa.array(page_counts, pa.int32()))
        .add_column(0, "path", pa.array(paths, pa.string()))
        .cast(QUEUE_SCHEMA)
    )


def pictures(
    gray, reg: registration.Registration, template: Template, dropout, names: set[str]
) -> dict[str, dict]:
    """A page's pictures for each zone of ``names``: the zone as the model read it (the form dropped, on
    the reference's pixels) and the page's thumbnail with the zone outlined where registration found it."""
    if gray.dtype != np.uint8:
        gray = (np.clip(gray, 0, 1) * 255).round().astype(np.uint8)
    look = dropout.look(gray, reg.matrix)
    small = Image.fromarray(gray).convert("RGB")
    small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    factor = small.width / gray.shape[1]
    out = {}
    for zone in (z for z in template.zones if z.name in names):
        part = zones.region_of(gray, reg.matrix, zone.box, look.fill)  # the zone alone, as the page warped
        crop = dropout.apply(part, zone.box, look.paper)
        thumb = small.copy()
        bx, by, bw, bh = (v * factor for v in zones.page_box(zone, reg))
        ImageDraw.Draw(thumb).rectangle((bx, by, bx + bw, by + bh), outline=(220, 0, 0), width=2)
        out[zone.name] = {
            "crop": png(crop, level=1),
            "original": png(np.asarray(thumb.convert("L")), level=1),
        }
    return out


def registrations(forms_folder: Path) -> dict[tuple, registration.Registration]:
    """(source, member, occurrence, page) -> the registration its form row stores, for every matched page."""
    rows = (
        pads.dataset(outputs.prediction_files(forms_folder), format="parquet")
        .to_table(columns=["source", "member", "occurrence", "page", "registration", "error"])
        .to_pylist()
    )
    return {
        (r["source"], r["member"], r["occurrence"] or 0, r["page"]): registration.from_row(r["registration"])
        for r in rows
        if r["error"] is None and r["registration"] is not None
    }


def write(work: Path, output: Path, template_path: str, cfg, model_name: str) -> dict:
    """The queue and its page in ``work/review``; what summary.json says about them."""
    template, _, dropout = zones.prepared_template(template_path, cfg.dropout)
    folder = work / FOLDER
    folder.mkdir(exist_ok=True)
    rows = queue(work / "fields", work / "forms")
    pq.write_table(rows, folder / QUEUE_FILE)
    shown = rows.slice(0, cfg.review_rows).to_pylist()
    found_at = registrations(work / "forms") if shown else {}
    names: dict[tuple, set[str]] = {}
    for r in shown:
        names.setdefault((r["source"], r["member"], r["occurrence"] or 0, r["page"]), set()).add(r["field"])
    found = reading.pages_again(
        [r for r in shown if r["box"]],
        cfg.max_pixels,
        lambda key, gray: pictures(gray, found_at[key], template, dropout, names[key]),
        pdf_width=template.size[0],
    )
    for r in shown:
        r |= found.get((r["source"], r["member"], r["occurrence"] or 0, r["page"]), {}).get(r["field"], {})
    summary = {
        "model": model_name,
        "threshold": cfg.target_error,
        "threshold_source": cfg.threshold_source,
    }
    html = review_page.render(
        shown,
        rows.num_rows,
        list("0123456789"),
        summary,
        str(output),
        readers.FIELD,
        COLUMNS,
        item="field",
        job="forms",
    )
    (folder / "review.html").write_text(html, encoding="utf-8")
    return {"review": rows.num_rows, "review_page_rows": len(shown)}
