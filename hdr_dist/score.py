"""``hdr score`` / ``python jobs/score.py``: score image folders and archives with a trained model.

A Ray Data pipeline, streaming so memory stays flat whatever the input size:
read bytes (``reading.datasource``) -> decode and preprocess to MNIST space in
CPU tasks -> inference in an actor pool (the model loaded once per actor, on a
GPU when there is one) -> ``write_parquet``. Every input yields one row per
image: scored, or with its one-line error.

The output is written into ``OUTPUT.partial`` and renamed to ``OUTPUT`` when
complete, so a crashed run never leaves output that looks finished; ``--resume``
picks up what the crashed (or an earlier, finished) run already scored.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import torch
from rich.console import Console

from hdr_dist import cluster, evaluate, images, inputs, labels, models, outputs, reading, report, train
from hdr_dist.cli import Parser, connect, positive, run_job
from hdr_dist.errors import UserError, one_line
from hdr_dist.names import escape

PREDICTION_SCHEMA = pa.schema([
    ("source", pa.string()), ("member", pa.string()), ("occurrence", pa.int32()), ("page", pa.int32()),
    ("pages", pa.int32()),
    ("pred", pa.int32()), ("pred_label", pa.string()), ("confidence", pa.float32()),
    ("topk_labels", pa.list_(pa.string())), ("topk_probs", pa.list_(pa.float32())),
    ("true_label", pa.string()), ("error", pa.string()), ("model", pa.string()),
    ("width", pa.int32()), ("height", pa.int32())])
ROWS_PER_FILE = 20_000
READ_CPUS = 0       # reading waits on the disk or on the stages after it; see pipeline()
DECODE_CPUS = 0.5
ACTOR_START_TIMEOUT_S = 600


def parser(prog: str = "hdr score") -> Parser:
    p = Parser(prog=prog, description="Score image folders and archives with a model trained by compare; "
                                      "write one Parquet row per image (prediction or error).")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="folders (recursive), image files, .zip/.tar/.tar.gz/.tgz archives, in any mix")
    p.add_argument("--model", required=True, help="a compare --output folder, or a model.pt checkpoint")
    p.add_argument("--model-name", help="which model of that folder (default: the most accurate)")
    p.add_argument("--output", required=True, help="folder for predictions/, metrics and summary.json")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--labels", metavar="FILE", help="true labels: a CSV (header path,label) or Parquet file")
    g.add_argument("--labels-from", choices=("dirname",), help="dirname: each image's folder name is its label")
    p.add_argument("--batch-size", type=positive, default=512, help="images per inference batch (default: %(default)s)")
    p.add_argument("--concurrency", type=positive,
                   help="inference actors (default: one per GPU, else one per 4 CPUs of the cluster, at least 1)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0,
                   help="CPUs each inference actor reserves on a CPU-only cluster; torch uses as many threads "
                        "(default: %(default)s)")
    p.add_argument("--gpu", choices=("auto", "on", "off"), default="auto",
                   help="auto: a GPU per inference actor when the cluster has one (default: %(default)s)")
    p.add_argument("--top-k", type=positive, default=3, help="labels and probabilities kept per image (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="keep what OUTPUT (or OUTPUT.partial) already scored")
    p.add_argument("--max-pixels", type=positive, default=images.DEFAULT_MAX_PIXELS,
                   help="larger images are refused as decompression bombs (default: %(default)s)")
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a new local Ray)")
    return p


# ---- the model -------------------------------------------------------------------------------

def read_bytes(uri: str) -> bytes:
    from pyarrow import fs

    if "://" not in uri:
        return Path(uri).read_bytes()
    filesystem, path = fs.FileSystem.from_uri(uri)
    with filesystem.open_input_file(path) as f:
        return f.read()


def load_model(path: str, name: str | None) -> tuple[dict, str, str]:
    """``--model`` -> (checkpoint state, model name, checkpoint path); any problem is one line."""
    where = Path(path).expanduser()
    checkpoint = str(where)
    if "://" not in path and not where.exists():
        raise UserError(f"--model {path}: no such file or folder")
    if where.is_dir() and (where / "metrics.parquet").is_file():
        rows = pq.read_table(where / "metrics.parquet", columns=["model", "accuracy", "checkpoint"]).to_pylist()
        if name is not None:
            rows = [r for r in rows if r["model"] == name]
            if not rows:
                raise UserError(f"--model-name {name}: not in {where / 'metrics.parquet'}")
        rows = [r for r in rows if r["checkpoint"]]  # the classical models keep none
        if not rows:
            raise UserError(f"--model {path}: {where / 'metrics.parquet'} names no model with a checkpoint "
                            "(score takes the deep models)")
        checkpoint = max(rows, key=lambda r: r["accuracy"])["checkpoint"]
    elif where.is_dir():
        checkpoint = str(where / train.CHECKPOINT_FILE)
    try:
        raw = read_bytes(checkpoint)
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        cfg = state["config"]
        model = models.from_config(cfg)
        model.load_state_dict(state["model"])
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - missing, corrupt or foreign: all the user's --model
        raise UserError(f"--model {path}: {checkpoint} is not a readable hdr-dist checkpoint "
                        f"({one_line(e)})") from None
    if name is not None and cfg["model"] != name:
        raise UserError(f"--model-name {name}: the checkpoint holds model {cfg['model']}")
    state = {"model": state["model"], "config": cfg, "history": state.get("history", []),
             "params": models.count_params(model),
             "identity": {"model": cfg["model"], "checkpoint": checkpoint,
                          "checkpoint_sha256": hashlib.sha256(raw).hexdigest()}}
    return state, cfg["model"], checkpoint


# ---- the pipeline's stages -------------------------------------------------------------------

class Predictor:
    """One per inference actor: the model is built once, then scores batch after batch."""

    def __init__(self, state, top_k: int, use_gpu: bool, threads: int = 1, tally=None):
        import ray

        state = ray.get(state[0]) if isinstance(state, list) else state
        cfg = state["config"]
        self.device = torch.device("cuda" if use_gpu else "cpu")
        if not use_gpu:
            torch.set_num_threads(threads)  # as many as the actor reserved; more would steal decoding's
        self.model = models.from_config(cfg)
        self.model.load_state_dict(state["model"])
        self.model = evaluate.for_inference(self.model, self.device)
        self.name, self.labels = cfg["model"], pa.array(cfg["labels"], pa.string())
        self.label_names = list(cfg["labels"])  # for picking out mistakes in Python
        self.mean, self.std = cfg["mean"], cfg["std"]
        self.k = min(top_k, cfg["num_classes"])
        self.tally = tally
        self.node = f"{ray.util.get_node_ip_address()} {ray.get_runtime_context().get_node_id()[:8]}"

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        if n == 0:
            return PREDICTION_SCHEMA.empty_table()
        ok = batch["error"].is_null().to_numpy(zero_copy_only=False)
        column = batch["image"].combine_chunks()
        pixels = np.frombuffer(column.buffers()[1], np.uint8)[column.offset * images.PIXELS:(column.offset + n) * images.PIXELS]
        x = torch.from_numpy(pixels.reshape(n, 28, 28)[ok].copy())
        probs = torch.zeros((0, len(self.labels)))
        if len(x):
            probs = torch.softmax(evaluate.logits(self.model, x, self.mean, self.std, self.device), dim=1).cpu()
        top_p, top_i = (t.numpy() for t in probs.topk(self.k, dim=1))
        # One value per row (a failed row borrows row 0's, then is masked to null), built column-wise.
        at = np.where(ok, np.cumsum(ok) - 1, 0)
        if not ok.any():
            top_p, top_i = np.zeros((1, self.k), np.float32), np.zeros((1, self.k), np.int64)
        pred, failed = top_i[at, 0].astype(np.int32), pa.array(~ok)
        columns = {name: batch[name] for name in ("source", "member", "occurrence", "page", "pages", "true_label",
                                                  "error", "width", "height")}
        columns |= {
            "pred": pa.array(pred, mask=~ok),
            "pred_label": pc.if_else(failed, pa.scalar(None, pa.string()), self.labels.take(pa.array(pred))),
            "confidence": pa.array(top_p[at, 0], mask=~ok),
            "topk_labels": pa.FixedSizeListArray.from_arrays(self.labels.take(pa.array(top_i[at].ravel())),
                                                             self.k, mask=failed),
            "topk_probs": pa.FixedSizeListArray.from_arrays(pa.array(top_p[at].ravel()), self.k, mask=failed),
            "model": pa.array(np.full(n, self.name, dtype=object), pa.string())}
        if self.tally is not None:
            mistakes = self.mistakes(batch, ok, pred, top_p[at, 0], pixels)
            first = batch.slice(0, 1).select(["source", "member", "occurrence", "page"]).to_pylist()[0]
            self.tally.add.remote((*first.values(), n), int(ok.sum()), int(n - ok.sum()), self.node, mistakes)
        return pa.Table.from_pydict({name: columns[name] for name in PREDICTION_SCHEMA.names}, schema=PREDICTION_SCHEMA)

    def mistakes(self, batch: pa.Table, ok, pred, confidence, pixels) -> list[dict]:
        """This batch's most confident wrong predictions among its labelled images, with their pixels."""
        true = batch["true_label"].to_pylist()
        named = self.label_names
        wrong = [i for i in np.flatnonzero(ok) if true[i] is not None and true[i] != named[pred[i]]]
        wrong = sorted(wrong, key=lambda i: -confidence[i])[:report.MISTAKES]
        if not wrong:
            return []
        rows = batch.select(["source", "member", "occurrence", "page", "pages"]).take(wrong).to_pylist()
        return [{"item": r["source"] + (f"::{r['member']}" if r["member"] else "")
                 + (f" #{r['occurrence'] + 1}" if r["occurrence"] else "")
                 + (f" page {r['page'] + 1}/{r['pages']}" if r["pages"] > 1 else ""),
                 "true_label": true[i], "pred_label": named[pred[i]], "confidence": float(confidence[i]),
                 "image": pixels[i * images.PIXELS:(i + 1) * images.PIXELS].tobytes()} for r, i in zip(rows, wrong)]


