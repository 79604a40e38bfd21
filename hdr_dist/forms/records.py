"""The records a forms run writes: ``fields/*.parquet``, one row per page and zone, and
``forms/*.parquet``, one row per page with a column of text per zone; both made from the actors'
answers (one row per page, its fields nested), in the same committed piece."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from hdr_dist.forms.pipeline import FIELD, REGISTRATION
from hdr_dist.forms.template import Template

WHERE = [("source", pa.string()), ("member", pa.string()), ("occurrence", pa.int32()), ("page", pa.int32())]
# A row per zone: where its page came from, and the field as the actors answer it (``pipeline.FIELD``).
FIELDS_SCHEMA = pa.schema([*WHERE, *FIELD])
# A form row's own columns; one text column per zone follows, named after it (``forms_schema``).
FORM_COLUMNS = [
    *WHERE,
    ("pages", pa.int32()),
    ("template", pa.string()),
    ("registration", REGISTRATION),
    ("decision", pa.string()),
    ("error", pa.string()),
]


def forms_schema(template: Template) -> pa.Schema:
    return pa.schema([*FORM_COLUMNS, *[(f"field_{z.name}", pa.string()) for z in template.zones]])


def fields_of(answers: pa.Table) -> pa.Table:
    """One row per page and zone (a page that matched no template has none)."""
    nested = answers.column("fields").combine_chunks()
    parents = pc.list_parent_indices(nested)
    flat = pc.list_flatten(nested)
    columns = {name: answers.column(name).take(parents) for name, _ in WHERE}
    columns |= {name: flat.field(name) for name in FIELDS_SCHEMA.names if name not in columns}
    return pa.table(columns, schema=FIELDS_SCHEMA)


def forms_of(template: Template):
    """The function that makes the form rows of a template's answers (for ``Committer``)."""
    schema = forms_schema(template)

    def forms(answers: pa.Table) -> pa.Table:
        rows = answers.select([name for name, _ in FORM_COLUMNS]).to_pydict()
        texts = {f"field_{z.name}": [] for z in template.zones}
        for fields in answers.column("fields").to_pylist():
            got = {f["field"]: f["text"] for f in fields}
            for z in template.zones:
                texts[f"field_{z.name}"].append(got.get(z.name))
        return pa.table(rows | texts, schema=schema)

    return forms
