"""The Ray Data stages of ``hdr score``: read bytes (``reading.datasource``) -> decode and
preprocess to MNIST space in CPU tasks -> inference in an actor pool (the model loaded
once per actor, on a GPU when there is one). The driver pulls the rows and commits
them (``committer``); each row also says which node scored it (``NODE``), which the
driver counts and does not write.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from hdr_dist.common import ray_compat, tables
from hdr_dist.imaging import images
from hdr_dist.inference import readers
from hdr_dist.inference.device import for_inference
from hdr_dist.inference.onnx_runtime import OnnxModel
from hdr_dist.models import checkpoints
from hdr_dist.scoring import reading
from hdr_dist.scoring.config import ScoreConfig
from hdr_dist.scoring.inputs import Item

READ_CPUS = 0  # reading waits on the disk or on the stages after it; see build()
DECODE_CPUS = 0.5
# The columns an output row takes from its decoded row as they are.
PASSED_ON = ("source", "member", "occurrence", "page", "pages", "true_label", "error", "width", "height")
ACTOR_START_TIMEOUT_S = 600
NODE = "node"  # the column naming the node whose actor scored the row: counted, not written
OUTPUT_SCHEMA = tables.PREDICTION_SCHEMA.append(pa.field(NODE, pa.string()))
OUT_BLOCK_BYTES = 2**20  # a block a read task hands on: about 1,700 small scans, or a slice of large ones


class Predictor:
    """One per inference actor: the model is built once, then scores batch after batch; what the
    answers are is the model's reader's (``readers.of``). A state carrying the model exported to ONNX
    (``state["onnx"]``, ``score --runtime onnx``) is run by onnxruntime instead of torch."""

    def __init__(self, state, top_k: int, use_gpu: bool, threads: int = 1, threshold: float | None = None):
        import ray

        state = ray.get(state[0]) if isinstance(state, list) else state
        self.device = torch.device("cuda" if use_gpu else "cpu")
        if not use_gpu:
            torch.set_num_threads(threads)  # as many as the actor reserved; more would steal decoding's
        model, self.cfg = checkpoints.model_from_state(state)
        self.model = (
            OnnxModel(state["onnx"], threads) if state.get("onnx") else for_inference(model, self.device)
        )
        self.reader = readers.of(self.cfg)
        self.temperature = state.get("temperature") or 1.0  # calibrated confidence; 1 for older checkpoints
        self.top_k = top_k
        self.threshold = -1.0 if threshold is None else threshold  # none: every scored image is accepted
        self.node = f"{ray.util.get_node_ip_address()} {ray.get_runtime_context().get_node_id()[:8]}"

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        if n == 0:
            return OUTPUT_SCHEMA.empty_table()
        ok = batch["error"].is_null().to_numpy(zero_copy_only=False)
        confidence, answers = self.reader.answer(
            self.model, batch["image"], ok, self.cfg, self.temperature, self.top_k, self.device
        )
        # The batch's own columns, the answers (a column they lack is null), the confidence, the
        # decision, and this actor's node.
        columns = (
            {name: batch[name] for name in PASSED_ON}
            | answers
            | {
                "confidence": pa.array(confidence, mask=~ok),
                "model": pa.array(np.full(n, self.cfg.model, dtype=object), pa.string()),
                "decision": pa.array(
                    np.where(ok & (confidence >= self.threshold), "accept", "review"), pa.string()
                ),
                NODE: pa.array(np.full(n, self.node, dtype=object), pa.string()),
            }
        )
        return pa.Table.from_pydict(
            {f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in OUTPUT_SCHEMA}, schema=OUTPUT_SCHEMA
        )


def build(items: list[Item], state_ref, cfg: ScoreConfig, nodes: int, reader):
    """The Ray Data plan; nothing runs until the driver pulls its rows.

    Reading, decoding and inference ask for different CPU shares (none, a half,
    one). Operators with different resources are not fused, so decoding stays in
    its own tasks: not inside a tar's single read task, where it could not run in
    parallel, nor inside the inference actors. Reading reserves no CPU because a
    read task mostly waits, on the disk or on the stages after it; holding a CPU
    while it waits starved decoding (a 200,000-image run scored nothing for its
    first 20 s), so the number of read tasks is capped instead. ``nodes`` is how
    many the cluster has now; ``reader`` is the model's (``readers.of``).
    """
    import ray.data

    source = reading.datasource(items)
    # One output stream per read task, already in blocks of BLOCK_ROWS: without override_num_blocks
    # Ray Data would split each block further to reach its default of ~200 blocks (a lone tar's
    # 256-row blocks into 200 pieces of a row or two), and every block costs scheduling.
    ds = ray.data.read_datasource(
        source,
        num_cpus=READ_CPUS,
        override_num_blocks=len(source.tasks),
        concurrency=min(cfg.read_tasks, len(source.tasks)),
    )
    configure(ds.context, nodes)
    # batch_size=None: each read block is one decoding batch, so the bytes a batch holds stay as bounded
    # as the blocks (a row count alone would let one batch gather many full-page scans).
    ds = ds.map_batches(
        images.decode_batch,
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=DECODE_CPUS,
        fn_kwargs={"max_pixels": cfg.max_pixels, "preparation": reader.preparation},
    )
    # The weights travel as an object reference (in a list, so Ray passes the reference, not
    # the weights): each actor fetches them once from the object store.
    return ds.map_batches(
        Predictor,
        batch_format="pyarrow",
        batch_size=cfg.batch_size,
        fn_constructor_kwargs={
            "state": [state_ref],
            "top_k": cfg.top_k,
            "use_gpu": cfg.use_gpu,
            "threads": cfg.threads,
            "threshold": cfg.threshold,
        },
        compute=ray.data.ActorPoolStrategy(size=cfg.concurrency),
        num_cpus=1 if cfg.use_gpu else cfg.cpus_per_actor,
        num_gpus=1 if cfg.use_gpu else 0,
    )


def configure(context, nodes: int) -> None:
    """This pipeline's own Ray Data settings (the dataset's copy of the context, not the process's),
    for the settings that have no per-call argument (``ray_compat.DATA_CONTEXT``). On more than one
    node, inference starts once every actor is up, so work spreads over all of them and their nodes
    from the first batch, and actors the cluster has no room for end the job instead of stalling it.
    Not on one node: there the wait would hold back reading and decoding too, which otherwise run
    while the actors start.

    Blocks leave a read task once they reach ``OUT_BLOCK_BYTES``: at Ray Data's default (128 MiB) a
    read task held back everything it read until it ended, so an archive of 25,000 small scans
    (18 MiB) reached decoding only once it had been read to its end. Over 200,000 scans in 8 archives
    the first result came after 42 s; at 1 MiB after 14 s, and the whole job took 107 s against 103 s
    (one run of each, back to back; within this machine's noise)."""
    ray_compat.configure_data_context(context, ACTOR_START_TIMEOUT_S if nodes > 1 else None)
    context.target_max_block_size = OUT_BLOCK_BYTES
