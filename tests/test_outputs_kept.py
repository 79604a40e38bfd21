"""score and forms write what they wrote before the bulk engine took its shape: the same rows, columns,
types, answers and decisions, with confidences within 1e-6, on a fixed set of inputs.

The inputs are kept in ``tests/data/kept/`` with the ``cnn`` and ``crnn`` checkpoints beside them; the
expected outputs (``tests/data/kept/expected.json``) were written by the code before the change. A
change that alters an output on purpose regenerates them in the same commit and says why:

    python -m tests.test_outputs_kept            # rewrites tests/data/kept/expected.json

Run-dependent values (seconds, rates, node ids, absolute paths, timestamps) are left out.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from tests.helpers import ROOT, kept_models

DATA = ROOT / "tests" / "data"
KEPT = DATA / "kept"
EXPECTED = KEPT / "expected.json"
TOLERANCE = 1e-6
# Columns and summary keys that differ from run to run, or name where the run happened.
# Paths are kept, with the test data's folder and the run's written as <data> and <out>.
RUN_DEPENDENT = {"images_by_node", "pages_by_node", "node", "nodes", "started", "finished"}


def run_dependent(key: str) -> bool:
    return key in RUN_DEPENDENT or "seconds" in key or "_per_s" in key


RUNS = {
    "score-digits": [
        "score",
        "digits-before-the-layout.zip",
        "kept/hostile.zip",
        "--model",
        "cnn-before-the-layout.pt",
        "--target-error",
        "0.01",
        "--labels",
        "kept/digit-labels.csv",
    ],
    "score-fields": [
        "score",
        "fields-before-the-layout.zip",
        "--model",
        "crnn-before-the-layout.pt",
        "--threshold",
        "0.5",
        "--top-k",
        "2",
    ],
    "forms": [
        "forms",
        "kept/forms.zip",
        "--template",
        "kept/claim-v1.yaml",
        "--model",
        "{models}",
        "--target-error",
        "0.01",
        "--calibration-pages",
        "0",
        "--labels",
        "kept/truth.csv",
    ],
}


def run_job(name: str, tmp: Path, data: Path = DATA, *extra: str) -> Path:
    """One of ``RUNS`` into ``tmp/NAME``, its inputs under ``data`` laid out as in tests/data."""
    from hdr_dist.jobs import forms, score

    job, argv = job_argv(name, tmp, data)
    out = tmp / name
    assert {"score": score.main, "forms": forms.main}[job]([*argv, "--output", str(out), *extra]) == 0
    return out


def job_argv(name: str, tmp: Path, data: Path) -> tuple[str, list[str]]:
    """One of ``RUNS``'s job and arguments, its inputs under ``data``, its models' folder under ``tmp``."""
    job, *args = RUNS[name]
    argv = [str(data / a) if (data / a).exists() else a for a in args]
    return job, [str(kept_models(tmp / "models", data)) if a == "{models}" else a for a in argv]


def plain(value, out: Path, data: Path = DATA):
    """A value as JSON holds it, with run-dependent keys of nested records left out."""
    if isinstance(value, dict):
        return {k: plain(v, out, data) for k, v in sorted(value.items()) if not run_dependent(k)}
    if isinstance(value, (list, tuple)):
        return [plain(v, out, data) for v in value]
    if isinstance(value, str):
        return value.replace(str(out.parent), "<out>").replace(str(data), "<data>")
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def table_of(table: pa.Table, out: Path, data: Path = DATA) -> dict:
    """A table's schema (names and types) and its rows in a stable order."""
    keep = [f for f in table.schema if not run_dependent(f.name)]
    rows = [plain(r, out, data) for r in table.select([f.name for f in keep]).to_pylist()]
    return {
        "schema": [[f.name, str(f.type)] for f in keep],
        "rows": sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str)),
    }


def outputs_of(out: Path, data: Path = DATA) -> dict:
    """Every Parquet table and JSON file an output holds, by its path under the output."""
    found = {}
    for folder in ("predictions", "fields", "forms"):
        if (out / folder).is_dir():
            found[folder] = table_of(pads.dataset(out / folder).to_table(), out, data)
    for path in sorted(out.rglob("*.parquet")):
        if path.relative_to(out).parts[0] not in ("predictions", "fields", "forms"):
            found[str(path.relative_to(out))] = table_of(pq.read_table(path), out, data)
    for path in sorted(out.rglob("*.json")):
        found[str(path.relative_to(out))] = plain(json.loads(path.read_text()), out, data)
    for path in sorted(out.glob("*.csv")):
        found[str(path.relative_to(out))] = plain(path.read_text().splitlines(), out, data)
    return found


