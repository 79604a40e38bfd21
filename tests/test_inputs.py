"""Listing inputs (folders, zip and tar archives), reading their bytes, and attaching labels."""

from __future__ import annotations

import io
import os
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hdr_dist.bulk import inputs, labels, reading
from hdr_dist.bulk.inputs import Item
from hdr_dist.common import names
from hdr_dist.common.errors import UserError
from hdr_dist.data import datasets, samples

DIGITS = list("0123456789")


@pytest.fixture(scope="module")
def scans() -> list[tuple[str, bytes]]:
    """20 MNIST test digits as (``<label>/28px-png/<i>.png``, PNG bytes) of dark ink on paper."""
    folder = datasets.mnist_folder()
    x = datasets.read_idx(folder / "t10k-images-idx3-ubyte.gz", datasets.IDX_IMAGES)[:20]
    y = datasets.read_idx(folder / "t10k-labels-idx1-ubyte.gz", datasets.IDX_LABELS)[:20]
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
    return pa.concat_tables(list(reading.read_items(items))).to_pylist()


def find(*paths) -> list[Item]:
    return inputs.find([str(p) for p in paths]).items


def test_unsafe_names():
    for name in ("../x.png", "a/../../x.png", "/abs.png", "C:/x.png", "a\\..\\x.png"):
        assert names.unsafe(name) == "unsafe member name (absolute path or '..')", name
    assert [names.unsafe(name) for name in ("a/b/c.png", "a..b.png", "..png")] == [None, None, None]


def test_find_lists_folders_and_archive_members(tree, scans):
    """Keys are paths under the INPUT, an archive counting as a folder (what --labels names)."""
    items = find(tree)
    root = tree.resolve()
    assert [(Path(it.source).relative_to(root).as_posix(), it.member, it.key, it.error) for it in items] == [
        ("b.zip", scans[3][0], f"b.zip/{scans[3][0]}", None),
        ("b.zip", scans[4][0], f"b.zip/{scans[4][0]}", None),
        ("c.tar.gz", scans[5][0], f"c.tar.gz/{scans[5][0]}", None),
        ("d.tgz", "9/x.png", "d.tgz/9/x.png", None),
        ("loose.png", None, "loose.png", None),
        *((name, None, name, None) for name, _ in sorted(scans[:2])),
    ]  # os.walk order: files, then sorted folders
    assert items == find(tree)  # stable


def test_find_single_file_and_missing_input(tree):
    assert find(tree / "loose.png") == [Item(str(tree.resolve() / "loose.png"), None, "loose.png")]
    with pytest.raises(UserError, match=f"INPUT {tree / 'nope'}: no such file or folder"):
        inputs.find([str(tree / "nope")])


def test_corrupt_zip(tmp_path):
    (tmp_path / "x.zip").write_bytes(np.random.default_rng(0).bytes(500))
    (item,) = find(tmp_path / "x.zip")
    assert item.member is None
    assert item.key == "x.zip"
    assert item.error.startswith("corrupt archive")


def test_truncated_tar_gz_lists_members_before_the_cut(tmp_path, scans):
    whole = tmp_path / "whole.tar.gz"
    samples.write(whole, scans)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    *members, last = find(cut)
    assert 0 < len(members) < len(scans)
    assert [it.member for it in members] == [name for name, _ in scans[: len(members)]]
    assert all(it.error is None for it in members)
    assert last.member is None
    assert last.key == "cut.tar.gz"
    assert last.error.startswith("corrupt archive")


def test_tar_link_and_unsafe_zip_member(tmp_path, scans):
    with tarfile.open(tmp_path / "links.tar", "w") as t:
        add(t, "real.png", scans[0][1])
        add(t, "link.png", b"", tarfile.SYMTYPE, "real.png")
    samples.write(tmp_path / "evil.zip", [("../evil.png", scans[0][1])])
    real, link, evil = find(tmp_path / "links.tar", tmp_path / "evil.zip")
    assert real.error is None
    assert "link" in link.error
    assert evil.member == "../evil.png"
    assert evil.error == "unsafe member name (absolute path or '..')"
    assert [(r["data"], r["error"]) for r in rows([link, evil])] == [(None, link.error), (None, evil.error)]


