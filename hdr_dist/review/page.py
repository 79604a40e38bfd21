"""``review.html``: the review queue as one self-contained page a person works through.

Each row shows the crop the model saw beside the original, the top guesses (a
click takes one), the source and member, and a field for the right label. The
page saves what was typed as a CSV in ``--labels`` format (``path,label``; a cell
that could start a spreadsheet formula quoted as ``bulk.labels.cell`` quotes it), so
scoring again with ``--labels corrections.csv`` reads the corrections back.
Typed labels are also kept in the browser's local storage, so closing the tab
loses no work. Nothing is fetched from anywhere: images are inlined, the script
is the page's own.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass

import numpy as np

from hdr_dist.bulk import labels as csv_labels
from hdr_dist.imaging import images


@dataclass(frozen=True)
class Shown:
    """How the page shows a reader kind's rows: the picture of what the model saw (its CSS class), the
    longest label a person may type, and the rule a label must keep (the page checks it in the browser
    as the reader's ``is_label`` does: one of the classes, or a string of their characters)."""

    kind: str
    picture_class: str
    max_label: int
    label_rule: str

    def picture(self, data: bytes) -> np.ndarray:
        """The prepared image's bytes (the decode stage's) as the picture of what the model saw."""
        if self.kind == "field":
            return (images.strip_of(data) * 255).astype(np.uint8)
        return np.frombuffer(data, np.uint8).reshape(28, 28)

    def guesses(self, row: dict) -> list[tuple[str, float]]:
        """The answers a click takes: a digit model's top labels, a field model's one string."""
        if self.kind == "field":
            return [(row["text"], row["confidence"])]
        return list(zip(row["topk_labels"], row["topk_probs"]))


SHOWN = {
    "digit": Shown("digit", picture_class="crop", max_label=8, label_rule="class"),
    "field": Shown("field", picture_class="strip", max_label=64, label_rule="string"),
}

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:14px;width:100%}td,th{border-bottom:1px solid #ddd;padding:6px;
text-align:left;vertical-align:middle}th{position:sticky;top:0;background:#fff}
td:nth-child(-n+4){width:1%;white-space:nowrap}
img{image-rendering:pixelated;display:block}img.crop{width:84px;height:84px;background:#000}
img.strip{height:48px;background:#000}
img.original{max-width:160px;max-height:160px;min-height:56px;border:1px solid #ccc}
.none{color:#999;font-size:12px}code{font-size:12px;word-break:break-all;color:#555}
button.guess{font-size:15px;margin:2px;min-width:4.5em}button.guess small{color:#666}
input.label{font-size:20px;width:3em;text-align:center}input.label.bad{outline:2px solid #c00}
.error{color:#b00}#bar{position:sticky;bottom:0;background:#f5f5f5;padding:10px;border-top:1px solid #ccc}
#save{font-size:16px}#status{margin-left:1em}"""

SCRIPT = """
const meta = JSON.parse(document.getElementById('meta').textContent);
const known = new Set(meta.labels);
const rows = Array.from(document.querySelectorAll('tr.item'));
const status = document.getElementById('status');
const store = 'hdr-review ' + meta.key;
let saved = {};
try { saved = JSON.parse(localStorage.getItem(store) || '{}'); } catch (e) {}

// A label is one of the model's classes, or (a field model) a string of its characters: reader.label_rule.
const valid = (v) => meta.rule === 'string' ? Array.from(v).every((c) => known.has(c)) : known.has(v);
function field(tr) { return tr.querySelector('input.label'); }
function check(tr) {
  const v = field(tr).value.trim();
  field(tr).classList.toggle('bad', v !== '' && !valid(v));
}
function remember() {
  const typed = {};
  for (const tr of rows) if (field(tr).value.trim()) typed[tr.id] = field(tr).value.trim();
  try { localStorage.setItem(store, JSON.stringify(typed)); } catch (e) {}
  status.textContent = Object.keys(typed).length + ' labelled';
}
rows.forEach((tr, i) => {
  if (saved[tr.id]) field(tr).value = saved[tr.id];
  check(tr);
  field(tr).addEventListener('input', () => { check(tr); remember(); });
  field(tr).addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && rows[i + 1]) { e.preventDefault(); field(rows[i + 1]).focus(); }
  });
  for (const b of tr.querySelectorAll('button.guess')) {
    b.addEventListener('click', () => { field(tr).value = b.dataset.label; check(tr); remember(); });
  }
});

// A cell a spreadsheet shows and never runs as a formula, as labels.cell writes one (labels.uncell reads it).
function cell(s) { return meta.quoted.some((c) => s.startsWith(c)) ? meta.quote + s : s; }
function quoted(s) { return '"' + cell(s).replace(/"/g, '""') + '"'; }
document.getElementById('save').addEventListener('click', () => {
  const labels = new Map();
  for (const tr of rows) {
    const v = field(tr).value.trim();
    if (v === '') continue;
    if (!valid(v)) {
      status.textContent = 'row ' + tr.dataset.n + ': ' + JSON.stringify(v)
        + (meta.rule === 'string' ? ' has a character the model does not read ('
                                  : ' is not a class of the model (')
        + meta.labels.join(' ') + '); nothing saved';
      field(tr).focus();
      return;
    }
    const key = tr.dataset.key;  // JSON of the row's key columns (meta.columns)
    const before = labels.get(key);
    if (before !== undefined && before !== v) {
      status.textContent = 'row ' + tr.dataset.n + ': another page of the same file is labelled '
        + JSON.stringify(before) + '; a file takes one label. Nothing saved';
      field(tr).focus();
      return;
    }
    labels.set(key, v);
  }
  const lines = [meta.columns.concat(['label']).join(',')].concat(Array.from(labels,
    ([k, v]) => JSON.parse(k).map((c) => quoted(String(c))).join(',') + ',' + quoted(v)));
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([lines.join('\\r\\n') + '\\r\\n'], {type: 'text/csv'}));
  a.download = 'corrections.csv';
  document.body.appendChild(a);
  a.click();
  a.remove();
  status.textContent = 'saved ' + labels.size + ' labels to corrections.csv';
});
"""


def picture(data: bytes | None, kind: str, why: str) -> str:
    if data is None:
        return f'<span class="none">{html.escape(why)}</span>'
    return f'<img class="{kind}" alt="{kind}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def row_html(n: int, r: dict, reader, columns: tuple[str, ...] = ("path",)) -> str:
    """One image of the queue; every text from a file's name or an error is escaped. The guesses are the
    reader's: a digit model's top labels, a field model's one digit string."""
    shown = SHOWN[reader.kind]
    where = f"<code>{html.escape(r['source'])}</code>"
    if r["member"] is not None:
        where += f"<br>member <code>{html.escape(r['member'])}</code>"
    if (r["pages"] or 1) > 1:
        where += f"<br>page {r['page'] + 1} of {r['pages']}"
    if r.get("field") is not None:  # a form's zone
        where += f"<br>field <b>{html.escape(r['field'])}</b>"
    guesses = (
        "".join(
            f'<button type="button" class="guess" data-label="{html.escape(label)}">'
            f"{html.escape(label)} <small>{100 * p:.1f} %</small></button>"
            for label, p in shown.guesses(r)
            if label
        )
        if r.get("text") or r["error"] is None
        else ""
    )
    if r["error"] is not None:
        guesses += f'<span class="error">{html.escape(r["error"])}</span>'
    # The key (the path, and a form's page and field) as JSON: an HTML parser turns a carriage return in
    # an attribute into a line feed, and the saved correction must name the file by every byte of its
    # name (a macOS "Icon\r" has one).
    key = json.dumps([r[c] for c in columns])
    seen_missing = "no crop: " + (r["error"] or "")
    return (
        f'<tr class="item" id="r{n}" data-n="{n}" data-key="{html.escape(key)}">'
        f"<td>{n}</td><td>{picture(r.get('crop'), shown.picture_class, seen_missing)}</td>"
        f"<td>{picture(r.get('original'), 'original', 'original not readable')}</td>"
        f"<td>{guesses}</td><td>{where}</td>"
        f'<td><input class="label" aria-label="label of row {n}" autocomplete="off" spellcheck="false" '
        f'maxlength="{shown.max_label}"></td></tr>'
    )


def render(
    rows: list[dict],
    total: int,
    labels: list[str],
    summary: dict,
    key: str,
    reader,
    columns: tuple[str, ...] = ("path",),
    *,
    item: str,
    job: str,
) -> str:
    """The page for ``rows`` (the first of the ``total`` in the queue). ``summary`` holds the model
    and the threshold; ``key`` names the output, so two queues' typed labels never mix; ``reader`` is
    the model's (``readers.of``); ``columns`` name a row in the saved CSV (score: the path; forms: the
    path, the page and the field). ``item`` is what a row is to the person (an image, a form's field)
    and ``job`` the command that reads the corrections back: a forms queue of 173 fields is not 173
    images, nor corrected by scoring again."""
    threshold = summary.get("threshold")
    rule = (
        f"confidence below {threshold:.6g} ({summary['threshold_source']}), or no answer"
        if threshold is not None
        else f"no answer (no threshold set: every {item} with an answer was accepted)"
    )
    title = f"Review queue: {total:,} {item if total == 1 else item + 's'}"
    head = (
        f"<h1>{html.escape(title)}</h1><p>Model <b>{html.escape(summary['model'])}</b>; "
        f"sent here: {html.escape(rule)}. Least confident first"
        + (
            f"; this page shows the first {len(rows):,}, all {total:,} are in <code>queue.parquet</code>"
            if len(rows) < total
            else ""
        )
        + ".</p>"
        "<p>Type the right label (or click a guess; Enter goes to the next row), then save the "
        f"corrections and run {html.escape(job)} again with <code>--labels corrections.csv</code>.</p>"
    )
    meta = json.dumps(
        {
            "labels": labels,
            "key": key,
            "rule": SHOWN[reader.kind].label_rule,
            "columns": list(columns),
            "quote": csv_labels.QUOTE,
            "quoted": list(csv_labels.QUOTED),
        }
    ).replace("<", "\\u003c")
    body = "".join(row_html(n, r, reader, columns) for n, r in enumerate(rows, 1))
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{STYLE}</style></head><body>{head}"
        "<table><thead><tr><th>#</th><th>model saw</th><th>original</th><th>guesses</th><th>source</th>"
        f"<th>label</th></tr></thead><tbody>{body}</tbody></table>"
        '<div id="bar"><button type="button" id="save">Save corrections (CSV)</button>'
        '<span id="status"></span></div>'
        f'<script type="application/json" id="meta">{meta}</script><script>{SCRIPT}</script></body></html>\n'
    )