def differences(expected, got, where: str = "") -> list[str]:
    """Where two outputs differ: values equal, numbers within ``TOLERANCE``."""
    if isinstance(expected, dict) and isinstance(got, dict):
        keys = sorted(set(expected) | set(got))
        return [
            d
            for k in keys
            for d in differences(expected.get(k, "<absent>"), got.get(k, "<absent>"), f"{where}/{k}")
        ]
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where}: {len(expected)} items expected, {len(got)} found"]
        return [d for i, (e, g) in enumerate(zip(expected, got)) for d in differences(e, g, f"{where}[{i}]")]
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(got, numbers) and not isinstance(expected, bool):
        return [] if abs(expected - got) <= TOLERANCE else [f"{where}: {expected!r} expected, {got!r} found"]
    return [] if expected == got else [f"{where}: {expected!r} expected, {got!r} found"]


def test_differences_finds_a_changed_confidence_and_a_missing_row():
    assert differences({"a": [1.0, 2.0]}, {"a": [1.0, 2.0 + 1e-7]}) == []
    assert differences({"a": [1.0]}, {"a": [1.1]}) == ["/a[0]: 1.0 expected, 1.1 found"]
    assert differences({"a": [1, 2]}, {"a": [1]}) == ["/a: 2 items expected, 1 found"]
    assert differences({"a": "x"}, {}) == ["/a: 'x' expected, '<absent>' found"]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_bulk_job_writes_what_it_wrote_before(ray_cluster, tmp_path, name):
    expected = json.loads(EXPECTED.read_text())[name]
    found = differences(expected, outputs_of(run_job(name, tmp_path)))
    assert not found, f"{len(found)} differences, the first: " + "; ".join(found[:10])


# Outputs the code before the bulk engine (e39491d) wrote, with the folder its inputs lay in then (laid
# out as tests/data, in /tmp/oldgen/in): `jobs/score.py IN/digits-before-the-layout.zip --model
# cnn-before-the-layout.pt --target-error 0.01 --labels IN/kept/digit-labels.csv`, and `jobs/forms.py
# IN/kept/forms.zip` with the flags of RUNS["forms"]; a resumed run adds to them (report, figures and
# review pages left out, as every run makes them again).
OLD_OUTPUTS = KEPT / "old-outputs"
OLD_INPUTS = "/tmp/oldgen/in"
# What a resumed run says of itself differs from a fresh run's, by design; its rows must not.
RESUME_DEPENDENT = ("summary.json", "run.json")


def relocate(out: Path, old: str, new: str) -> None:
    """An output moved with its inputs: every path it records under ``old`` now under ``new``."""
    for path in out.rglob("*.parquet"):
        table = pq.read_table(path)
        columns = [
            pa.array([v.replace(old, new) if v else v for v in c.to_pylist()], c.type)
            if pa.types.is_string(c.type)
            else c
            for c in table.columns
        ]
        pq.write_table(pa.Table.from_arrays(columns, schema=table.schema), path)
    for path in [*out.rglob("*.json"), *out.glob("*.csv")]:
        path.write_text(path.read_text().replace(old, new))


def old_output(tmp_path: Path, job: str, name: str) -> Path:
    """The kept inputs under ``tmp_path/in`` and the old ``job`` output relocated to them, as ``run/NAME``;
    the inputs' folder."""
    data = tmp_path / "in"
    (data / "kept").mkdir(parents=True)
    for name_in_data in (
        "digits-before-the-layout.zip",
        "cnn-before-the-layout.pt",
        "crnn-before-the-layout.pt",
    ):
        shutil.copy(DATA / name_in_data, data)
    for kept in (
        "hostile.zip",
        "forms.zip",
        "claim-v1.yaml",
        "claim-v1.png",
        "truth.csv",
        "digit-labels.csv",
    ):
        shutil.copy(KEPT / kept, data / "kept")
    shutil.copytree(OLD_OUTPUTS / job, tmp_path / "run" / name)
    relocate(tmp_path / "run" / name, OLD_INPUTS, str(data))
    return data