class Tally:
    """A Ray actor the inference actors count into, so the driver can show live progress
    and the summary can say how the work spread over the cluster's nodes.

    A batch Ray Data runs again (its actor was lost before the result came back)
    reports again; ``batch`` (its first row and size) lets it count once.
    """

    def __init__(self):
        self.scored = self.failed = 0
        self.first = None  # wall-clock time of the first result: what start-up costs
        self.by_node: dict[str, int] = {}
        self.wrong: list[dict] = []  # the most confident mistakes so far, for the report
        self.batches: set[tuple] = set()

    def add(self, batch: tuple, scored: int, failed: int, node: str, mistakes: list[dict]) -> None:
        if batch in self.batches:
            return
        self.batches.add(batch)
        self.first = self.first or time.time()
        self.scored += scored
        self.failed += failed
        self.by_node[node] = self.by_node.get(node, 0) + scored + failed
        if mistakes:
            self.wrong = heapq.nlargest(report.MISTAKES, self.wrong + mistakes, key=lambda m: m["confidence"])

    def mistakes(self) -> list[dict]:
        return self.wrong

    def images_by_node(self) -> dict[str, int]:
        return self.by_node

    def counts(self) -> tuple[int, int]:
        return self.scored, self.failed

    def first_result(self) -> float | None:
        return self.first


