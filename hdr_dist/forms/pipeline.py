"""The Ray Data stages of ``hdr forms``: read bytes (score's datasource) -> in a pool of CPU actors,
each page decoded, registered to the template, its form dropped and its zones cut and prepared -> in
the pool of inference actors, the digit model reading every comb cell and digit zone and the field
model every free field -> the driver, which commits one row per page and one per field
(``Committer``).

A page's zones travel with it as one row, so a page is read whole by one actor and its fields and its
form row are committed together.
"""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa
import torch

from hdr_dist.bulk import plan, reading
from hdr_dist.bulk.actor import NODE, InferenceActor
from hdr_dist.bulk.inputs import Item
from hdr_dist.common import ray_compat
from hdr_dist.forms import registration, zones
from hdr_dist.forms.config import FormsConfig
from hdr_dist.forms.template import Template, load
from hdr_dist.imaging import images

# Each preparing actor's CPUs: there are as many as fit beside the inference actors (``plan``), 2 on 2
# CPUs. Prepared in a pool of actors rather than in tasks, 500 pages ran at 1.3x the pages/s: Ray Data's
# reservation let one task run at a time, and without it the inference actor starved (docs/decisions.md).
DECODE_CPUS = 0.75
# Ray Data hands a stage's output on in blocks of up to its target size (128 MiB): at that size one
# task prepared every page of a batch, all at the end (docs/decisions.md). Read blocks of 2 files and
# blocks of a few MiB keep the pages streaming on to the inference actors.
FILES_PER_TASK = 2
BLOCK_BYTES = 2 * 2**20
PAGE_ROWS = 8  # pages per table a task yields: a TIFF of 10,000 pages is never one table
REGISTRATION = pa.struct(
    [
        ("score", pa.float32()),
        ("rotation", pa.float32()),
        ("scale", pa.float32()),
        ("shift_x", pa.float32()),
        ("shift_y", pa.float32()),
    ]
)
READ = pa.struct(
    [
        ("zone", pa.int32()),
        ("cell", pa.int32()),
        ("image", pa.binary()),
        ("empty", pa.bool_()),
        ("error", pa.string()),
    ]
)
PAGE_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("member", pa.string()),
        ("occurrence", pa.int32()),
        ("page", pa.int32()),
        ("pages", pa.int32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("error", pa.string()),
        ("registration", REGISTRATION),
        ("boxes", pa.list_(pa.list_(pa.int32()))),
        ("reads", pa.list_(READ)),
    ]
)
FIELD = pa.struct(
    [
        ("field", pa.string()),
        ("kind", pa.string()),
        ("text", pa.string()),
        ("char_confidences", pa.list_(pa.float32())),
        ("confidence", pa.float32()),
        ("decision", pa.string()),
        ("error", pa.string()),
        ("box", pa.list_(pa.int32())),
    ]
)
# What the actors answer: a page's own columns, its decision, and its fields.
ANSWER_SCHEMA = pa.schema(
    [
        *[f for f in PAGE_SCHEMA if f.name not in ("reads", "boxes")],
        ("template", pa.string()),
        ("decision", pa.string()),
        ("fields", pa.list_(FIELD)),
        (NODE, pa.string()),
    ]
)


def prepare_batch(batch: pa.Table, template_path: str, dropout: str, max_pixels: int):
    """Read rows (one per file) -> one row per page: registered, its zones prepared (``zones.read_zones``),
    or its error. A page that does not match the template is an error row, and yields no zones."""
    template, reference, drop = zones.prepared_template(template_path, dropout)
    rows: dict[str, list] = {name: [] for name in PAGE_SCHEMA.names}
    for row in batch.to_pylist():
        skip = set(row["skip_pages"] or ())
        pages = (
            [(0, 1, None, None, None, row["error"])]
            if row["error"]
            else images.decode(
                row["data"], max_pixels, pdf_width=template.size[0], colour=drop.how == "colour"
            )
        )
        for page, total, w, h, gray, error in pages:
            if page in skip:
                continue
            found = page_of(gray, error, template, reference, drop)
            for name, value in (
                ("source", row["source"]),
                ("member", row["member"]),
                ("occurrence", row["occurrence"]),
                ("page", page),
                ("pages", total),
                ("width", w),
                ("height", h),
                *found.items(),
            ):
                rows[name].append(value)
        if len(rows["source"]) >= PAGE_ROWS:
            yield pa.Table.from_pydict(rows, schema=PAGE_SCHEMA)
            rows = {name: [] for name in PAGE_SCHEMA.names}
    if rows["source"]:
        yield pa.Table.from_pydict(rows, schema=PAGE_SCHEMA)


