"""``hdr compare`` / ``python jobs/compare.py``: train each model with Ray Train, test it once,
print the results beside the seeds' figures and write them as Parquet.

Run locally it starts Ray on this machine; under ``ray job submit`` (or with
``--address``) it joins that cluster. Re-running the same command with the same
``--output`` resumes each model from its last checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from rich.console import Console

from hdr_dist import data, evaluate, models, report, train
from hdr_dist.augment import AugmentRanges
from hdr_dist.cli import Parser, connect, positive, run_job
from hdr_dist.errors import UserError

DEFAULT_MODELS = "cnn,lstm"


def parser(prog: str = "hdr compare") -> Parser:
    p = Parser(prog=prog, description="Train each model with Ray Train, test it once on the test split, "
                                      "print the results beside the seeds' figures and write them as Parquet.")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="mnist", choices=data.DATASETS,
                   help="mnist is embedded; emnist-* read the official IDX files in --data-dir (default: %(default)s)")
    g.add_argument("--data-dir", help="folder with the dataset's IDX files (default for mnist: the embedded copy)")
    g.add_argument("--limit-train", type=positive, help="use a stratified sample of N training images")
    g.add_argument("--limit-test", type=positive, help="use a stratified sample of N test images")
    g.add_argument("--preprocess", choices=("none", "scan"), default="none",
                   help="scan: pass every image through score's scan preprocessing first (default: %(default)s)")
    g = p.add_argument_group("models and training")
    g.add_argument("--models", default=DEFAULT_MODELS, help=f"comma list from: {', '.join(models.RECIPES)} (default: %(default)s)")
    g.add_argument("--epochs", type=positive, help="default: each model's recipe")
    g.add_argument("--batch-size", type=positive, help="global batch size, split across workers (default: recipe)")
    g.add_argument("--lr", type=float, help="peak learning rate (default: recipe)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random rotation/shift/zoom (default: on for cnn and lstm, off for the *-seed models)")
    g.add_argument("--rotation", type=float, default=AugmentRanges.rotation, help="augmentation: max rotation, degrees (default: %(default)s)")
    g.add_argument("--shift", type=float, default=AugmentRanges.shift, help="augmentation: max shift, fraction of the side (default: %(default)s)")
    g.add_argument("--zoom", type=float, default=AugmentRanges.zoom, help="augmentation: max zoom in or out, fraction (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="seeds hold-out, init, shuffles, augmentation (default: %(default)s)")
    g = p.add_argument_group("Ray")
    g.add_argument("--workers", type=positive, default=2, help="Ray Train workers, data-parallel processes (default: %(default)s)")
    g.add_argument("--cpus-per-worker", type=positive, default=1, help="CPUs, and torch threads, per worker (default: %(default)s)")
    g.add_argument("--gpu", choices=("auto", "on", "off"), default="auto",
                   help="auto: one GPU per worker when the cluster has enough (default: %(default)s)")
    g.add_argument("--max-failures", type=int, default=0, help="worker failures Ray Train recovers from (default: %(default)s)")
    g.add_argument("--address", help="Ray cluster to join, or 'auto' for a `ray start` cluster on this machine "
                        "(default: RAY_ADDRESS, else a new local Ray)")
    g = p.add_argument_group("output")
    g.add_argument("--output", default="results", help="folder for the Parquet results (default: %(default)s)")
    g.add_argument("--storage-path",
                   help="Ray Train checkpoint storage: a folder or a pyarrow URI such as s3://bucket/path "
                        "(default: OUTPUT/ray_train)")
    return p


def model_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--models is empty")
    for n in names:
        models.recipe(n)  # raises UserError naming the unknown model
    return list(dict.fromkeys(names))


def prepare_output(path: str) -> Path:
    out = Path(path).expanduser().resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".hdr-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--output {out}: cannot write there ({e.strerror or e})") from None
    return out


def storage_location(flag: str | None, output: Path) -> str:
    if flag is None:
        return str(output / "ray_train")
    return flag if "://" in flag else str(Path(flag).expanduser().resolve())


def placement(workers: int, cpus_per_worker: int, gpu: str) -> bool:
    """Whether to use GPUs; refuse at once a request the cluster can never place (Ray would wait forever)."""
    import ray

    total = ray.cluster_resources()
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    gpus = int(total.get("GPU", 0))
    use_gpu = gpu == "on" or (gpu == "auto" and gpus >= workers)
    if gpu == "on" and gpus < workers:
        raise UserError(f"--gpu on with --workers {workers} needs {workers} GPUs; the Ray cluster has {gpus}")
    cpus = total.get("CPU", 0)
    if workers * cpus_per_worker > cpus:
        raise UserError(f"--workers {workers} x --cpus-per-worker {cpus_per_worker} needs "
                        f"{workers * cpus_per_worker} CPUs; the Ray cluster has {cpus:g}")
    if not any(n.get("CPU", 0) >= cpus_per_worker for n in nodes):
        raise UserError(f"--cpus-per-worker {cpus_per_worker}: no node of the Ray cluster has that many CPUs")
    return use_gpu


def run_name(cfg: dict, workers: int) -> str:
    """Same settings -> same name -> Ray Train resumes; changed settings start a new run."""
    settings = {k: v for k, v in cfg.items() if k != "data"} | {"workers": workers}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{cfg['dataset']}-{cfg['model']}-{digest}"


def checkpoint_uri(checkpoint) -> str:
    """The checkpoint's model file, so ``torch.load(row["checkpoint"], weights_only=True)`` works."""
    fs = checkpoint.filesystem.type_name
    path = f"{checkpoint.path}/{train.CHECKPOINT_FILE}"
    return path if fs == "local" else f"{fs}://{path}"