def test_read_items_gives_one_row_per_item_with_its_bytes(tree, scans):
    items = find(tree)
    key = {(it.source, it.member): it.key for it in items}
    read = rows(items)
    got = {key[r["source"], r["member"]]: (r["data"], r["error"]) for r in read}
    assert len(read) == len(items)
    expected = {
        **dict(scans[:2]),
        "loose.png": scans[2][1],
        **{f"b.zip/{n}": raw for n, raw in scans[3:5]},
        f"c.tar.gz/{scans[5][0]}": scans[5][1],
        "d.tgz/9/x.png": scans[6][1],
    }
    assert len(items) == 7
    assert got == {k: (raw, None) for k, raw in expected.items()}


def test_read_items_blocks(tmp_path, scans):
    samples.write(tmp_path, [(f"{i:03d}.png", scans[i % 20][1]) for i in range(300)])
    blocks = list(reading.read_items(find(tmp_path)))
    assert [b.num_rows for b in blocks] == [reading.BLOCK_ROWS, 300 - reading.BLOCK_ROWS]
    assert all(b.schema == reading.READ_SCHEMA for b in blocks)


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
    (row,) = rows(find(path))
    assert row["data"] is None
    assert row["error"].startswith("broken archive member")


def test_dangling_symlink_cannot_be_read(tmp_path):
    os.symlink(tmp_path / "gone.png", tmp_path / "link.png")
    (item,) = find(tmp_path)
    (row,) = rows([item])
    assert row["error"] == "cannot read: No such file or directory"
    assert row["data"] is None


def test_read_tasks_each_archive_whole_and_files_in_slices(tree):
    items = find(tree)
    plain = [Item(f"/scans/{i:04d}.png", None, f"{i:04d}.png") for i in range(2500)]
    tasks = reading.read_tasks(items + plain)
    assert [[it.member for it in t] for t in tasks[:3]] == [
        [items[0].member, items[1].member],
        [items[2].member],
        [items[3].member],
    ]
    assert [len(t) for t in tasks[3:]] == [1000, 1000, 3 + 500]
    assert [it for t in tasks[3:] for it in t] == [*items[4:], *plain]


def test_read_label_file_csv_and_parquet(tmp_path):
    (tmp_path / "l.csv").write_text("path,label\n3/a.png,3\n./b.png,7\n", encoding="utf-8-sig")
    pq.write_table(pa.table({"path": ["3/a.png", "b.png"], "label": [3, 7]}), tmp_path / "l.parquet")
    expected = [("3/a.png", "3"), ("b.png", "7")]
    assert labels.read_label_file(str(tmp_path / "l.csv")).rows == expected
    assert labels.read_label_file(str(tmp_path / "l.parquet")).rows == expected


def test_read_label_file_needs_path_and_label(tmp_path):
    (tmp_path / "l.csv").write_text("3/a.png,3\n")
    pq.write_table(pa.table({"file": ["a.png"], "label": ["3"]}), tmp_path / "l.parquet")
    with pytest.raises(UserError, match=r"l.csv: needs a header line 'path,label', has \['3/a.png', '3'\]"):
        labels.read_label_file(str(tmp_path / "l.csv"))
    with pytest.raises(
        UserError, match=r"l.parquet: needs columns 'path' and 'label', has \['file', 'label'\]"
    ):
        labels.read_label_file(str(tmp_path / "l.parquet"))
    (tmp_path / "latin1.csv").write_bytes(b"path,label\ncaf\xe9.png,3\n")
    with pytest.raises(UserError, match="latin1.csv: unreadable"):
        labels.read_label_file(str(tmp_path / "latin1.csv"))


