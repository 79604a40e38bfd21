"""hdr forms on the shipped sample form: registration, accuracy per kind of zone, the reject option,
throughput against a plain loop, and (with --memory-pages) peak memory over a long run.

    python benchmarks/forms_accuracy.py [--model RESULTS] [--pages 500] [--memory-pages 2000]

RESULTS is a ``compare --output`` folder holding a ``cnn`` and a ``crnn`` (``hdr compare --models
cnn,crnn``); without it, the readers shipped with hdr-dist read the pages. The pages (``python -m
hdr_dist.forms.samples``: MNIST test digits on a claim form, in PNG, JPEG, TIFF, G4 TIFF and PDF,
rotated, scaled, shifted, some upside down, with stray pages) are made once and reused.

(a) is what one would write without Ray: one process decoding, registering, dropping the form,
cutting the zones and reading them in batches of pages with the job's own functions, timed per
stage; it runs before and after the Ray runs and its mean is the baseline. (b) is ``hdr forms`` in
this process against a local Ray already up, with the truth as ``--labels`` and ``--target-error
0.01``: its rows are recounted here against the truth. (c) is the same job without the length
constraint, and (d) with ``--dropout lines``: what each choice gains. (e), with ``--memory-pages``,
is a run over that many pages in a subprocess, its memory sampled from outside every 0.5 s, the
peak of its first and last thirds compared. The last line is JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa
from peak_memory import Peak

from hdr_dist.common import cluster
from hdr_dist.forms import pipeline, registration, samples, zones
from hdr_dist.forms import template as templates
from hdr_dist.forms.config import FormsConfig
from hdr_dist.imaging import images
from hdr_dist.jobs import forms
from hdr_dist.models import checkpoints, shipped

ROOT = Path(__file__).resolve().parents[1]


def rows_of(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def make_pages(folder: Path, pages: int) -> None:
    if (folder / "pages.csv").is_file() and len(rows_of(folder / "pages.csv")) == pages:
        return
    start = time.perf_counter()
    made = samples.write(folder, pages, seed=0)
    print(
        f"made {made['pages']:,} pages ({made['forms']:,} forms) in {made['files']:,} files under {folder} "
        f"in {time.perf_counter() - start:.0f} s"
    )


def plain(folder: Path, model: str | None, batch_size: int) -> dict:
    """Pages/s of the loop one would write without Ray, and the seconds each stage took."""
    start = time.perf_counter()
    template_path = str(folder / f"{samples.NAME}.yaml")
    template, reference, drop = zones.prepared_template(template_path, "reference")
    names = (None if model else shipped.DEFAULT["digit"], forms.FIELD_MODEL)
    states = [checkpoints.for_scoring(model, name)[0] for name in names]
    cfg = FormsConfig(
        inputs=(),
        template=template_path,
        labelled=False,
        dropout="reference",
        length_constraint=True,
        batch_size=batch_size,
        max_pixels=images.DEFAULT_MAX_PIXELS,
        commit_rows=1,
        commit_seconds=1.0,
        review_rows=0,
        use_gpu=False,
        concurrency=1,
        cpus_per_actor=os.cpu_count(),
        read_tasks=1,
        decoders=1,
        target_error=None,
        thresholds=None,
        threshold_source="none",
    )
    reader = pipeline.FormReader(*[s.lean() for s in states], template_path, cfg)
    stages = dict.fromkeys(("decode", "registration", "dropout", "reading"), 0.0)
    pending, n, fields = [], 0, 0

    def read():
        nonlocal fields
        t = time.perf_counter()
        answers = reader(pa.Table.from_pylist(pending, schema=pipeline.PAGE_SCHEMA))
        fields += sum(len(f) for f in answers.column("fields").to_pylist())
        stages["reading"] += time.perf_counter() - t
        pending.clear()

    for f in sorted((folder / "pages").iterdir()):
        t = time.perf_counter()
        pages = images.decode(f.read_bytes(), cfg.max_pixels, pdf_width=template.size[0])
        while True:
            try:
                page, total, w, h, gray, error = next(pages)
            except StopIteration:
                break
            finally:
                stages["decode"] += time.perf_counter() - t
            n += 1
            t = time.perf_counter()
            reg = registration.register(gray, reference) if error is None else None
            matched = reg is not None and reg.matched
            stages["registration"] += time.perf_counter() - t
            t = time.perf_counter()
            reads = (
                [r.__dict__ for r in zones.read_zones(gray, template, drop, reg.matrix)] if matched else []
            )
            boxes = [zones.page_box(z, reg) for z in template.zones] if matched else []
            stages["dropout"] += time.perf_counter() - t
            if error is None and not matched:
                error = f"does not match template {template.name}"
            pending.append(
                {
                    "source": str(f),
                    "member": "",
                    "occurrence": 0,
                    "page": page,
                    "pages": total,
                    "width": w,
                    "height": h,
                    "error": error,
                    "registration": reg.as_dict() if reg else None,
                    "boxes": boxes,
                    "reads": reads,
                }
            )
            if len(pending) == batch_size:
                read()
            t = time.perf_counter()
    if pending:
        read()
    seconds = time.perf_counter() - start
    return {
        "pages_per_s": round(n / seconds, 3),
        "pages": n,
        "fields": fields,
        "seconds": round(seconds, 1),
        "stage_seconds_per_page": {k: round(v / n, 4) for k, v in stages.items()},
    }


def model_flag(model: str | None) -> list[str]:
    """The job's --model, none for the shipped readers."""
    return ["--model", model] if model else []


