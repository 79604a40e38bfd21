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
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from hdr_dist import classical, cluster, data, evaluate, models, report, train
from hdr_dist.augment import AugmentRanges
from hdr_dist.cli import Parser, connect, positive, run_job
from hdr_dist.errors import UserError

DEFAULT_MODELS = "cnn,lstm"
# The whole HDaLR comparison: this project's deep models, then 002's classical ones.
ALL_MODELS = ("cnn", "lstm", *classical.MODELS)


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
    g.add_argument("--models", default=DEFAULT_MODELS,
                   help=f"comma list from: deep {', '.join(models.RECIPES)}; classical {', '.join(classical.MODELS)}; "
                        f"or all ({', '.join(ALL_MODELS)}) (default: %(default)s)")
    g.add_argument("--config", help="JSON of settings, such as tune's best_config.json; flags given here win")
    g.add_argument("--epochs", type=positive, help="default: each model's recipe")
    g.add_argument("--batch-size", type=positive, help="global batch size, split across workers (default: recipe)")
    g.add_argument("--lr", type=float, help="peak learning rate (default: recipe)")
    g.add_argument("--weight-decay", type=float, help="(default: recipe)")
    g.add_argument("--dropout", type=float, help="dropout before the classifier (default: recipe)")
    g.add_argument("--width", type=float, default=1.0,
                   help="multiplies the recipe's channels (cnn) or hidden size (lstm) (default: %(default)s)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random rotation/shift/zoom (default: on for cnn and lstm, off for the *-seed models)")
    g.add_argument("--rotation", type=float, default=AugmentRanges.rotation, help="augmentation: max rotation, degrees (default: %(default)s)")
    g.add_argument("--shift", type=float, default=AugmentRanges.shift, help="augmentation: max shift, fraction of the side (default: %(default)s)")
    g.add_argument("--zoom", type=float, default=AugmentRanges.zoom, help="augmentation: max zoom in or out, fraction (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="seeds hold-out, init, shuffles, augmentation (default: %(default)s)")
    g.add_argument("--cv-limit", type=positive, default=10_000,
                   help="svm-rbf: training images its C x gamma cross-validation uses (default: %(default)s)")
    g = p.add_argument_group("Ray")
    g.add_argument("--workers", type=positive, default=2, help="Ray Train workers, data-parallel processes (default: %(default)s)")
    g.add_argument("--cpus-per-worker", type=positive, default=1,
                   help="CPUs, and threads, per Train worker and per classical model's task (default: %(default)s)")
    g.add_argument("--gpu", choices=("auto", "on", "off"), default="auto",
                   help="auto: one GPU per worker when the cluster has enough (default: %(default)s)")
    g.add_argument("--max-failures", type=int, default=0, help="worker failures Ray Train recovers from (default: %(default)s)")
    placement_flag(g)
    g.add_argument("--address", help="Ray cluster to join, or 'auto' for a `ray start` cluster on this machine "
                        "(default: RAY_ADDRESS, else a new local Ray)")
    g = p.add_argument_group("output")
    g.add_argument("--output", default="results", help="folder for the Parquet results (default: %(default)s)")
    g.add_argument("--storage-path",
                   help="Ray Train checkpoint storage: a folder or a pyarrow URI such as s3://bucket/path "
                        "(default: OUTPUT/ray_train)")
    return p


def placement_flag(group) -> None:
    group.add_argument("--placement-timeout", type=float, metavar="SECONDS",
                       help="when the cluster cannot place --workers yet, wait this long for nodes to join "
                            f"(default: {cluster.AUTOSCALER_WAIT_S} s if the cluster has an autoscaler, else fail at once)")


def storage_flags(args, output: Path, storage: str) -> dict[str, str]:
    """The flag that chose the checkpoint storage (``storage``, from ``storage_location``), and
    where it is: what every node must reach."""
    return {"--storage-path": storage} if args.storage_path else {"--output": str(output)}


def model_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--models is empty")
    names = [m for n in names for m in (ALL_MODELS if n == "all" else (n,))]
    for n in names:
        if n not in classical.MODELS:
            models.recipe(n)  # raises UserError naming the unknown model
    return list(dict.fromkeys(names))


def config_flags(path: str, p: Parser) -> list[str]:
    """A ``--config`` JSON file as the flags it stands for, so argparse checks every value."""
    try:
        settings = json.loads(Path(path).expanduser().read_text())
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"--config {path}: not a JSON file ({e})") from None
    if not isinstance(settings, dict):
        raise UserError(f"--config {path}: want a JSON object of settings")
    actions = {a.dest: a for a in p._actions if a.option_strings and a.dest not in ("help", "config")}
    flags = []
    for key, value in settings.items():
        action = actions.get(key)
        if action is None:
            raise UserError(f"--config {path}: unknown setting {key!r}")
        if isinstance(action, argparse.BooleanOptionalAction):
            if not isinstance(value, bool):
                raise UserError(f"--config {path}: {key} must be true or false, got {value!r}")
            flags.append(f"--{'' if value else 'no-'}{key.replace('_', '-')}")
        else:
            flags += [action.option_strings[0], str(value)]
    return flags