def test_labels_from_dirname_is_the_first_folder(tmp_path, scans):
    """ImageFolder: the first folder under the INPUT, or under an archive's root; else the archive's own."""
    samples.write(tmp_path / "in", [("3/extra/deep/a.png", scans[0][1]), ("loose.png", scans[1][1])])
    samples.write(tmp_path / "in" / "batch.zip", [("5/b.png", scans[2][1]), ("root.png", scans[3][1])])
    (tmp_path / "in" / "7").mkdir()
    samples.write(tmp_path / "in" / "7" / "sevens.tar", [("c.png", scans[4][1]), ("./8/d.png", scans[5][1])])
    items, problems = labels.with_labels(find(tmp_path / "in"), "dirname", None, DIGITS, "cnn")
    assert {it.key: it.label for it in items} == {
        "3/extra/deep/a.png": "3",
        "loose.png": None,
        "batch.zip/5/b.png": "5",
        "batch.zip/root.png": None,
        "7/sevens.tar/c.png": "7",
        "7/sevens.tar/8/d.png": "8",
    }
    assert problems == {}
    items, _ = labels.with_labels(find(tmp_path / "in" / "batch.zip"), "dirname", None, DIGITS, "cnn")
    assert {it.key: it.label for it in items} == {"5/b.png": "5", "root.png": None}


def test_unknown_folder_name_fails(tmp_path, scans):
    samples.write(tmp_path, [("cat/a.png", scans[0][1]), ("3/b.png", scans[1][1])])
    with pytest.raises(UserError, match="folder names that are not classes of model cnn.*'cat'"):
        labels.with_labels(find(tmp_path), "dirname", None, DIGITS, "cnn")


def test_desktop_junk_is_skipped_and_counted(tmp_path, scans):
    """What macOS and Windows leave in a zip never becomes an unknown class or a row."""
    samples.write(
        tmp_path / "in" / "a.zip",
        [
            ("3/a.png", scans[0][1]),
            ("__MACOSX/3/._a.png", b"\x00\x05\x16\x07"),
            ("3/.DS_Store", b"Bud1"),
            ("3/Thumbs.db", b"x"),
        ],
    )
    (tmp_path / "in" / "4").mkdir()
    (tmp_path / "in" / "4" / "b.png").write_bytes(scans[1][1])
    (tmp_path / "in" / "4" / "._b.png").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "in" / "desktop.ini").write_text("[.ShellClassInfo]")
    found = inputs.find([str(tmp_path / "in")])
    assert [it.key for it in found.items] == ["a.zip/3/a.png", "4/b.png"]
    assert found.junk == 5
    items, _ = labels.with_labels(found.items, "dirname", None, DIGITS, "cnn")
    assert [it.label for it in items] == ["3", "4"]


def test_label_file_matches_through_input_and_archive_never_by_bare_name(tmp_path, scans):
    """Two archives both hold a.png: a row names one of them, not both; problems are reported."""
    samples.write(tmp_path / "in" / "x.zip", [("a.png", scans[0][1]), ("b.png", scans[1][1])])
    samples.write(tmp_path / "in" / "y.tar", [("a.png", scans[2][1])])
    samples.write(tmp_path / "other", [("a.png", scans[3][1])])
    items = find(tmp_path / "in", tmp_path / "other")
    rows = [
        ("x.zip/a.png", "1"),
        ("a.png", "2"),
        (f"{tmp_path.resolve()}/in/y.tar/a.png", "3"),
        ("x.zip/b.png", "4"),
        ("x.zip/b.png", "4"),
        ("x.zip/b.png", "5"),
        ("nowhere.png", "6"),
    ]
    got, problems = labels.with_labels(items, None, labels.LabelFile("l.csv", rows), DIGITS, "cnn")
    assert {it.key: it.label for it in got} == {
        "x.zip/a.png": "1",
        "x.zip/b.png": None,
        "y.tar/a.png": "3",
        "a.png": "2",
    }
    assert problems == {
        "duplicate rows": ["x.zip/b.png"],
        "rows that name no image": ["nowhere.png"],
        "images given two labels (left unlabelled)": [f"{(tmp_path / 'in' / 'x.zip').resolve()}/b.png"],
    }
    samples.write(tmp_path / "third", [("a.png", scans[4][1])])
    got, problems = labels.with_labels(
        find(tmp_path / "other", tmp_path / "third"),
        None,
        labels.LabelFile("l.csv", [("a.png", "2")]),
        DIGITS,
        "cnn",
    )
    assert [it.label for it in got] == [None, None]
    assert problems == {"paths under more than one INPUT (use the absolute path)": ["a.png"]}
    report = labels.report(labels.LabelFile("l.csv", [("a.png", "2")]), problems)
    assert report["rows"] == 1
    assert report["problems"]["paths under more than one INPUT (use the absolute path)"] == {
        "count": 1,
        "examples": ["a.png"],
    }


