"""How a forms output ends: counts over every committed row (this run's and a resumed one's alike),
``forms.csv`` for the systems these teams load, the metrics when labels are known, ``summary.json``, and
the rename that marks the output complete."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from hdr_dist.bulk import labels, outputs
from hdr_dist.bulk.driver import ThisRun
from hdr_dist.common.names import escape
from hdr_dist.forms import truth
from hdr_dist.forms.records import FIELDS_SCHEMA
from hdr_dist.forms.template import Template

UNMATCHED = "does not match template"


def table(folder: Path, schema: pa.Schema | None = None) -> pa.Table:
    files = outputs.prediction_files(folder)
    if not files:
        return (schema or FIELDS_SCHEMA).empty_table()
    return pads.dataset(files, format="parquet", schema=schema).to_table()


def counts(forms: pa.Table, fields: pa.Table) -> dict:
    error = forms["error"]
    unmatched = pc.sum(pc.starts_with(pc.fill_null(error, ""), UNMATCHED)).as_py() or 0
    failed = (pc.sum(error.is_valid()).as_py() or 0) - unmatched
    return {
        "pages": forms.num_rows,
        "forms_matched": forms.num_rows - unmatched - failed,
        "pages_unmatched": unmatched,
        "pages_failed": failed,
        "forms_accepted": pc.sum(pc.equal(forms["decision"], "accept")).as_py() or 0,
        "fields": fields.num_rows,
        "fields_accepted": pc.sum(pc.equal(fields["decision"], "accept")).as_py() or 0,
        "fields_empty": pc.sum(pc.equal(fields["text"], "")).as_py() or 0,
    }


def write_csv(forms: pa.Table, template: Template, path: Path) -> None:
    """One line per form (page), for a spreadsheet or a database load: where it came from, its decision
    and error, and each zone's text. A text cell is written as ``labels.cell`` writes it, so an archive
    member named ``=HYPERLINK(…)`` is shown by the spreadsheet, never run; the Parquet rows keep it as
    it is."""
    head = ["source", "member", "page", "decision", "error"]
    names = [*head, *[f"field_{z.name}" for z in template.zones]]
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow([labels.cell(n) for n in [*head, *[z.name for z in template.zones]]])
        for row in (
            forms.sort_by(
                [
                    ("source", "ascending"),
                    ("member", "ascending"),
                    ("occurrence", "ascending"),
                    ("page", "ascending"),
                ]
            )
            .select(names)
            .to_pylist()
        ):
            out.writerow([cell(row[n]) for n in names])


def cell(value) -> str | int:
    """A forms.csv cell: a text through ``labels.cell``, as any name may start like a formula; a page
    number cannot, and a null is an empty cell."""
    return "" if value is None else labels.cell(value) if isinstance(value, str) else value


def finish(
    work: Path, output: Path, template: Template, cfg, this_run: ThisRun, labels: dict | None, identity: dict
) -> tuple[dict, list[dict]]:
    """Counts, forms.csv, metrics (with labels), summary.json, then the rename; the summary and the
    metrics rows."""
    from hdr_dist.forms.records import forms_schema

    forms, fields = table(work / "forms", forms_schema(template)), table(work / "fields", FIELDS_SCHEMA)
    found = counts(forms, fields)
    write_csv(forms, template, work / "forms.csv")
    (work / "metrics.parquet").unlink(missing_ok=True)  # a resumed run's is stale
    rows, whole = [], {}
    if labels:
        rows, whole = truth.metrics(fields.to_pylist(), labels, template)
        pq.write_table(pa.Table.from_pylist(rows, schema=truth.METRICS_SCHEMA), work / "metrics.parquet")
    summary = {
        "inputs_seen": this_run.inputs_seen,
        "skipped_already_read": this_run.skipped,
        **found,
        **whole,
        **this_run.rates(found["pages"], "pages", 2),
        **this_run.notes,
        **identity,
        "template": template.name,
        "template_file": str(template.path.resolve()),
        "dropout": cfg.dropout,
        "length_constraint": cfg.length_constraint,
        "target_error": cfg.target_error,
        "thresholds": dict(zip([z.name for z in template.zones], cfg.thresholds)) if cfg.thresholds else None,
        "threshold_source": cfg.threshold_source,
        "inputs": [escape(os.path.realpath(os.path.expanduser(i))) for i in cfg.inputs],
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    work.rename(output)
    return summary, rows