def pipeline(items: list[inputs.Item], state_ref, args, plan: dict, tally):
    """The Ray Data plan; nothing runs until it is written.

    Reading, decoding and inference ask for different CPU shares (none, a half,
    one). Operators with different resources are not fused, so decoding stays in
    its own tasks: not inside a tar's single read task, where it could not run in
    parallel, nor inside the inference actors. Reading reserves no CPU because a
    read task mostly waits, on the disk or on the stages after it; holding a CPU
    while it waits starved decoding (a 200,000-image run scored nothing for its
    first 20 s), so the number of read tasks is capped instead. ``plan`` comes
    from ``resources``.
    """
    import ray.data

    source = reading.datasource(items)
    # One output stream per read task, already in blocks of BLOCK_ROWS: without override_num_blocks
    # Ray Data would split each block further to reach its default of ~200 blocks (a lone tar's
    # 256-row blocks into 200 pieces of a row or two), and every block costs scheduling.
    ray.data.DataContext.get_current().read_op_min_num_blocks = 1
    ds = ray.data.read_datasource(source, num_cpus=READ_CPUS, concurrency=min(plan["read_tasks"], len(source.tasks)))
    # batch_size=None: each read block is one decoding batch, so the bytes a batch holds stay as bounded
    # as the blocks (a row count alone would let one batch gather many full-page scans).
    ds = ds.map_batches(images.decode_batch, batch_format="pyarrow", batch_size=None, num_cpus=DECODE_CPUS,
                        fn_kwargs={"max_pixels": args.max_pixels})
    # The weights travel as an object reference (in a list, so Ray passes the reference, not
    # the weights): each actor fetches them once from the object store.
    return ds.map_batches(Predictor, batch_format="pyarrow", batch_size=args.batch_size,
                          fn_constructor_kwargs={"state": [state_ref], "top_k": args.top_k, "use_gpu": plan["use_gpu"],
                                                 "threads": max(1, int(args.cpus_per_actor)), "tally": tally},
                          compute=ray.data.ActorPoolStrategy(size=plan["concurrency"]),
                          num_cpus=1 if plan["use_gpu"] else args.cpus_per_actor,
                          num_gpus=1 if plan["use_gpu"] else 0)