def test_label_file_with_unknown_label_fails(tree):
    items = find(tree)
    labelled, _ = labels.with_labels(
        items, None, labels.LabelFile("l.csv", [("loose.png", "4")]), DIGITS, "cnn"
    )
    assert [it.label for it in labelled if it.label] == ["4"]
    with pytest.raises(UserError, match="--labels has labels that are not classes of model cnn.*'Z'"):
        labels.with_labels(items, None, labels.LabelFile("l.csv", [("loose.png", "Z")]), DIGITS, "cnn")


def test_duplicate_member_names_each_read_their_own_bytes(tmp_path, scans):
    """Each occurrence of a repeated name is its own item, reading its own bytes."""
    first, second = scans[0][1], scans[1][1]
    samples.write(tmp_path / "dup.tar", [("a.png", first), ("a.png", second)])
    assert [(it.member, it.occurrence) for it in find(tmp_path / "dup.tar")] == [("a.png", 0), ("a.png", 1)]
    assert [r["data"] for r in rows(find(tmp_path / "dup.tar"))] == [first, second]
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(tmp_path / "dup.zip", "w") as z:
        z.writestr("a.png", first)
        z.writestr("a.png", second)
    got = rows(find(tmp_path / "dup.zip"))
    assert [(r["data"], r["occurrence"]) for r in got] == [(first, 0), (second, 1)]


def test_the_same_file_named_twice_is_listed_once(tmp_path, scans):
    samples.write(tmp_path / "in", [("3/a.png", scans[0][1]), ("3/b.png", scans[1][1])])
    samples.write(tmp_path / "in" / "c.zip", [("x.png", scans[2][1])])
    os.symlink(tmp_path / "in" / "3" / "a.png", tmp_path / "in" / "link-to-a.png")
    found = inputs.find([str(tmp_path / "in"), str(tmp_path / "in" / "3"), str(tmp_path / "in" / "c.zip")])
    # The first name met is kept: the link sorts before the folder holding its target.
    assert [it.key for it in found.items] == ["c.zip/x.png", "link-to-a.png", "3/b.png"]
    assert found.duplicates == 4  # 3/a.png itself, 3/ named again (2 files), and the zip named again


def test_inputs_that_hold_nothing_are_one_line(tmp_path, scans):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / ".DS_Store").write_bytes(b"Bud1")
    samples.write(tmp_path / "dirs-only.tar", [])
    for name, message in (
        ("empty", "holds no files to score"),
        ("junk", "holds no files to score (only 1 desktop junk files, skipped)"),
        ("dirs-only.tar", "holds no files to score"),
    ):
        with pytest.raises(UserError, match=rf"INPUT .*{re.escape(name)}: {re.escape(message)}$"):
            inputs.find([str(tmp_path / name)])


def test_non_utf8_names_are_escaped_losslessly(tmp_path, scans):
    raw = os.fsencode(tmp_path) + b"/caf\xe9\\x41.png"
    with open(raw, "wb") as f:
        f.write(scans[0][1])
    (item,) = find(tmp_path)
    assert item.key == "caf\\xe9\\\\x41.png"
    assert item.key.encode("utf-8")
    assert os.fsencode(names.unescape(item.source)) == raw
    (row,) = rows([item])
    assert row["data"] == scans[0][1]
    assert row["error"] is None
    for name in ("plain.png", "back\\xslash", "a\\b", "\udcff\\x", "\\\udc80"):
        assert names.unescape(names.escape(name)) == name
    assert names.escape("back\\x41") != names.escape("back\udcc1")


