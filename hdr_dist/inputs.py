"""What ``score`` reads: INPUT arguments -> one ``Item`` per file or archive member, their labels,
and the Ray Data datasource that reads their bytes.

Archives are listed here, in the driver, but never extracted: the read tasks
open them again and read each member into memory. Listing first is what lets
a bad labels file, an unknown folder label or an already-scored input be dealt
with before any work starts, and it gives the progress line its total.
"""

from __future__ import annotations

import csv
import os
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import pyarrow as pa

from hdr_dist.errors import UserError
from hdr_dist.images import one_line

MAX_FILE_BYTES = 256 * 2**20  # a crop, or even a full form page, is far smaller; beyond is a bomb or a mistake
ITEMS_PER_TASK = 1000         # files or zip members per read task; a tar is one task (it reads as a stream)
BLOCK_ROWS = 256              # rows per block a read task yields, so memory stays flat on huge archives

READ_SCHEMA = pa.schema([("source", pa.string()), ("member", pa.string()), ("true_label", pa.string()),
                         ("data", pa.binary()), ("error", pa.string()), ("skip_pages", pa.list_(pa.int32()))])


@dataclass(frozen=True, slots=True)
class Item:
    source: str                 # the file, or the archive holding it (absolute path)
    member: str | None          # the path inside the archive; None for a plain file
    key: str                    # what a labels file names: path under its INPUT folder, or the member path
    error: str | None = None    # set when listing already found it unreadable
    label: str | None = None
    skip_pages: tuple = ()      # pages a resumed run already scored
    occurrence: int = 0         # among zip members of the same name (a zip may repeat one), which one


def archive_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    return None


def unsafe(name: str) -> str | None:
    """Members that would escape a folder if extracted are refused, extracted or not."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return "unsafe member name (absolute path or '..')"
    return None


def zip_items(path: Path, key: str):
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        yield Item(str(path), None, key, error=f"corrupt archive: {one_line(e)}")
        return
    seen: dict[str, int] = {}
    for info in infos:
        if not info.is_dir():
            n = seen[info.filename] = seen.get(info.filename, -1) + 1
            yield Item(str(path), info.filename, info.filename, error=unsafe(info.filename), occurrence=n)


def tar_items(path: Path, key: str):
    try:
        with tarfile.open(path, "r|*") as t:
            for m in t:
                if m.isdir():
                    continue
                error = unsafe(m.name) or (None if m.isfile() else "archive member is a link or device, not a file")
                yield Item(str(path), m.name, m.name, error=error)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        yield Item(str(path), None, key, error=f"corrupt archive: {one_line(e)}")


def file_items(path: Path, key: str):
    kind = archive_kind(path)
    if kind == "zip":
        yield from zip_items(path, key)
    elif kind == "tar":
        yield from tar_items(path, key)
    else:
        yield Item(str(path), None, key)


def find(inputs: list[str]) -> list[Item]:
    """Every file under each INPUT (folders recursively, archives opened), in a stable order."""
    items = []
    for text in inputs:
        path = Path(text).expanduser()
        if not path.exists():
            raise UserError(f"INPUT {text}: no such file or folder")
        path = path.resolve()
        if not path.is_dir():
            items += file_items(path, path.name)
            continue
        failed = []
        for folder, dirs, files in os.walk(path, onerror=failed.append):
            dirs.sort()
            for name in sorted(files):
                file = Path(folder) / name
                items += file_items(file, file.relative_to(path).as_posix())
        items += [Item(e.filename, None, Path(e.filename).name, error=f"cannot list folder: {e.strerror}")
                  for e in failed]
    return items


# ---- labels ----------------------------------------------------------------------------------

def read_label_file(path: str) -> dict[str, str]:
    """A CSV (header ``path,label``) or Parquet file with those two columns -> {path: label}."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"--labels {path}: no such file")
    try:
        if file.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(file)
            if not {"path", "label"} <= set(table.column_names):
                raise UserError(f"--labels {path}: needs columns 'path' and 'label', has {table.column_names}")
            rows = zip(table["path"].to_pylist(), table["label"].to_pylist())
        else:
            with file.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                if not {"path", "label"} <= set(reader.fieldnames or ()):
                    raise UserError(f"--labels {path}: needs a header line 'path,label', has {reader.fieldnames}")
                rows = [(r["path"], r["label"]) for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error, pa.ArrowException) as e:
        raise UserError(f"--labels {path}: unreadable ({one_line(e)})") from None
    return {str(p): str(lab) for p, lab in rows if p is not None and lab is not None}


def dirname_label(item: Item) -> str | None:
    """torchvision's ImageFolder convention: the class is the name of the image's own folder."""
    parts = item.key.split("/")
    return parts[-2] if len(parts) > 1 else None


def with_labels(items: list[Item], labels_from: str | None, label_file: dict | None,
                model_labels: list[str], model_name: str) -> list[Item]:
    """Attach true labels; a label the model cannot predict fails the job now, not after hours."""
    if labels_from is None and label_file is None:
        return items
    if label_file is not None:
        found = lambda it: label_file.get(it.key, label_file.get(it.source if it.member is None  # noqa: E731
                                                                 else f"{it.source}/{it.member}"))
        unknown = sorted(set(label_file.values()) - set(model_labels))
        what = "--labels has labels"
    else:
        found = dirname_label
        unknown = sorted({dirname_label(it) for it in items if it.error is None} - {None} - set(model_labels))
        what = "--labels-from dirname: folder names"
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise UserError(f"{what} that are not classes of model {model_name} ({''.join(model_labels)}): {shown}")
    return [replace(it, label=found(it)) for it in items]