def test_a_score_output_written_before_the_change_resumes_to_the_same_rows(ray_cluster, tmp_path):
    name, job = "score-digits", "score"
    data = old_output(tmp_path, job, name)
    found = outputs_of(run_job(name, tmp_path / "run", data, "--resume"), data)
    expected = json.loads(EXPECTED.read_text())[name]
    for kept in RESUME_DEPENDENT:
        del expected[kept], found[kept]
    wrong = differences(expected, found)
    assert not wrong, f"{len(wrong)} differences, the first: " + "; ".join(wrong[:10])
    summary = json.loads((tmp_path / "run" / name / "summary.json").read_text())
    # the old output held the 20 digits; the resumed run scored the 3 hostile files
    assert summary["skipped_already_scored"] == 20
    assert summary["images_this_run"] == 3


def test_a_forms_output_read_the_old_way_is_not_resumed_into_a_mix(ray_cluster, tmp_path, capsys):
    """Forms now drops the print and cuts cells otherwise: resuming an output read before that would mix
    two readings in one output, so it is refused in one line, and the old rows are left as they were."""
    from hdr_dist.jobs import forms

    data = old_output(tmp_path, "forms", "forms")
    before = sorted(p.read_bytes() for p in (tmp_path / "run" / "forms" / "fields").rglob("*.parquet"))
    _, argv = job_argv("forms", tmp_path, data)
    assert forms.main([*argv, "--output", str(tmp_path / "run" / "forms"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume would mix" in err[0], err
    after = sorted(p.read_bytes() for p in (tmp_path / "run" / "forms" / "fields").rglob("*.parquet"))
    assert after == before


def regenerate() -> None:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        expected = {name: outputs_of(run_job(name, Path(tmp))) for name in sorted(RUNS)}
    EXPECTED.write_text(json.dumps(expected, indent=1, sort_keys=True, default=str) + "\n")
    print(f"wrote {EXPECTED}")


def make_inputs() -> None:
    """The kept inputs: a few sample form pages in several formats with odd pages among them, hostile
    files for score, and labels. Run once; the files are kept, so later changes to the samples do not
    move them."""
    import csv
    import zipfile

    import numpy as np

    from hdr_dist.forms import samples

    KEPT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        samples.write(root, pages=9, seed=11)
        for big in [*(root / "pages").glob("*.png"), *(root / "pages").glob("*-tiff.tif")]:
            big.unlink()  # noisy full pages take megabytes; JPEG, G4 TIFF and PDF are kept
        (root / "pages" / "garbage.png").write_bytes(np.random.default_rng(1).bytes(3000))
        (root / "pages" / "empty.tif").write_bytes(b"")
        with zipfile.ZipFile(KEPT / "forms.zip", "w") as z:
            for f in sorted((root / "pages").iterdir()):
                z.write(f, f.name)
        shutil.copy(root / "claim-v1.yaml", KEPT / "claim-v1.yaml")
        shutil.copy(root / "claim-v1.png", KEPT / "claim-v1.png")
        kept = {p.name for p in (root / "pages").iterdir()}
        with open(root / "truth.csv") as f:
            rows = [r for r in csv.reader(f) if r[0] == "path" or r[0] in kept]
        with open(KEPT / "truth.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)
    with zipfile.ZipFile(KEPT / "hostile.zip", "w") as z:
        z.writestr("garbage.png", np.random.default_rng(2).bytes(500))
        z.writestr("empty.png", b"")
        z.writestr("notes.txt", b"not an image")
    with zipfile.ZipFile(DATA / "digits-before-the-layout.zip") as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
    expected = json.loads((DATA / "before-the-layout.json").read_text())["cnn"]
    labels = {e["member"]: e["pred_label"] for e in expected}
    with open(KEPT / "digit-labels.csv", "w", newline="") as f:
        rows = [[n, labels[n] if i % 7 else "0"] for i, n in enumerate(names)]
        csv.writer(f).writerows([["path", "label"], *rows])


if __name__ == "__main__":
    if "--inputs" in sys.argv:
        make_inputs()
    regenerate()