def parse(argv, prog: str) -> argparse.Namespace:
    """The flags, with ``--config``'s settings read in first so that flags on the command line win."""
    argv = sys.argv[1:] if argv is None else list(argv)
    p = parser(prog)
    args = p.parse_args(argv)
    if args.config:
        try:
            flags = config_flags(args.config, p)
        except UserError as e:
            p.error(str(e))
        p.prog = f"{prog} (--config {args.config})"  # a bad value in the file names the file
        args = p.parse_args([*flags, *argv])
    return args


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


def storage_location(flag: str | None, default: Path) -> str:
    """``--storage-path`` as Ray wants it: a URI as given, a folder made absolute."""
    if flag is None:
        return str(default)
    return flag if "://" in flag else str(Path(flag).expanduser().resolve())


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
                       weight_decay=args.weight_decay, dropout=args.dropout, width=args.width,
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
                             epochs=len(history), num_workers=args.workers, num_nodes=history[-1].get("nodes"),
                             device="gpu" if use_gpu else "cpu", checkpoint=checkpoint_uri(best),
                             method=f"{name} recipe", approximation="")
    return row, scores, history


def classical_row(name: str, ds: data.Dataset, result: dict) -> tuple[dict, dict]:
    scores = evaluate.metrics(ds.test.y, result["pred"], ds.num_classes)
    row = report.metrics_row(ds.name, name, scores | {"infer_images_per_s": result["infer_images_per_s"]},
                             train_seconds=result["train_seconds"], epochs=None, params=None, num_workers=1,
                             num_nodes=1, device="cpu", checkpoint=None, method=result["method"],
                             approximation=classical.APPROXIMATIONS.get(name, ""))
    return row, scores


def run(args, console: Console) -> int:
    started = time.perf_counter()
    names = model_names(args.models)
    deep = [n for n in names if n not in classical.MODELS]
    shallow = [n for n in names if n in classical.MODELS]
    output = prepare_output(args.output)
    storage = storage_location(args.storage_path, output / "ray_train")
    ds = data.load(args.dataset, args.data_dir, seed=args.seed, limit_train=args.limit_train,
                   limit_test=args.limit_test, scan_preprocess=args.preprocess == "scan")
    console.print(f"[bold]{ds.name}[/]: {len(ds.train.y):,} train / {len(ds.val.y):,} validation / "
                  f"{len(ds.test.y):,} test images, {ds.num_classes} classes; models {', '.join(names)}")
    connect(args.address)
    use_gpu = (cluster.placement(args.workers, args.cpus_per_worker, args.gpu, args.placement_timeout, console)
               if deep else False)
    if shallow:
        cluster.placement(1, args.cpus_per_worker, "off", args.placement_timeout, console)
    cluster.require_shared(storage_flags(args, output, storage))

    import ray

    data_ref = ray.put(train.arrays_of(ds))  # one copy in the object store, read by every worker and task
    tables = {"metrics": [], "per_class": [], "confusion": [], "history": [], "mistakes": []}

    def record(name, row, scores, history=()):
        tables["metrics"].append(row)
        tables["per_class"].extend(report.per_class_rows(ds.name, name, scores, ds.labels))
        tables["confusion"].extend(report.confusion_rows(ds.name, name, scores))
        tables["history"].extend(report.history_rows(ds.name, name, history))
        if "probs" in scores:  # the deep models; the classical ones give no probabilities here
            tables["mistakes"].extend(report.mistake_rows(ds.name, name, scores, ds.test.x, ds.test.y, ds.labels))
        report.write_tables(output, tables)  # after every model: a later failure loses nothing

    # The classical models go first as Ray tasks and run side by side, with each other and with
    # the deep models' Train runs, as far as the cluster's CPUs go.
    test_ref = ray.put(ds.test.x)
    pending = classical.start([n for n in shallow if n != "svm-rbf"], data_ref, test_ref, args.seed,
                              args.cpus_per_worker, None)
    if "svm-rbf" in shallow:
        params, grid = classical.search_svm(ds, args.seed, args.cv_limit, storage, console)
        tables["svm_rbf_cv"] = grid
        console.print(escape("[svm-rbf]") + f" best of the grid: C={params['C']:g}, gamma={params['gamma']:g}")
        pending |= classical.start(["svm-rbf"], data_ref, test_ref, args.seed, args.cpus_per_worker, params)

    def collect(timeout: float | None):
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
            if not done:
                return
            name = pending.pop(done[0])
            row, scores = classical_row(name, ds, ray.get(done[0]))
            console.print(escape(f"[{name}]") + f" test accuracy {100 * row['accuracy']:.2f} %, "
                          f"fit {row['train_seconds']:.0f} s: {row['method']}")
            record(name, row, scores)

    if pending:
        console.print(f"classical models {', '.join(pending.values())}: one Ray task each")
    for name in deep:
        row, scores, history = train_and_test(name, ds, args, data_ref, storage, use_gpu)
        record(name, row, scores, history)
        collect(timeout=0)
    collect(timeout=None)
    order = {n: i for i, n in enumerate(names)}
    report.print_table(sorted(tables["metrics"], key=lambda r: order[r["model"]]), console)
    console.print(f"report: {report.write_report(output)}")
    console.print(f"results in {output} ({time.perf_counter() - started:.0f} s)")
    return 0


def main(argv=None, prog: str = "hdr compare") -> int:
    args = parse(argv, prog)
    return run_job(run, args, prog, "run the same command again to resume from the last checkpoint")