# ---- metrics ---------------------------------------------------------------------------------

def metric_tables(folder: Path, cfg: dict, dataset: str) -> tuple[dict, dict]:
    """compare's metrics, per-class and confusion tables over the labelled, scored rows."""
    files = outputs.prediction_files(folder)
    table = (pads.dataset(files, format="parquet", schema=PREDICTION_SCHEMA).to_table(columns=["true_label", "pred", "error"])
             if files else PREDICTION_SCHEMA.empty_table().select(["true_label", "pred", "error"]))
    failed = pc.sum(table["error"].is_valid()).as_py() or 0
    scored = table.filter(table["error"].is_null())
    labelled = scored.filter(scored["true_label"].is_valid())
    counts = {"images": table.num_rows, "scored": scored.num_rows, "failed": failed,
              "unlabelled": scored.num_rows - labelled.num_rows}
    if labelled.num_rows == 0:
        return {}, counts
    index = {label: i for i, label in enumerate(cfg["labels"])}
    y_true = np.array([index[t] for t in labelled["true_label"].to_pylist()])
    y_pred = labelled["pred"].to_numpy()
    scores = evaluate.metrics(y_true, y_pred, cfg["num_classes"])
    tables = {"metrics": [report.metrics_row(dataset, cfg["model"], scores, **counts)],
              "per_class": report.per_class_rows(dataset, cfg["model"], scores, cfg["labels"]),
              "confusion": report.confusion_rows(dataset, cfg["model"], scores)}
    return tables, counts


# ---- the job ---------------------------------------------------------------------------------

def watch(tally, total: int, console: Console, stop: threading.Event, started: float) -> None:
    """The live line: images done, images/s, errors (a plain line every 10 s when not on a terminal)."""
    import ray
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not console.is_terminal:
        while not stop.wait(10):
            done, failed = ray.get(tally.counts.remote())
            console.print(f"scored {done + failed:,}/{total:,} images, "
                          f"{(done + failed) / (time.perf_counter() - started):,.0f} img/s, {failed:,} errors")
        return
    with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                  TextColumn("{task.fields[errors]}"), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("score", total=total, rate="", errors="")
        while not stop.wait(0.5):
            done, failed = ray.get(tally.counts.remote())
            rate = (done + failed) / (time.perf_counter() - started)
            bar.update(task, completed=done + failed, rate=f"{rate:,.0f} img/s", errors=f"{failed:,} errors")


