"""True labels of a forms run, and what they measure: the labels file ``path,page,field,label`` (``path`` as
``score --labels`` names an image; ``label`` the digit string, empty for an empty zone), matched to the
field rows exactly, and the metrics over them, per zone and per kind of zone, and whole forms."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from hdr_dist.bulk import labels
from hdr_dist.bulk.inputs import Item
from hdr_dist.common.errors import SettingError, UserError, one_line, quoted
from hdr_dist.common.names import tidy
from hdr_dist.forms.template import Template
from hdr_dist.inference import calibration, ctc

COLUMNS = ("path", "page", "field", "label")
METRICS_SCHEMA = pa.schema(
    [
        ("group", pa.string()),
        ("name", pa.string()),
        ("fields", pa.int64()),
        ("field_accuracy", pa.float64()),
        ("cer", pa.float64()),
        ("accepted", pa.int64()),
        ("accepted_coverage", pa.float64()),
        ("accepted_error", pa.float64()),
    ]
)


def read(path: str, template: Template, items: list[Item]) -> tuple[dict[tuple, str], dict]:
    """(source, member, occurrence, page, field) -> its true digit string; and the file's problems, each
    kind with its first paths (reported as score reports a labels file's). Cells are read as
    ``labels.uncell`` reads them: the review page writes its corrections as forms.csv is written."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SettingError("labels", path, "no such file")
    try:
        with file.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not set(COLUMNS) <= set(reader.fieldnames or ()):
                raise SettingError(
                    "labels",
                    path,
                    f"needs a header line '{','.join(COLUMNS)}', has {quoted(reader.fieldnames)}",
                )
            rows = [tuple(labels.uncell(r[c] or "") for c in COLUMNS) for r in reader]
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - unreadable, not UTF-8: the user's --labels
        raise SettingError("labels", path, f"unreadable ({one_line(e)})") from None
    rows = [(tidy(p), page, field, label) for p, page, field, label in rows]
    zones = {z.name for z in template.zones}
    bad = sorted({f for _, _, f, _ in rows if f not in zones})
    if bad:
        raise SettingError(
            "labels",
            path,
            f"fields the template {template.name} does not have: " + ", ".join(quoted(b) for b in bad[:5]),
        )
    bad = sorted({lab for *_, lab in rows if lab and not lab.isdigit()})
    if bad:
        raise SettingError(
            "labels", path, "labels that are not digit strings: " + ", ".join(quoted(b) for b in bad[:5])
        )
    resolve = labels.resolver(items)
    truth: dict[tuple, set] = defaultdict(set)
    problems: dict[str, list[str]] = defaultdict(list)
    for p, page, field, label in rows:
        hits, problem = resolve(p)
        if problem or not page.isdigit():
            problems[problem or "rows whose page is not a number"].append(p)
            continue
        for i in hits:
            it = items[i]
            truth[(it.source, it.member, it.occurrence, int(page), field)].add(label)
    found = {}
    for key, given in truth.items():
        if len(given) == 1:
            found[key] = next(iter(given))
        else:
            problems["fields given two labels (left unlabelled)"].append(labels.absolute(key[0], key[1]))
    return found, {k: sorted(set(v)) for k, v in problems.items()}


def metrics(fields: list[dict], truth: dict[tuple, str], template: Template) -> tuple[list[dict], dict]:
    """Per zone, per kind and over all labelled fields: exact accuracy, CER, accepted count, coverage and
    the error among the accepted; and the share of labelled forms read entirely right."""
    groups: dict[tuple[str, str], list[tuple[str, str, bool]]] = defaultdict(list)
    forms: dict[tuple, list[bool]] = defaultdict(list)
    kinds = {z.name: z.kind for z in template.zones}
    for f in fields:
        key = (f["source"], f["member"], f["occurrence"], f["page"], f["field"])
        if key not in truth:
            continue
        read, true, accepted = f["text"] or "", truth[key], f["decision"] == "accept"
        for group in (("field", f["field"]), ("kind", kinds[f["field"]]), ("all", "all")):
            groups[group].append((true, read, accepted))
        forms[key[:4]].append(true == read)
    rows = []
    for (group, name), answers in sorted(groups.items()):
        true, read, took = zip(*answers)
        found = ctc.field_metrics(list(true), list(read))
        right, took = np.array([t == r for t, r in zip(true, read)]), np.array(took)
        rows.append(
            {
                "group": group,
                "name": name,
                "fields": len(true),
                "field_accuracy": found["field_accuracy"],
                "cer": found["cer"],
                "accepted": int(took.sum()),
                "accepted_coverage": float(took.mean()),
                "accepted_error": float((~right[took]).mean()) if took.any() else 0.0,
            }
        )
    whole = [all(v) for v in forms.values()]
    return rows, {"labelled_forms": len(whole), "forms_read_right": float(np.mean(whole)) if whole else None}


def calibration_curves(answers: list[tuple[str, dict]]) -> tuple[dict, dict, int, int]:
    """The risk-coverage curves the reject option reads its thresholds off, from labelled answers of
    form pages: one over comb cells and digit zones (a cell's confidence, and whether its digit is the
    truth's in its place), one over free fields (a field's confidence, and whether it reads exactly).
    A zone left empty, or read with an error, says nothing about a confidence and is left out."""
    cells, fields = [], []
    for want, f in answers:
        if not want or f["error"] is not None or f["confidence"] is None:
            continue
        if f["kind"] == "field":
            fields.append((f["confidence"], f["text"] == want))
        elif len(f["text"]) == len(want):
            cells += [(c, a == b) for c, a, b in zip(f["char_confidences"], f["text"], want)]
    curve = calibration.risk_coverage
    return (
        curve(np.array([c for c, _ in cells]), np.array([r for _, r in cells], bool)),
        curve(np.array([c for c, _ in fields]), np.array([r for _, r in fields], bool)),
        len(cells),
        len(fields),
    )
