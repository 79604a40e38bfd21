"""True labels for the images ``score`` reads: from a labels file, or from folder names.

A wrong true label is worse than none: it makes a right answer count as a
mistake in the metrics a team trusts. So a labels file matches each image
exactly, by its path under its INPUT or by its absolute path, and whatever
does not match cleanly (rows naming no image, a path given two labels, a
relative path that fits images under two INPUTs) is left unused and reported.

A CSV written for people (``forms.csv``, the review page's ``corrections.csv``) keeps a spreadsheet from
running a file's name as a formula (OWASP's CSV injection): ``cell`` writes a text that starts with a
formula character or a quote behind one more quote, and ``uncell`` takes exactly that quote off again,
so a labels file the page saved names each file by its exact name.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from hdr_dist.bulk.inputs import Item
from hdr_dist.common.errors import SettingError, UserError, one_line, quoted, setting
from hdr_dist.common.names import tidy
from hdr_dist.inference import readers

EXAMPLES = 5  # paths shown per kind of problem, on the terminal and in summary.json
# What makes a spreadsheet read a cell as a formula (OWASP: = + - @, tab, carriage return), and the quote
# that marks a cell as text; the review page's script applies the same rule with these characters.
FORMULA_STARTS = "=+-@\t\r"
QUOTE = "'"
QUOTED = (*FORMULA_STARTS, QUOTE)  # the starts that ``cell`` puts a quote in front of


def cell(text: str) -> str:
    """A text as a CSV cell a spreadsheet shows and never runs: one that starts with a formula character
    gets a quote in front. So does one that starts with a quote, so that ``uncell`` can tell a quote it
    must take off from a name's own and every text reads back as it was."""
    return QUOTE + text if text.startswith(QUOTED) else text


def uncell(text: str) -> str:
    """A CSV cell as the text ``cell`` wrote it from; a cell ``cell`` leaves as it is (a hand-written
    ``=3.png``) is read as it is."""
    return text[1:] if text.startswith(QUOTE) and text[1:].startswith(QUOTED) else text


@dataclass
class LabelFile:
    path: str
    rows: list[tuple[str, str]]  # (path, label), in file order


def read_label_file(path: str) -> LabelFile:
    """A CSV (header ``path,label``, its cells as ``cell`` writes them) or Parquet file with those two
    columns."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SettingError("labels", path, "no such file")
    try:
        if file.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(file)
            if not {"path", "label"} <= set(table.column_names):
                raise SettingError(
                    "labels", path, f"needs columns 'path' and 'label', has {quoted(table.column_names)}"
                )
            rows = zip(table["path"].to_pylist(), table["label"].to_pylist())
        else:
            with file.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                if not {"path", "label"} <= set(reader.fieldnames or ()):
                    raise SettingError(
                        "labels", path, f"needs a header line 'path,label', has {quoted(reader.fieldnames)}"
                    )
                rows = [
                    tuple(None if r[c] is None else uncell(r[c]) for c in ("path", "label")) for r in reader
                ]
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - unreadable, not UTF-8, not Parquet: the user's --labels
        raise SettingError("labels", path, f"unreadable ({one_line(e)})") from None
    return LabelFile(path, [(tidy(str(p)), str(lab)) for p, lab in rows if p is not None and lab is not None])


def dirname_label(item: Item, top: str | None = None) -> str | None:
    """torchvision's ImageFolder convention: the class is the first folder under the INPUT. For an
    archive member it is the first folder under the archive's root (under ``top``, the folder that
    holds the whole archive, when it has one: ``shared_tops``), else the archive's own first folder
    under the INPUT (``3/batch.zip`` holds 3s)."""
    if item.member is not None:
        inside = tidy(item.member).split("/")[1 if top is not None else 0 :]
        if len(inside) > 1:
            return inside[0]
        outside = item.key[: len(item.key) - len(tidy(item.member))].rstrip("/").split("/")
        return outside[0] if len(outside) > 1 else None
    parts = item.key.split("/")
    return parts[0] if len(parts) > 1 else None


def shared_tops(items: list[Item]) -> dict[str, str]:
    """Archive -> the one top folder all its members sit in, where some sit deeper: a zip made by
    "compress folder" (``batch7/3/a.png``) holds its classes in the folders below it, as after
    unzipping, unless that top folder is a class itself (``3/scan/a.png``)."""
    firsts: dict[str, set] = defaultdict(set)
    deeper: set[str] = set()
    for it in items:
        if it.member is not None:
            parts = tidy(it.member).split("/")
            firsts[it.source].add(parts[0] if len(parts) > 1 else None)
            if len(parts) > 2:
                deeper.add(it.source)
    return {
        source: next(iter(tops))
        for source, tops in firsts.items()
        if len(tops) == 1 and None not in tops and source in deeper
    }


def absolute(source: str, member: str | None) -> str:
    """An image's absolute path as a labels file may name it: the file, or ``ARCHIVE/MEMBER``."""
    return source if member is None else f"{source}/{member}"