def load_state(checkpoint) -> dict:
    with checkpoint.as_directory() as folder:
        return train.load_checkpoint(folder)


def train_and_test(name: str, ds: data.Dataset, args, data_ref, storage: str, use_gpu: bool):
    """Ray Train one model, then score its best checkpoint (by validation accuracy) on the test split."""
    cfg = train.config(name, ds, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       augment=args.augment, seed=args.seed, rotation=args.rotation, shift=args.shift,
                       zoom=args.zoom, cpus_per_worker=args.cpus_per_worker, preprocess=args.preprocess)
    try:
        result = train.fit(cfg | {"data": data_ref}, workers=args.workers, use_gpu=use_gpu,
                           storage_path=storage, name=run_name(cfg, args.workers),
                           max_failures=args.max_failures)
    except SystemExit:  # Ray Train's own Ctrl-C handler aborts the run, then exits
        raise KeyboardInterrupt from None
    best = max(result.best_checkpoints, key=lambda cm: cm[1]["val_acc"])[0]
    history = load_state(result.checkpoint)["history"]
    scores = evaluate.evaluate_state(load_state(best), ds.test.x, ds.test.y)
    row = report.metrics_row(ds.name, name, scores, train_seconds=sum(h["seconds"] for h in history),
                             epochs=len(history), num_workers=args.workers,
                             device="gpu" if use_gpu else "cpu", checkpoint=checkpoint_uri(best))
    return row, scores, history


def run(args, console: Console) -> int:
    started = time.perf_counter()
    names = model_names(args.models)
    output = prepare_output(args.output)
    storage = storage_location(args.storage_path, output)
    ds = data.load(args.dataset, args.data_dir, seed=args.seed, limit_train=args.limit_train,
                   limit_test=args.limit_test, scan_preprocess=args.preprocess == "scan")
    console.print(f"[bold]{ds.name}[/]: {len(ds.train.y):,} train / {len(ds.val.y):,} validation / "
                  f"{len(ds.test.y):,} test images, {ds.num_classes} classes; models {', '.join(names)}")
    connect(args.address)
    use_gpu = placement(args.workers, args.cpus_per_worker, args.gpu)

    import ray

    data_ref = ray.put(train.arrays_of(ds))  # one copy in the object store, read by every worker
    tables = {"metrics": [], "per_class": [], "confusion": [], "history": []}
    for name in names:
        row, scores, history = train_and_test(name, ds, args, data_ref, storage, use_gpu)
        tables["metrics"].append(row)
        tables["per_class"] += report.per_class_rows(ds.name, name, scores, ds.labels)
        tables["confusion"] += report.confusion_rows(ds.name, name, scores)
        tables["history"] += report.history_rows(ds.name, name, history)
        report.write_tables(output, tables)  # after every model: a later failure loses nothing
    report.print_table(tables["metrics"], console)
    console.print(f"results in {output} ({time.perf_counter() - started:.0f} s)")
    return 0


def main(argv=None, prog: str = "hdr compare") -> int:
    args = parser(prog).parse_args(argv)
    return run_job(run, args, prog, "run the same command again to resume from the last checkpoint")