def job(folder: Path, model: str | None, *extra: str, template: Path | None = None) -> dict:
    """One ``hdr forms`` run over the pages (of the claim form unless ``template`` says), in this
    process; its rows, metrics, summary and pages/s."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        code = forms.main(
            [
                str(folder / "pages"),
                "--template",
                str(template or folder / f"{samples.NAME}.yaml"),
                *model_flag(model),
                "--output",
                str(out),
                "--labels",
                str(folder / "truth.csv"),
                *extra,
            ]
        )
        seconds = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"hdr forms failed with status {code}")
        summary = json.loads((out / "summary.json").read_text())
        return {
            "seconds": seconds,
            "pages_per_s": summary["pages"] / seconds,
            "summary": summary,
            "forms": pads.dataset(out / "forms").to_table().to_pylist(),
            "fields": pads.dataset(out / "fields").to_table().to_pylist(),
            "metrics": pq.read_table(out / "metrics.parquet").to_pylist(),
        }


def recount(folder: Path, run: dict, cnn_accuracy: float) -> dict:
    """The issue's figures, recounted from the rows and the truth (not from the job's own metrics)."""
    kinds = {(r["path"], int(r["page"])): r["kind"] for r in rows_of(folder / "pages.csv")}
    truth = {(r["path"], int(r["page"]), r["field"]): r["label"] for r in rows_of(folder / "truth.csv")}
    rows = {(r["member"] or Path(r["source"]).name, r["page"]): r for r in run["forms"]}
    form_pages = [k for k, v in kinds.items() if v == "form"]
    strays = [k for k, v in kinds.items() if v != "form"]
    matched = sum(rows[k]["error"] is None for k in form_pages)
    template = templates.load(folder / f"{samples.NAME}.yaml")
    by_field: dict[str, list] = {z.name: [] for z in template.zones}
    for f in run["fields"]:
        key = (f["member"] or Path(f["source"]).name, f["page"], f["field"])
        if key in truth:
            by_field[f["field"]].append((truth[key], f))
    out = {
        "pages": len(kinds),
        "rows": len(run["forms"]),
        "form_pages": len(form_pages),
        "registered": round(matched / len(form_pages), 5),
        "strays": len(strays),
        "strays_rejected": sum(
            (rows[k]["error"] or "").startswith("does not match template") for k in strays
        ),
        "fields": {},
    }
    for z in template.zones:
        pairs = by_field[z.name]
        written = [(t, f) for t, f in pairs if t != ""]
        empty = [(t, f) for t, f in pairs if t == ""]
        entry = {
            "kind": z.kind,
            "written": len(written),
            "exact": round(sum(t == f["text"] for t, f in written) / max(1, len(written)), 4),
        }
        if z.kind == "comb":
            entry["target"] = round(0.99 * cnn_accuracy ** len(z.cells), 4)
        if empty:
            entry |= {
                "empty": len(empty),
                "empty_read_empty": round(sum(f["text"] == "" for _, f in empty) / len(empty), 4),
                "empty_invented": round(sum(bool(f["text"]) for _, f in empty) / len(empty), 4),
            }
        out["fields"][z.name] = entry
    empties = [(t, f) for pairs in by_field.values() for t, f in pairs if t == ""]
    out["empty_read_empty"] = round(sum(f["text"] == "" for _, f in empties) / max(1, len(empties)), 4)
    out["empty_invented"] = round(sum(bool(f["text"]) for _, f in empties) / max(1, len(empties)), 4)
    labelled = [(t, f) for pairs in by_field.values() for t, f in pairs]
    taken = [(t, f) for t, f in labelled if f["decision"] == "accept"]
    out["accepted_coverage"] = round(len(taken) / len(labelled), 4)
    out["accepted_error"] = round(sum(t != f["text"] for t, f in taken) / max(1, len(taken)), 4)
    out["exact_all_fields"] = round(sum(t == f["text"] for t, f in labelled) / len(labelled), 4)
    out["forms_read_right"] = run["summary"].get("forms_read_right")
    return out


def memory(folder: Path, model: str | None, pages: int) -> dict:
    """A run over ``pages`` pages in its own process, sampled from outside; flat means the last third's
    peak is no higher than the first third's."""
    make_pages(folder, pages)
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            sys.executable,
            str(ROOT / "jobs" / "forms.py"),
            str(folder / "pages"),
            "--template",
            str(folder / f"{samples.NAME}.yaml"),
            *model_flag(model),
            "--output",
            str(Path(tmp) / "out"),
        ]
        start = time.perf_counter()
        job_process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with Peak(job_process.pid, interval=0.5, timeline=True) as peak:
            job_process.wait()
        seconds = time.perf_counter() - start
        if job_process.returncode != 0:
            raise SystemExit(f"the {pages}-page run failed with status {job_process.returncode}")
        summary = json.loads((Path(tmp) / "out" / "summary.json").read_text())
    third = len(peak.timeline) // 3
    thirds = (peak.timeline[:third], peak.timeline[-third:])
    (first, last), (first_one, last_one), (first_own, last_own) = (
        [max(sample[k] for sample in part) / 2**30 for part in thirds] for k in (1, 2, 3)
    )
    return peak.gib() | {
        "pages": pages,
        "seconds": round(seconds, 1),
        "pages_per_s": round(pages / seconds, 3),
        "job_startup_seconds": summary["startup_seconds"],
        "job_steady_pages_per_s": summary["steady_pages_per_s"],
        "tree_peak_first_third_gib": round(first, 3),
        "tree_peak_last_third_gib": round(last, 3),
        "largest_process_peak_first_third_gib": round(first_one, 3),
        "largest_process_peak_last_third_gib": round(last_one, 3),
        "largest_process_last_over_first": round(last_one / first_one, 3),
        # without the object store's shared pages, which every process's RSS gains as it touches them
        "largest_private_peak_first_third_gib": round(first_own, 3),
        "largest_private_peak_last_third_gib": round(last_own, 3),
        "largest_private_last_over_first": round(last_own / first_own, 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", help="compare output folder with a cnn and a crnn (default: the shipped readers)"
    )
    p.add_argument("--pages", type=int, default=500)
    p.add_argument(
        "--folder", type=Path, help="where the pages are made once (default: results-bench/forms-PAGES)"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--memory-pages", type=int, default=0, help="also (e): a run over this many pages, its memory"
    )
    p.add_argument("--only-memory", action="store_true", help="run (e) alone")
    p.add_argument("--no-variants", dest="variants", action="store_false", help="skip (c) and (d)")
    args = p.parse_args()
    folder = args.folder or ROOT / f"results-bench/forms-{args.pages}"
    print(f"{os.cpu_count()} CPUs")
    if args.only_memory:
        mem = memory(ROOT / f"results-bench/forms-{args.memory_pages}", args.model, args.memory_pages)
        print(f"(e) {args.memory_pages:,} pages: {json.dumps(mem)}")
        print(json.dumps({"memory": mem}))
        return 0
    make_pages(folder, args.pages)
    if args.model:
        metrics = {r["model"]: r for r in pq.read_table(Path(args.model) / "metrics.parquet").to_pylist()}
        cnn_accuracy, crnn_fields = metrics["cnn"]["accuracy"], metrics["crnn"].get("field_accuracy")
    else:
        cnn_accuracy = shipped.card("cnn")["figures"]["mnist_test_accuracy"]
        crnn_fields = shipped.card("crnn")["figures"]["fields_1_to_12_exact"]

    before = plain(folder, args.model, args.batch_size)
    print(
        f"(a) plain loop: {before['pages_per_s']:.3f} pages/s; seconds per page by stage "
        f"{before['stage_seconds_per_page']}"
    )
    cluster.connect(None)  # a local Ray, up before the clock starts, as a cluster would be
    main_run = job(folder, args.model, "--target-error", "0.01")
    figures = recount(folder, main_run, cnn_accuracy)
    print(f"(b) hdr forms: {main_run['pages_per_s']:.3f} pages/s; {json.dumps(figures)}")
    variants = {}
    if args.variants:
        free = recount(folder, job(folder, args.model, "--no-length-constraint"), cnn_accuracy)
        print(
            f"(c) without the length constraint: amount exact {free['fields']['amount']['exact']:.4f} "
            f"against {figures['fields']['amount']['exact']:.4f} with it"
        )
        lines = recount(folder, job(folder, args.model, "--dropout", "lines"), cnn_accuracy)
        print(
            f"(d) --dropout lines: all fields exact {lines['exact_all_fields']:.4f} against "
            f"{figures['exact_all_fields']:.4f} with reference; per field "
            f"{ {k: v['exact'] for k, v in lines['fields'].items()} }"
        )
        variants = {
            "no_length_constraint": {
                "amount_exact": free["fields"]["amount"]["exact"],
                "exact_all_fields": free["exact_all_fields"],
            },
            "lines_dropout": {
                "exact_all_fields": lines["exact_all_fields"],
                "fields": {k: v["exact"] for k, v in lines["fields"].items()},
                "empty_read_empty": lines["empty_read_empty"],
            },
        }
    import ray

    ray.shutdown()
    after = plain(folder, args.model, args.batch_size)
    baseline = (before["pages_per_s"] + after["pages_per_s"]) / 2
    ratio = main_run["pages_per_s"] / baseline
    print(
        f"(a) plain loop again: {after['pages_per_s']:.3f} pages/s; baseline {baseline:.3f}; "
        f"the job {ratio:.2f}x"
    )
    mem = (
        memory(ROOT / f"results-bench/forms-{args.memory_pages}", args.model, args.memory_pages)
        if args.memory_pages
        else None
    )
    if mem:
        print(f"(e) {args.memory_pages:,} pages: {json.dumps(mem)}")
    print(
        json.dumps(
            {
                "cpus": os.cpu_count(),
                "pages": args.pages,
                "cnn_accuracy": cnn_accuracy,
                "crnn_field_accuracy": crnn_fields,
                "plain_pages_per_s": round(baseline, 3),
                "plain_runs": [before["pages_per_s"], after["pages_per_s"]],
                "plain_stage_seconds_per_page": before["stage_seconds_per_page"],
                "job_pages_per_s": round(main_run["pages_per_s"], 3),
                "ratio": round(ratio, 3),
                "job_startup_seconds": main_run["summary"].get("startup_seconds"),
                "job_seconds": round(main_run["seconds"], 1),
                "job_pipeline_seconds": main_run["summary"]["seconds"],
                "reference_dropout": figures,
                **variants,
                "memory": mem,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