def resolver(items: list[Item]):
    """``resolve(path)``: the items a labels file's path names (by its absolute path, else its path under
    its INPUT), or why none: it names no image, or it fits images under two INPUTs."""
    by_absolute: dict[str, list[int]] = defaultdict(list)
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_absolute[absolute(it.source, it.member)].append(i)
        by_key[it.key].append(i)

    def resolve(path: str) -> tuple[list[int], str | None]:
        hits = by_absolute.get(path) or by_key.get(path, [])
        if not hits:
            return [], "rows that name no image"
        if len({items[i].root for i in hits}) > 1:
            return [], "paths under more than one INPUT (use the absolute path)"
        return hits, None

    return resolve


def match(items: list[Item], label_file: LabelFile) -> tuple[dict[int, str], dict[str, list[str]]]:
    """Each item's label (by index) and the problems found, each kind with the paths concerned."""
    resolve = resolver(items)
    problems: dict[str, list[str]] = defaultdict(list)
    given: dict[int, set[str]] = defaultdict(set)
    rows: set[tuple[str, str]] = set()
    for path, label in label_file.rows:
        if (path, label) in rows:
            problems["duplicate rows"].append(path)
            continue
        rows.add((path, label))
        hits, problem = resolve(path)
        if problem:
            problems[problem].append(path)
        for i in hits:
            given[i].add(label)
    labels = {}
    for i, found in given.items():
        if len(found) == 1:
            labels[i] = next(iter(found))
        else:
            problems["images given two labels (left unlabelled)"].append(
                absolute(items[i].source, items[i].member)
            )
    return labels, {kind: sorted(set(paths)) for kind, paths in problems.items()}


def with_labels(
    items: list[Item],
    labels_from: str | None,
    label_file: LabelFile | None,
    model_labels: list[str],
    model_name: str,
    reader=readers.DIGIT,
) -> tuple[list[Item], dict[str, list[str]]]:
    """Attach true labels, and say what in a labels file did not match cleanly. A label the model
    cannot predict (``reader.is_label``: for a field model, a string with a character it cannot read)
    fails the job now, not after hours."""
    problems: dict[str, list[str]] = {}
    if labels_from is None and label_file is None:
        return items, problems
    if label_file is not None:
        found, problems = match(items, label_file)
        given = {label for _, label in label_file.rows}
        what = f"{setting('labels')} has labels"
    else:
        # A top folder that is a label (3/scan/a.png) is the class; one that is not (batch7/3/a.png)
        # holds them.
        tops = {
            source: top
            for source, top in shared_tops(items).items()
            if not reader.is_label(top, model_labels)
        }
        found = {i: dirname_label(it, tops.get(it.source)) for i, it in enumerate(items) if it.error is None}
        given = set(found.values()) - {None}
        what = f"{setting('labels_from')} dirname: folder names"
    unknown = sorted(g for g in given if not reader.is_label(g, model_labels))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        raise UserError(
            f"{what} that are not {reader.describes(model_name)} ({''.join(model_labels)}): {shown}"
        )
    return [replace(it, label=found.get(i)) for i, it in enumerate(items)], problems


def report(label_file: LabelFile, problems: dict[str, list[str]]) -> dict:
    """For summary.json: how many rows, and each kind of problem with its count and first paths."""
    return {
        "file": str(Path(label_file.path).expanduser().resolve()),
        "rows": len(label_file.rows),
        "problems": {
            kind: {"count": len(paths), "examples": paths[:EXAMPLES]} for kind, paths in problems.items()
        },
    }


def warnings(label_file: LabelFile, problems: dict[str, list[str]]) -> list[str]:
    """One terminal line per kind of problem."""
    return [
        f"{setting('labels')} {label_file.path}: {len(paths):,} {kind}: "
        + ", ".join(paths[:EXAMPLES])
        + (", …" if len(paths) > EXAMPLES else "")
        for kind, paths in problems.items()
    ]