def test_fifo_and_device_are_refused_unopened(tmp_path, scans):
    (tmp_path / "in").mkdir()
    os.mkfifo(tmp_path / "in" / "pipe.png")
    os.mkfifo(tmp_path / "elsewhere.fifo")
    os.symlink(tmp_path / "elsewhere.fifo", tmp_path / "in" / "link.png")
    os.symlink("/dev/zero", tmp_path / "in" / "zero.png")
    got = {Path(r["source"]).name: r["error"] for r in rows(find(tmp_path / "in"))}
    assert got == {
        "pipe.png": "not a regular file (a FIFO): not opened",
        "link.png": "not a regular file (a FIFO): not opened",
        "zero.png": "not a regular file (a device): not opened",
    }
    os.mkfifo(tmp_path / "fifo.zip")
    (item,) = find(tmp_path / "fifo.zip")
    assert item.error == "not a regular file (a FIFO): not opened"


def test_a_zip_of_one_folder_reads_its_classes_one_level_below(tmp_path, scans):
    """A zip made by "compress folder" holds one top folder (batch7/3/a.png): its classes are the folders
    below it, as after unzipping. A zip of one class folder (3/a.png) keeps that folder as the class."""
    samples.write(
        tmp_path / "batch7.zip",
        [
            ("batch7/3/a.png", scans[0][1]),
            ("batch7/5/b.png", scans[1][1]),
            ("batch7/loose.png", scans[2][1]),
            ("__MACOSX/batch7/._a.png", b"junk"),
            ("batch7/.DS_Store", b"junk"),
        ],
    )
    items, problems = labels.with_labels(find(tmp_path / "batch7.zip"), "dirname", None, DIGITS, "cnn")
    assert {it.key: it.label for it in items} == {
        "batch7/3/a.png": "3",
        "batch7/5/b.png": "5",
        "batch7/loose.png": None,
    }
    assert problems == {}
    samples.write(tmp_path / "in" / "3.zip", [("3/c.png", scans[3][1]), ("3/d.png", scans[4][1])])
    samples.write(tmp_path / "in" / "4" / "fours.zip", [("e.png", scans[5][1])])
    items, _ = labels.with_labels(find(tmp_path / "in"), "dirname", None, DIGITS, "cnn")
    assert {it.key: it.label for it in items} == {
        "3.zip/3/c.png": "3",
        "3.zip/3/d.png": "3",
        "4/fours.zip/e.png": "4",
    }


def test_a_folder_thousands_of_levels_deep_never_stops_the_listing(deep, scans):
    """1,100 levels (paths of 2,200 characters) are listed; 2,500 levels pass the system's path limit,
    and the folder where listing stops gets its row. Nothing recurses once per level."""
    tmp_path = deep
    (tmp_path / "top.png").write_bytes(scans[1][1])
    found = find(tmp_path)
    assert [(len(it.source) - len(str(tmp_path)), it.error) for it in found[:3]] == [
        (len("/top.png"), None),
        (len("/d/a.png"), None),
        (1100 * 2 + len("/a.png"), None),
    ]
    assert len(found) == 4
    assert found[3].error == "cannot list folder: File name too long; its files were not read"
    assert found[3].source.startswith(f"{tmp_path}/d/d/")
    assert len(found[3].source) >= 4096 - len("/d")
    got = rows(found)
    assert [r["error"] for r in got][:3] == [None, None, None]
    assert got[2]["data"] == scans[0][1]


@pytest.mark.parametrize(
    "name",
    [
        "3/a.png",
        "./3/a.png",
        "3//a.png",
        "3/a/",
        "",
        ".",
        "..",
        "a/../b",
        "/x/y",
        "a/./b",
        "x",
        "a/.hidden/b.png",
        "...",
        "a..b/c",
    ],
)
def test_tidy_names_as_pathlib_does(name):
    """Names already tidy are returned without parsing; the rest as pathlib normalises them."""
    from pathlib import PurePosixPath

    from hdr_dist.common.names import tidy

    assert tidy(name) == (name if name.startswith("/") else PurePosixPath(name).as_posix())
