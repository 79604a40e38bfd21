"""The Ray Data stages of ``hdr score``: read bytes (``reading.datasource``) -> decode and
preprocess to MNIST space in CPU tasks -> inference in an actor pool (the model loaded
once per actor, on a GPU when there is one). The driver pulls the rows and commits
them (``committer``); each row also says which node scored it (``NODE``), which the
driver counts and does not write.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from hdr_dist import checkpoints, evaluate, field_reader, images, reading, tables
from hdr_dist.inputs import Item

READ_CPUS = 0       # reading waits on the disk or on the stages after it; see build()
DECODE_CPUS = 0.5
# The columns an output row takes from its decoded row as they are.
PASSED_ON = ("source", "member", "occurrence", "page", "pages", "true_label", "error", "width", "height")
ACTOR_START_TIMEOUT_S = 600
NODE = "node"  # the column naming the node whose actor scored the row: counted, not written
OUTPUT_SCHEMA = tables.PREDICTION_SCHEMA.append(pa.field(NODE, pa.string()))


class Predictor:
    """One per inference actor: the model is built once, then scores batch after batch."""

    def __init__(self, state, top_k: int, use_gpu: bool, threads: int = 1, threshold: float | None = None):
        import ray

        state = ray.get(state[0]) if isinstance(state, list) else state
        self.device = torch.device("cuda" if use_gpu else "cpu")
        if not use_gpu:
            torch.set_num_threads(threads)  # as many as the actor reserved; more would steal decoding's
        model, cfg = checkpoints.model_from_state(state)
        self.model = evaluate.for_inference(model, self.device)
        self.name, self.labels = cfg.model, pa.array(cfg.labels, pa.string())
        self.label_names = list(cfg.labels)
        self.mean, self.std = cfg.mean, cfg.std
        self.temperature = state.get("temperature") or 1.0  # calibrated confidence; 1 for older checkpoints
        self.k = min(top_k, cfg.num_classes)
        self.threshold = -1.0 if threshold is None else threshold  # none: every scored image is accepted
        self.node = f"{ray.util.get_node_ip_address()} {ray.get_runtime_context().get_node_id()[:8]}"

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        if batch.num_rows == 0:
            return OUTPUT_SCHEMA.empty_table()
        ok = batch["error"].is_null().to_numpy(zero_copy_only=False)
        return self.rows(batch, ok, *self.answer(batch, ok))

    def answer(self, batch: pa.Table, ok: np.ndarray) -> tuple[np.ndarray, dict]:
        """The model's answers to the rows that decoded (``ok``): each row's confidence, and the
        answer columns."""
        n = batch.num_rows
        column = batch["image"].combine_chunks()
        pixels = np.frombuffer(column.buffers()[1], np.uint8)[column.offset * images.PIXELS:(column.offset + n) * images.PIXELS]
        x = torch.from_numpy(pixels.reshape(n, 28, 28)[ok].copy())
        probs = torch.zeros((0, len(self.labels)))
        if len(x):
            z = evaluate.logits(self.model, x, self.mean, self.std, self.device)
            probs = torch.softmax(z / self.temperature, dim=1).cpu()
        top_p, top_i = (t.numpy() for t in probs.topk(self.k, dim=1))
        # One value per row (a failed row borrows row 0's, then is masked to null), built column-wise.
        at = np.where(ok, np.cumsum(ok) - 1, 0)
        if not ok.any():
            top_p, top_i = np.zeros((1, self.k), np.float32), np.zeros((1, self.k), np.int64)
        pred, failed = top_i[at, 0].astype(np.int32), pa.array(~ok)
        answers = {
            "pred": pa.array(pred, mask=~ok),
            "pred_label": pc.if_else(failed, pa.scalar(None, pa.string()), self.labels.take(pa.array(pred))),
            "topk_labels": pa.FixedSizeListArray.from_arrays(self.labels.take(pa.array(top_i[at].ravel())),
                                                             self.k, mask=failed),
            "topk_probs": pa.FixedSizeListArray.from_arrays(pa.array(top_p[at].ravel()), self.k, mask=failed)}
        return top_p[at, 0], answers

    def rows(self, batch: pa.Table, ok: np.ndarray, confidence: np.ndarray, answers: dict) -> pa.Table:
        """The batch's output rows: its own columns, the model's ``answers`` (a column they lack is
        null), the confidence, the decision, and this actor's node."""
        n = batch.num_rows
        columns = {name: batch[name] for name in PASSED_ON} | answers | {
            "confidence": pa.array(confidence, mask=~ok),
            "model": pa.array(np.full(n, self.name, dtype=object), pa.string()),
            "decision": pa.array(np.where(ok & (confidence >= self.threshold), "accept", "review"), pa.string()),
            NODE: pa.array(np.full(n, self.node, dtype=object), pa.string())}
        return pa.Table.from_pydict({f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in OUTPUT_SCHEMA},
                                    schema=OUTPUT_SCHEMA)


