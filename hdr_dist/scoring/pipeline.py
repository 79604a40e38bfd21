"""The Ray Data stages of ``hdr score``: read bytes (``bulk.reading.datasource``) -> decode and
preprocess to MNIST space in CPU tasks -> inference in the bulk engine's actor pool (the model loaded
once per actor, on a GPU when there is one). What score adds to the engine: its page stage (one image,
or one field's strip, per page) and its answer schema (``tables.PREDICTION_SCHEMA``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from hdr_dist.bulk import plan, reading
from hdr_dist.bulk.actor import NODE, InferenceActor
from hdr_dist.bulk.inputs import Item
from hdr_dist.common import ray_compat, tables
from hdr_dist.imaging import images
from hdr_dist.scoring.config import ScoreConfig

READ_CPUS = 0  # reading waits on the disk or on the stages after it; see build()
DECODE_CPUS = 0.5
# The columns an output row takes from its decoded row as they are.
PASSED_ON = ("source", "member", "occurrence", "page", "pages", "true_label", "error", "width", "height")
OUTPUT_SCHEMA = tables.PREDICTION_SCHEMA.append(pa.field(NODE, pa.string()))
OUT_BLOCK_BYTES = 2**20  # a block a read task hands on: about 1,700 small scans, or a slice of large ones


class Predictor(InferenceActor):
    """One per inference actor: the model is loaded once, then scores batch after batch; what the
    answers are is the model's reader's."""

    def __init__(self, state, top_k: int, use_gpu: bool, threads: int = 1, threshold: float | None = None):
        super().__init__(use_gpu, threads)
        self.loaded = self.load(state)
        self.top_k = top_k
        self.threshold = -1.0 if threshold is None else threshold  # none: every scored image is accepted

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        if n == 0:
            return OUTPUT_SCHEMA.empty_table()
        ok = batch["error"].is_null().to_numpy(zero_copy_only=False)
        m = self.loaded
        confidence, answers = m.reader.answer(
            m.model, batch["image"], ok, m.cfg, m.temperature, self.top_k, self.device
        )
        # The batch's own columns, the answers (a column they lack is null), the confidence, the
        # decision, and this actor's node.
        columns = (
            {name: batch[name] for name in PASSED_ON}
            | answers
            | {
                "confidence": pa.array(confidence, mask=~ok),
                "model": pa.array(np.full(n, m.cfg.model, dtype=object), pa.string()),
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
    while it waits starved decoding (docs/decisions.md), so the number of read
    tasks is capped instead. ``nodes`` is how many the cluster has now; ``reader``
    is the model's (``readers.of``).
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
    return plan.actor_stage(
        ds,
        Predictor,
        cfg,
        state=[state_ref],
        top_k=cfg.top_k,
        use_gpu=cfg.use_gpu,
        threads=cfg.threads,
        threshold=cfg.threshold,
    )


def configure(context, nodes: int) -> None:
    """This pipeline's own Ray Data settings (the dataset's copy of the context, not the process's),
    for the settings that have no per-call argument (``ray_compat.DATA_CONTEXT``). On more than one
    node, inference starts once every actor is up, so work spreads over all of them and their nodes
    from the first batch, and actors the cluster has no room for end the job instead of stalling it.
    Not on one node: there the wait would hold back reading and decoding too, which otherwise run
    while the actors start.

    Blocks leave a read task once they reach ``OUT_BLOCK_BYTES``: at Ray Data's default (128 MiB) a
    read task held back everything it read until it ended, so an archive of small scans reached
    decoding only once it had been read to its end (docs/decisions.md has the measurement)."""
    wait = plan.ACTOR_START_TIMEOUT_S if nodes > 1 else None
    ray_compat.configure_data_context(context, wait, block_bytes=OUT_BLOCK_BYTES)