def resources(args) -> dict:
    """Whether to use GPUs, how many inference actors and read tasks run at once; a request the
    cluster can never place fails now, where Ray would wait forever."""
    import ray

    total = ray.cluster_resources()
    gpus, cpus = int(total.get("GPU", 0)), int(total.get("CPU", 0))
    if args.gpu == "on" and gpus == 0:
        raise UserError("--gpu on: the Ray cluster has no GPU")
    use_gpu = args.gpu != "off" and gpus > 0
    concurrency = args.concurrency or (gpus if use_gpu else max(1, cpus // 4))
    if use_gpu and concurrency > gpus:
        raise UserError(f"--concurrency {concurrency} with GPUs needs {concurrency} GPUs; the Ray cluster has {gpus}")
    if args.cpus_per_actor <= 0:
        raise UserError(f"--cpus-per-actor {args.cpus_per_actor:g}: must be more than 0")
    actor_cpus = 1 if use_gpu else args.cpus_per_actor
    if concurrency * actor_cpus + DECODE_CPUS > cpus:
        raise UserError(f"--concurrency {concurrency} x {actor_cpus:g} CPUs per inference actor leaves too few of "
                        f"the cluster's {cpus} CPUs for decoding ({DECODE_CPUS:g})")
    return {"use_gpu": use_gpu, "concurrency": concurrency, "read_tasks": max(2, cpus)}


def execute(items: list[inputs.Item], state: dict, args, plan: dict, work: Path, console: Console) -> dict:
    """Run the pipeline into ``work/predictions`` with the live line; this run's counts and timings."""
    import ray
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False  # our own line says what matters
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context.print_on_execution_start = False
    # By default Ray Data reserves a share of the cluster for every operator; on a small
    # cluster that leaves decoding one task at a time (measured: 17 s -> 14 s for 20,000 images).
    context.op_resource_reservation_enabled = False
    if len(cluster.alive_nodes()) > 1:
        # Inference starts once every actor is up, so work spreads over all of them and their
        # nodes from the first batch; actors the cluster has no room for end the job instead of
        # stalling it. Not on one node: there the wait would hold back reading and decoding too,
        # which otherwise run while the actors start.
        context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    tally = ray.remote(Tally).options(num_cpus=0).remote()
    stop = threading.Event()
    start, wall_start = time.perf_counter(), time.time()
    watcher = threading.Thread(target=watch, args=(tally, len(items), console, stop, start), daemon=True)
    watcher.start()
    try:
        if items:
            weights = ray.put({k: state[k] for k in ("model", "config")})
            pipeline(items, weights, args, plan, tally).write_parquet(
                str(work / "predictions"), min_rows_per_file=ROWS_PER_FILE)
    except ray.exceptions.GetTimeoutError:
        raise UserError(f"--concurrency {plan['concurrency']}: the inference actors did not all start within "
                        f"{ACTOR_START_TIMEOUT_S} s; the cluster has no room for them now") from None
    finally:
        stop.set()
        watcher.join()
    seconds = time.perf_counter() - start
    first = ray.get(tally.first_result.remote())
    # Until the first result the inference actors are starting (a fixed few seconds);
    # after it, the job runs at the rate a long job keeps.
    startup = min(seconds, max(0.0, first - wall_start)) if first else seconds
    return {"seconds": seconds, "startup": startup, "images_by_node": ray.get(tally.images_by_node.remote()),
            "mistakes": ray.get(tally.mistakes.remote())}


def finish(work: Path, output: Path, state: dict, checkpoint: str, args, this_run: dict,
           plan: dict) -> tuple[dict, dict]:
    """Metrics over all rows (this run's and any resumed ones), summary.json, then the rename.
    Every count comes from the rows written, so an image Ray Data scored twice after a fault,
    but wrote once, counts once."""
    cfg, history = state["config"], state["history"]
    dataset = escape(Path(args.inputs[0]).name) + (f" +{len(args.inputs) - 1}" if len(args.inputs) > 1 else "")
    tables, counts = metric_tables(work / "predictions", cfg, dataset)
    images = counts["images"] - this_run.pop("rows_before")
    seconds, startup = this_run.pop("seconds"), this_run.pop("startup")
    rates = {"images_this_run": images, "seconds": round(seconds, 3),
             "images_per_s": round(images / max(seconds, 1e-9), 1), "startup_seconds": round(startup, 3),
             "steady_images_per_s": round(images / max(seconds - startup, 1e-9), 1)}
    if tables:
        tables["metrics"][0] |= {
            "train_seconds": sum(h["seconds"] for h in history), "epochs": len(history),
            "device": "gpu" if plan["use_gpu"] else "cpu", "num_workers": plan["concurrency"],
            "num_nodes": len(this_run["images_by_node"]), "checkpoint": checkpoint,
            "infer_images_per_s": rates["images_per_s"], "params": state["params"],
            "method": f"{cfg['model']} checkpoint, scored by hdr score", "approximation": ""}
    mistakes = report.read_table(work, "mistakes") + [  # a resumed run's, then this run's
        {"dataset": dataset, "model": cfg["model"]} | m for m in this_run.pop("mistakes")]
    for name in ("metrics", "per_class", "confusion", "mistakes"):  # a resumed run's old tables would be stale
        (work / f"{name}.parquet").unlink(missing_ok=True)
    if tables and (args.labels or args.labels_from):
        tables["mistakes"] = heapq.nlargest(report.MISTAKES, mistakes, key=lambda m: m["confidence"])
        report.write_tables(work, tables)
    summary = {"inputs_seen": this_run.pop("inputs_seen"), "skipped_already_scored": this_run.pop("skipped"),
               **counts, **rates, **this_run, **state["identity"],
               "inputs": [escape(os.path.realpath(os.path.expanduser(i))) for i in args.inputs]}
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    work.rename(output)
    return summary, tables


def listing(args, state: dict, model_name: str, console: Console) -> tuple[list[inputs.Item], dict]:
    """The items to score with their true labels, and what summary.json says about what was skipped
    or did not match; problems with a labels file are also printed, one line each."""
    label_file = labels.read_label_file(args.labels) if args.labels else None
    found = inputs.find(args.inputs)
    items, problems = labels.with_labels(found.items, args.labels_from, label_file, state["config"]["labels"],
                                         model_name)
    for line in labels.warnings(label_file, problems) if label_file else ():
        console.print(line, markup=False, highlight=False)
    skipped = [f"{n:,} {what}" for n, what in ((found.junk, "desktop junk files (__MACOSX/, ._*, .DS_Store, Thumbs.db)"),
                                               (found.duplicates, "files named twice")) if n]
    if skipped:
        console.print(f"skipped {' and '.join(skipped)}", markup=False, highlight=False)
    notes = {"skipped_junk": found.junk, "skipped_duplicates": found.duplicates}
    if label_file:
        notes["labels"] = labels.report(label_file, problems)
    return items, notes


def run(args, console: Console) -> int:
    started = time.perf_counter()
    state, model_name, checkpoint = load_model(args.model, args.model_name)
    items, notes = listing(args, state, model_name, console)
    output = Path(args.output).expanduser().resolve()
    outputs.check_output(output, args.resume, state["identity"])
    connect(args.address)
    plan = resources(args)
    cluster.require_shared({"--output": str(output)},
                           {"INPUT": [os.path.realpath(os.path.expanduser(i)) for i in args.inputs]})
    work, held = outputs.prepare(output, args.resume, state["identity"])
    try:
        done = outputs.already_scored(work / "predictions", PREDICTION_SCHEMA)
        items, skipped = outputs.skip_scored(items, done)
        console.print(f"scoring {len(items):,} inputs with {model_name} ({checkpoint})"
                      + (f"; {skipped:,} already scored" if skipped else ""))
        this_run = execute(items, state, args, plan, work, console)
        this_run |= {"inputs_seen": len(items) + skipped, "skipped": skipped,
                     "rows_before": sum(len(pages) for _, pages in done.values()), **notes}
        summary, tables = finish(work, output, state, checkpoint, args, this_run, plan)
    finally:
        os.close(held)
    if tables:
        console.print(f"report: {report.write_report(output)}")
    line = (f"{summary['scored']:,} scored, {summary['failed']:,} failed of {summary['images']:,} images "
            f"({summary['images_this_run']:,} this run, {summary['images_per_s']:,.0f} img/s)")
    if tables:
        line += (f"; accuracy {100 * tables['metrics'][0]['accuracy']:.2f} % on "
                 f"{summary['scored'] - summary['unlabelled']:,} labelled")
    console.print(line)
    console.print(f"results in {output} ({time.perf_counter() - started:.0f} s)")
    return 0


def main(argv=None, prog: str = "hdr score") -> int:
    args = parser(prog).parse_args(argv)
    return run_job(run, args, prog, "run the same command with --resume to continue")