# ---- reading ---------------------------------------------------------------------------------

def read_plain(item: Item) -> tuple[bytes | None, str | None]:
    try:
        size = os.path.getsize(item.source)
        if size > MAX_FILE_BYTES:
            return None, f"file too large: {size:,} bytes (limit {MAX_FILE_BYTES:,})"
        with open(item.source, "rb") as f:
            return f.read(), None
    except OSError as e:
        return None, f"cannot read: {e.strerror or one_line(e)}"


def read_zip(source: str, items: list[Item]):
    try:
        z = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        yield from ((it, None, f"corrupt archive: {one_line(e)}") for it in items)
        return
    with z:
        by_name: dict[str, list[zipfile.ZipInfo]] = {}
        for info in z.infolist():
            by_name.setdefault(info.filename, []).append(info)
        for it in items:
            try:
                info = by_name[it.member][it.occurrence]
                if info.file_size > MAX_FILE_BYTES:
                    yield it, None, f"archive member too large: {info.file_size:,} bytes (limit {MAX_FILE_BYTES:,})"
                    continue
                yield it, z.read(info), None
            except (zipfile.BadZipFile, KeyError, IndexError, OSError, EOFError, zlib.error,
                    NotImplementedError, RuntimeError) as e:
                yield it, None, f"broken archive member: {one_line(e)}"


def read_tar(source: str, items: list[Item]):
    """One pass over the tar stream (the only way through a .tar.gz), picking the wanted members."""
    wanted: dict[str, list[Item]] = {}
    for it in items:
        wanted.setdefault(it.member, []).append(it)
    try:
        with tarfile.open(source, "r|*") as t:
            for m in t:
                if not wanted:
                    break
                queue = wanted.get(m.name)
                if not queue:
                    continue
                it = queue.pop(0)
                if not queue:
                    del wanted[m.name]
                if m.size > MAX_FILE_BYTES:
                    yield it, None, f"archive member too large: {m.size:,} bytes (limit {MAX_FILE_BYTES:,})"
                    continue
                try:
                    yield it, t.extractfile(m).read(), None
                except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                    yield it, None, f"broken archive member: {one_line(e)}"
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        error = f"broken archive member: archive unreadable before it ({one_line(e)})"
    else:
        error = "archive member not found when reading the archive again"
    for queue in wanted.values():
        yield from ((it, None, error) for it in queue)


def read_items(items: list[Item]):
    """Bytes for each item, in blocks of BLOCK_ROWS rows: what one read task yields."""
    columns = {name: [] for name in READ_SCHEMA.names}

    def emit(it: Item, data, error):
        for name, value in (("source", it.source), ("member", it.member), ("true_label", it.label),
                            ("data", data), ("error", it.error or error), ("skip_pages", list(it.skip_pages))):
            columns[name].append(value)

    def block():
        table = pa.Table.from_pydict(columns, schema=READ_SCHEMA)
        for values in columns.values():
            values.clear()
        return table

    groups: dict[tuple, list[Item]] = {}
    for it in items:
        if it.error is not None:
            emit(it, None, None)
        elif it.member is None:
            emit(it, *read_plain(it))
        else:
            groups.setdefault((it.source, archive_kind(Path(it.source))), []).append(it)
        if len(columns["source"]) >= BLOCK_ROWS:
            yield block()
    for (source, kind), members in groups.items():
        for row in (read_zip if kind == "zip" else read_tar)(source, members):
            emit(*row)
            if len(columns["source"]) >= BLOCK_ROWS:
                yield block()
    if columns["source"]:
        yield block()


def read_tasks(items: list[Item]) -> list[list[Item]]:
    """Plain files and zip members in slices; each tar whole, since it can only be read front to back."""
    tars: dict[str, list[Item]] = {}
    rest = []
    for it in items:
        if it.member is not None and it.error is None and archive_kind(Path(it.source)) == "tar":
            tars.setdefault(it.source, []).append(it)
        else:
            rest.append(it)
    return list(tars.values()) + [rest[i:i + ITEMS_PER_TASK] for i in range(0, len(rest), ITEMS_PER_TASK)]


def reader(items_ref):
    """A read task's function. The items travel through the object store, so the function
    Ray serialises stays small even for an archive of a million members."""
    def read_image_files():
        import ray

        return read_items(ray.get(items_ref))
    return read_image_files


def datasource(items: list[Item]):
    """A Ray Data ``Datasource`` over the items (built here so importing this module needs no Ray)."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class ImageFiles(Datasource):
        def __init__(self, tasks: list[list[Item]]):
            super().__init__()
            self.tasks = tasks

        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            import ray

            return [ReadTask(reader(ray.put(task)),
                             BlockMetadata(num_rows=len(task), size_bytes=None, input_files=None, exec_stats=None),
                             schema=READ_SCHEMA, per_task_row_limit=per_task_row_limit)
                    for task in self.tasks]

    return ImageFiles(read_tasks(items))