def page_of(gray, error, template: Template, reference, drop) -> dict:
    """A decoded page's registration, zone boxes on the page and prepared zones, or its error."""
    empty = {"error": error, "registration": None, "boxes": [], "reads": []}
    if error is not None:
        return empty
    if gray.dtype != np.uint8:  # a 16- or 32-bit scan, on [0, 1]
        gray = (np.clip(gray, 0, 1) * 255).round().astype(np.uint8)
    page, gray = gray, (cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY) if gray.ndim == 3 else gray)
    try:
        reg = registration.register(gray, reference)
    except Exception as e:  # noqa: BLE001 - a page OpenCV cannot take is that page's error
        return empty | {"error": f"cannot register: {type(e).__name__}: {e}"[:300]}
    if not reg.matched:
        return empty | {
            "error": f"does not match template {template.name} (score {reg.score:.2f})",
            "registration": reg.as_dict(),
        }
    reads = zones.read_zones(page, template, drop, reg.matrix)
    return {
        "error": None,
        "registration": reg.as_dict(),
        "boxes": [zones.page_box(z, reg) for z in template.zones],
        "reads": [r.__dict__ for r in reads],
    }


class PagePreparer:
    """One per preparing actor: the template, its reference's features and its print made once, then
    batch after batch of files decoded, registered and cut (``prepare_batch``)."""

    def __init__(self, template_path: str, dropout: str, max_pixels: int):
        self.settings = {"template_path": template_path, "dropout": dropout, "max_pixels": max_pixels}
        zones.prepared_template(template_path, dropout)

    def __call__(self, batch: pa.Table):
        yield from prepare_batch(batch, **self.settings)


class FormReader(InferenceActor):
    """One per inference actor: the digit model and the field model, loaded once, reading batch after
    batch of pages; every answer is decided against its zone's threshold."""

    def __init__(self, digit_state, field_state, template_path: str, cfg: FormsConfig):
        super().__init__(cfg.use_gpu, cfg.threads)
        self.template = load(template_path)
        self.cfg = cfg
        self.digit = self.load(digit_state) if digit_state else None
        self.field = self.load(field_state) if field_state else None

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        pages = batch.to_pylist()
        digits = self.read_digits([r for p in pages for r in p["reads"] if self.kind(r) != "field" and ok(r)])
        fields = self.read_fields([r for p in pages for r in p["reads"] if self.kind(r) == "field" and ok(r)])
        out = [self.answer(p, digits, fields) for p in pages]
        return pa.Table.from_pylist(out, schema=ANSWER_SCHEMA)

    def kind(self, read: dict) -> str:
        return self.template.zones[read["zone"]].kind

    def read_digits(self, reads: list[dict]) -> dict[int, tuple[str, float]]:
        """id(read) -> (its digit, its calibrated confidence)."""
        if not reads:
            return {}
        m = self.digit
        x = np.stack([np.frombuffer(r["image"], np.uint8).reshape(28, 28) for r in reads])
        return dict(zip(map(id, reads), m.reader.read(m.model, x, m.cfg, m.temperature, self.device)))

    def read_fields(self, reads: list[dict]) -> dict[int, tuple[str, list[float], float]]:
        """id(read) -> (its digit string, each digit's confidence, the string's calibrated probability);
        a field of known length decoded under it."""
        if not reads:
            return {}
        m = self.field
        strips = [images.strip_of(r["image"]) for r in reads]
        logits = m.reader.step_logits(m.model, strips, m.cfg.mean, m.cfg.std, self.device)
        zones_of = [self.template.zones[r["zone"]] for r in reads]
        lengths = [z.length if self.cfg.length_constraint else None for z in zones_of]
        return dict(zip(map(id, reads), m.reader.read(logits, m.temperature, list(m.cfg.labels), lengths)))

    def answer(self, page: dict, digits: dict, fields: dict) -> dict:
        """A page's row: its fields, each with its text, confidence and decision; accept when all are."""
        base = {k: page[k] for k in ANSWER_SCHEMA.names if k in page} | {
            "template": self.template.name,
            NODE: self.node,
        }
        if page["error"] is not None:
            return base | {"decision": "review", "fields": []}
        by_zone: dict[int, list[dict]] = {}
        for r in page["reads"]:
            by_zone.setdefault(r["zone"], []).append(r)
        answers = [
            zone_answer(
                z, by_zone.get(i, []), digits, fields, self.cfg.thresholds[i] if self.cfg.thresholds else None
            )
            | {"box": page["boxes"][i]}
            for i, z in enumerate(self.template.zones)
        ]
        decision = "accept" if all(a["decision"] == "accept" for a in answers) else "review"
        return base | {"decision": decision, "fields": answers}