class FieldPredictor(Predictor):
    """A field model's inference actor: each image a strip of digits, read as a digit string."""

    def answer(self, batch: pa.Table, ok: np.ndarray) -> tuple[np.ndarray, dict]:
        n = batch.num_rows
        data = batch["image"].to_pylist()
        strips = [images.strip_of(data[i]) for i in np.flatnonzero(ok)]
        logits = field_reader.step_logits(self.model, strips, self.mean, self.std, self.device)
        reads = iter(field_reader.read(logits, self.temperature, self.label_names))
        text, chars, confidence = [None] * n, [None] * n, np.zeros(n, np.float32)
        for i in np.flatnonzero(ok):
            text[i], chars[i], confidence[i] = next(reads)
        answers = {"pred_label": pa.array(text, pa.string()), "text": pa.array(text, pa.string()),
                   "char_confidences": pa.array(chars, pa.list_(pa.float32()))}
        return confidence, answers


def build(items: list[Item], state_ref, args, plan: dict, nodes: int):
    """The Ray Data plan; nothing runs until the driver pulls its rows.

    Reading, decoding and inference ask for different CPU shares (none, a half,
    one). Operators with different resources are not fused, so decoding stays in
    its own tasks: not inside a tar's single read task, where it could not run in
    parallel, nor inside the inference actors. Reading reserves no CPU because a
    read task mostly waits, on the disk or on the stages after it; holding a CPU
    while it waits starved decoding (a 200,000-image run scored nothing for its
    first 20 s), so the number of read tasks is capped instead. ``plan`` comes
    from ``score.make_plan``; ``nodes`` is how many the cluster has now.
    """
    import ray.data

    source = reading.datasource(items)
    # One output stream per read task, already in blocks of BLOCK_ROWS: without override_num_blocks
    # Ray Data would split each block further to reach its default of ~200 blocks (a lone tar's
    # 256-row blocks into 200 pieces of a row or two), and every block costs scheduling.
    ds = ray.data.read_datasource(source, num_cpus=READ_CPUS, override_num_blocks=len(source.tasks),
                                  concurrency=min(plan["read_tasks"], len(source.tasks)))
    configure(ds.context, nodes)
    # batch_size=None: each read block is one decoding batch, so the bytes a batch holds stay as bounded
    # as the blocks (a row count alone would let one batch gather many full-page scans).
    ds = ds.map_batches(images.decode_batch, batch_format="pyarrow", batch_size=None, num_cpus=DECODE_CPUS,
                        fn_kwargs={"max_pixels": args.max_pixels, "fields": plan["fields"]})
    # The weights travel as an object reference (in a list, so Ray passes the reference, not
    # the weights): each actor fetches them once from the object store.
    return ds.map_batches(FieldPredictor if plan["fields"] else Predictor, batch_format="pyarrow",
                          batch_size=args.batch_size,
                          fn_constructor_kwargs={"state": [state_ref], "top_k": args.top_k, "use_gpu": plan["use_gpu"],
                                                 "threads": max(1, int(args.cpus_per_actor)),
                                                 "threshold": plan["threshold"]},
                          compute=ray.data.ActorPoolStrategy(size=plan["concurrency"]),
                          num_cpus=1 if plan["use_gpu"] else args.cpus_per_actor,
                          num_gpus=1 if plan["use_gpu"] else 0)


def configure(context, nodes: int) -> None:
    """This pipeline's own Ray Data settings (the dataset's copy of the context, not the
    process's), for the settings that have no per-call argument."""
    context.enable_progress_bars = False  # the job's own line says what matters
    context.print_on_execution_start = False
    # By default Ray Data reserves a share of the cluster for every operator; on a small
    # cluster that leaves decoding one task at a time (measured: 17 s -> 14 s for 20,000 images).
    context.op_resource_reservation_enabled = False
    if nodes > 1:
        # Inference starts once every actor is up, so work spreads over all of them and their
        # nodes from the first batch; actors the cluster has no room for end the job instead of
        # stalling it. Not on one node: there the wait would hold back reading and decoding too,
        # which otherwise run while the actors start.
        context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
