"""Listing inputs (folders, zip and tar archives), reading their bytes, and attaching labels."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hdr_dist import data, inputs, samples
from hdr_dist.errors import UserError
from hdr_dist.inputs import Item

DIGITS = list("0123456789")


@pytest.fixture(scope="module")
def scans() -> list[tuple[str, bytes]]:
    """20 MNIST test digits as (``28px-png/<label>/<i>.png``, PNG bytes) of dark ink on paper."""
    folder = data.mnist_folder()
    x = data.read_idx(folder / "t10k-images-idx3-ubyte.gz", data.IDX_IMAGES)[:20]
    y = data.read_idx(folder / "t10k-labels-idx1-ubyte.gz", data.IDX_LABELS)[:20]
    return list(samples.entries(x, y, DIGITS))


@pytest.fixture
def tree(tmp_path: Path, scans) -> Path:
    """A folder with class folders, a loose file, a zip (with a directory entry), a .tar.gz and a .tgz."""
    root = tmp_path / "in"
    samples.write(root, scans[:2])
    (root / "loose.png").write_bytes(scans[2][1])
    samples.write(root / "b.zip", scans[3:5])
    with zipfile.ZipFile(root / "b.zip", "a") as z:
        z.writestr("empty/", b"")
    samples.write(root / "c.tar.gz", scans[5:6])
    with tarfile.open(root / "d.tgz", "w:gz") as t:
        add(t, "9", b"", tarfile.DIRTYPE)
        add(t, "9/x.png", scans[6][1])
    return root


def add(t: tarfile.TarFile, name: str, raw: bytes, kind=tarfile.REGTYPE, link="") -> None:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = len(raw), kind, link
    t.addfile(info, io.BytesIO(raw))


def rows(items) -> list[dict]:
    return pa.concat_tables(list(inputs.read_items(items))).to_pylist()


def test_unsafe_names():
    for name in ("../x.png", "a/../../x.png", "/abs.png", "C:/x.png", "a\\..\\x.png"):
        assert inputs.unsafe(name) == "unsafe member name (absolute path or '..')", name
    assert [inputs.unsafe(name) for name in ("a/b/c.png", "a..b.png", "..png")] == [None, None, None]


def test_find_lists_folders_and_archive_members(tree, scans):
    items = inputs.find([str(tree)])
    root = tree.resolve()
    assert [(Path(it.source).relative_to(root).as_posix(), it.member, it.key, it.error) for it in items] == [
        ("b.zip", scans[3][0], scans[3][0], None), ("b.zip", scans[4][0], scans[4][0], None),
        ("c.tar.gz", scans[5][0], scans[5][0], None), ("d.tgz", "9/x.png", "9/x.png", None),
        ("loose.png", None, "loose.png", None),
        *((name, None, name, None) for name, _ in sorted(scans[:2]))]  # os.walk order: files, then sorted folders
    assert items == inputs.find([str(tree)])  # stable


def test_find_single_file_and_missing_input(tree):
    assert inputs.find([str(tree / "loose.png")]) == [Item(str(tree.resolve() / "loose.png"), None, "loose.png")]
    with pytest.raises(UserError, match=f"INPUT {tree / 'nope'}: no such file or folder"):
        inputs.find([str(tree / "nope")])


def test_corrupt_zip(tmp_path):
    (tmp_path / "x.zip").write_bytes(np.random.default_rng(0).bytes(500))
    (item,) = inputs.find([str(tmp_path / "x.zip")])
    assert item.member is None and item.key == "x.zip" and item.error.startswith("corrupt archive")


def test_truncated_tar_gz_lists_members_before_the_cut(tmp_path, scans):
    whole = tmp_path / "whole.tar.gz"
    samples.write(whole, scans)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    *members, last = inputs.find([str(cut)])
    assert 0 < len(members) < len(scans)
    assert [it.member for it in members] == [name for name, _ in scans[:len(members)]]
    assert all(it.error is None for it in members)
    assert last.member is None and last.key == "cut.tar.gz" and last.error.startswith("corrupt archive")


def test_tar_link_and_unsafe_zip_member(tmp_path, scans):
    with tarfile.open(tmp_path / "links.tar", "w") as t:
        add(t, "real.png", scans[0][1])
        add(t, "link.png", b"", tarfile.SYMTYPE, "real.png")
    samples.write(tmp_path / "evil.zip", [("../evil.png", scans[0][1])])
    real, link, evil = inputs.find([str(tmp_path / "links.tar"), str(tmp_path / "evil.zip")])
    assert real.error is None and "link" in link.error
    assert evil.member == "../evil.png" and evil.error == "unsafe member name (absolute path or '..')"
    assert [(r["data"], r["error"]) for r in rows([link, evil])] == [(None, link.error), (None, evil.error)]


def test_read_items_gives_one_row_per_item_with_its_bytes(tree, scans):
    items = inputs.find([str(tree)])
    key = {(it.source, it.member): it.key for it in items}
    read = rows(items)
    got = {key[r["source"], r["member"]]: (r["data"], r["error"]) for r in read}
    assert len(read) == len(items)
    expected = {**dict(scans[:2]), "loose.png": scans[2][1], **dict(scans[3:6]), "9/x.png": scans[6][1]}
    assert len(items) == 7 and got == {k: (raw, None) for k, raw in expected.items()}


def test_read_items_blocks(tmp_path, scans):
    samples.write(tmp_path, [(f"{i:03d}.png", scans[i % 20][1]) for i in range(300)])
    blocks = list(inputs.read_items(inputs.find([str(tmp_path)])))
    assert [b.num_rows for b in blocks] == [inputs.BLOCK_ROWS, 300 - inputs.BLOCK_ROWS]
    assert all(b.schema == inputs.READ_SCHEMA for b in blocks)


def test_broken_zip_member(tmp_path):
    raw = bytes(range(256)) * 400  # compressible, so the member is deflated
    path = tmp_path / "broken.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.bmp", raw)
        info = z.getinfo("a.bmp")
    blob = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename)  # no extra field in a freshly written zip
    for i in range(start + 10, start + info.compress_size - 10):
        blob[i] ^= 0xFF
    path.write_bytes(bytes(blob))
    (row,) = rows(inputs.find([str(path)]))
    assert row["data"] is None and row["error"].startswith("broken archive member")


def test_dangling_symlink_cannot_be_read(tmp_path):
    os.symlink(tmp_path / "gone.png", tmp_path / "link.png")
    (item,) = inputs.find([str(tmp_path)])
    (row,) = rows([item])
    assert row["error"] == "cannot read: No such file or directory" and row["data"] is None


def test_read_tasks_each_tar_whole_and_files_in_slices(tree):
    items = inputs.find([str(tree)])
    plain = [Item(f"/scans/{i:04d}.png", None, f"{i:04d}.png") for i in range(2500)]
    tasks = inputs.read_tasks(items + plain)
    assert [[it.member for it in t] for t in tasks[:2]] == [[items[2].member], [items[3].member]]
    assert [len(t) for t in tasks[2:]] == [1000, 1000, len(items) - 2 + 500]
    assert [it for t in tasks[2:] for it in t] == [*items[:2], *items[4:], *plain]


def test_read_label_file_csv_and_parquet(tmp_path):
    (tmp_path / "l.csv").write_text("path,label\n3/a.png,3\nb.png,7\n", encoding="utf-8-sig")
    pq.write_table(pa.table({"path": ["3/a.png", "b.png"], "label": [3, 7]}), tmp_path / "l.parquet")
    expected = {"3/a.png": "3", "b.png": "7"}
    assert inputs.read_label_file(str(tmp_path / "l.csv")) == expected
    assert inputs.read_label_file(str(tmp_path / "l.parquet")) == expected


def test_read_label_file_needs_path_and_label(tmp_path):
    (tmp_path / "l.csv").write_text("3/a.png,3\n")
    pq.write_table(pa.table({"file": ["a.png"], "label": ["3"]}), tmp_path / "l.parquet")
    with pytest.raises(UserError, match=r"l.csv: needs a header line 'path,label', has \['3/a.png', '3'\]"):
        inputs.read_label_file(str(tmp_path / "l.csv"))
    with pytest.raises(UserError, match=r"l.parquet: needs columns 'path' and 'label', has \['file', 'label'\]"):
        inputs.read_label_file(str(tmp_path / "l.parquet"))


def test_labels_from_dirname(tree):
    items = inputs.with_labels(inputs.find([str(tree)]), "dirname", None, DIGITS, "cnn")
    by_key = {it.key: it.label for it in items}
    assert by_key["loose.png"] is None and by_key["28px-png/7/00000.png"] == "7"
    assert by_key["9/x.png"] == "9"
    assert [it.label for it in items if it.label is not None] == [k.split("/")[-2] for k in by_key if "/" in k]


def test_unknown_folder_name_fails(tmp_path, scans):
    samples.write(tmp_path, [("cat/a.png", scans[0][1]), ("3/b.png", scans[1][1])])
    with pytest.raises(UserError, match="folder names that are not classes of model cnn.*'cat'"):
        inputs.with_labels(inputs.find([str(tmp_path)]), "dirname", None, DIGITS, "cnn")


def test_label_file_with_unknown_label_fails(tree):
    items = inputs.find([str(tree)])
    labelled = inputs.with_labels(items, None, {"loose.png": "4"}, DIGITS, "cnn")
    assert [it.label for it in labelled if it.label] == ["4"]
    with pytest.raises(UserError, match="--labels has labels that are not classes of model cnn.*'Z'"):
        inputs.with_labels(items, None, {"loose.png": "Z"}, DIGITS, "cnn")


def test_duplicate_member_names_each_read_their_own_bytes(tmp_path, scans):
    """PACKAGE BUG (zip half): read_zip looks members up by name, so every duplicate gets the last one's bytes."""
    first, second = scans[0][1], scans[1][1]
    samples.write(tmp_path / "dup.tar", [("a.png", first), ("a.png", second)])
    assert [r["data"] for r in rows(inputs.find([str(tmp_path / "dup.tar")]))] == [first, second]
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(tmp_path / "dup.zip", "w") as z:
        z.writestr("a.png", first)
        z.writestr("a.png", second)
    got = [r["data"] for r in rows(inputs.find([str(tmp_path / "dup.zip")]))]
    assert got == [first, second], "both zip rows carry the second member's bytes"