def ok(read: dict) -> bool:
    return not read["empty"] and read["error"] is None


def zone_answer(zone, reads: list[dict], digits: dict, fields: dict, threshold: float | None) -> dict:
    """A zone's text, confidence and decision. A comb's confidence is the product of its cells', and it
    is accepted when every cell clears the threshold; an empty optional zone reads as "" and is
    accepted; a required one left empty, or a comb with only some cells filled, goes to review."""
    answer = {
        "field": zone.name,
        "kind": zone.kind,
        "text": None,
        "char_confidences": None,
        "confidence": None,
        "decision": "review",
        "error": None,
    }
    failed = [r["error"] for r in reads if r["error"] is not None]
    filled = [r for r in reads if not r["empty"] and r["error"] is None]
    if failed:
        return answer | {"error": failed[0]}
    if not filled:
        return answer | (
            {"text": "", "decision": "accept"} if not zone.required else {"text": "", "error": "empty"}
        )
    if len(filled) < len(reads):
        answer["error"] = f"{len(reads) - len(filled)} of {len(reads)} cells empty"
    if zone.kind == "field":
        text, chars, confidence = fields[id(filled[0])]
    else:
        text = "".join(digits[id(r)][0] for r in filled)
        chars = [digits[id(r)][1] for r in filled]
        confidence = float(np.prod(chars))
    sure = (
        all(c >= threshold for c in ([confidence] if zone.kind == "field" else chars))
        if threshold is not None
        else True
    )
    decision = "accept" if sure and answer["error"] is None and text else "review"
    return answer | {"text": text, "char_confidences": chars, "confidence": confidence, "decision": decision}


def calibration_answers(digit_state, field_state, cfg: FormsConfig, pages) -> list[tuple[str, dict]]:
    """Each field of the calibration pages (``samples.calibration_pages``) as the actors answer it, with
    its true text: the same cutting, models and decoding as a run, on pages no threshold was set on."""
    by_template: dict[str, list] = {}
    for template_path, page, truth in pages:
        by_template.setdefault(str(template_path), []).append((page, truth))
    out = []
    for path, pages_of in by_template.items():
        template, _, drop = zones.prepared_template(path, cfg.dropout)
        reader = FormReader(digit_state, field_state, path, cfg)
        boxes = [list(z.box) for z in template.zones]
        # the zones this run has a model for: a form of combs alone is read without a field model
        readable = {
            i for i, z in enumerate(template.zones) if (field_state if z.kind == "field" else digit_state)
        }
        rows = [
            {"source": "", "member": "", "occurrence": 0, "page": i, "pages": 1, "width": 0, "height": 0}
            | {"error": None, "registration": None, "boxes": boxes}
            | {"reads": [r.__dict__ for r in zones.read_zones(page, template, drop) if r.zone in readable]}
            for i, (page, _) in enumerate(pages_of)
        ]
        answers = reader(pa.Table.from_pylist(rows, schema=PAGE_SCHEMA)).to_pylist()
        out += [(truth[f["field"]], f) for (_, truth), a in zip(pages_of, answers) for f in a["fields"]]
    return out


def build(items: list[Item], digit_ref, field_ref, template_path: str, cfg: FormsConfig, nodes: int):
    """The Ray Data plan; nothing runs until the driver pulls its rows. Pages are prepared in a pool of
    ``cfg.decoders`` CPU actors, read in the pool of inference actors."""
    import ray.data

    source = reading.datasource(items, FILES_PER_TASK, FILES_PER_TASK)
    ds = ray.data.read_datasource(
        source,
        num_cpus=0,
        override_num_blocks=len(source.tasks),
        concurrency=min(cfg.read_tasks, len(source.tasks)),
    )
    ray_compat.configure_data_context(ds.context, None, reserve=True, block_bytes=BLOCK_BYTES)
    ds = ds.map_batches(
        PagePreparer,
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=DECODE_CPUS,
        compute=ray.data.ActorPoolStrategy(size=cfg.decoders),
        fn_constructor_kwargs={
            "template_path": template_path,
            "dropout": cfg.dropout,
            "max_pixels": cfg.max_pixels,
        },
    )
    return plan.actor_stage(
        ds,
        FormReader,
        cfg,
        digit_state=[digit_ref] if digit_ref else None,
        field_state=[field_ref] if field_ref else None,
        template_path=template_path,
        cfg=cfg,
    )
