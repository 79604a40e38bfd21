"""Training: one epoch function shared by the Ray Train loop and the plain loop.

``train_epoch`` and each kind's ``validate`` (``kinds``) know nothing about Ray: given a
rank and a world size they shard the data themselves and, when the world is larger
than one, sum their counts with ``torch.distributed`` (``ranks``). ``train_loop_per_worker`` is
what Ray Train runs on each worker; ``fit`` builds the ``TorchTrainer``. The
same epoch code therefore runs on a GPU machine that has torch but no Ray
(``python -m hdr_dist.train``).
"""

from __future__ import annotations

import inspect
import logging
import tempfile
import time

import torch
import torch.distributed as dist

from hdr_dist import models
from hdr_dist.inference.device import autocast
from hdr_dist.models import checkpoints
from hdr_dist.models.config import TrainConfig
from hdr_dist.training import kinds
from hdr_dist.training.ranks import all_sum, shard

# DDP's switch for syncing buffers each forward; torch 2.15 renamed it.
BUFFER_SYNC_FLAG = (
    "forward_sync_buffers"
    if "forward_sync_buffers" in inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
    else "broadcast_buffers"
)
# Progress goes through logging: on Ray Train workers that reaches the driver's terminal
# once, where print() would be echoed twice by Train V2's print patch.
log = logging.getLogger("hdr_dist.train")
CPU = torch.device("cpu")


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":  # Keras' Adam: eps 1e-7
        return torch.optim.Adam(params, lr=cfg.lr, eps=1e-7, weight_decay=cfg.weight_decay)
    # Keras' RMSprop(rho=0.9, epsilon=1e-8) is torch's RMSprop(alpha=0.9, eps=1e-8).
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.9, eps=1e-8, weight_decay=cfg.weight_decay)


def make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Stepped once per batch."""
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, pct_start=0.2, total_steps=cfg.epochs * steps_per_epoch
        )
    decay = cfg.lr_decay if cfg.schedule == "inverse-time" else 0.0
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1.0 + decay * step))


def steps_per_epoch(n: int, world: int, cfg: TrainConfig) -> int:
    return -(-kinds.of(cfg).per_rank(n, world) // max(1, cfg.batch_size // world))


def train_epoch(
    model,
    opt,
    sched,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    device: torch.device = CPU,
    generator: torch.Generator | None = None,
    progress=None,
) -> dict:
    """One pass over this rank's shard of ``x`` (uint8 images) and ``y``; returns global stats."""
    model.train()
    idx = shard(len(y), rank, world, cfg.seed, epoch)
    per_rank_batch = max(1, cfg.batch_size // world)
    kind = kinds.of(cfg)
    steps = steps_per_epoch(len(y), world, cfg)
    # Sums stay on the device until a progress line or the epoch's end reads them.
    loss_sum = correct = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    start = time.perf_counter()
    for step, (inputs, target, n) in enumerate(
        kind.batches(x, y, idx, cfg, per_rank_batch, device, generator), 1
    ):
        with autocast(device):
            out = model(*inputs)
        loss, right = kind.objective(model, out, target, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum = loss_sum + loss.detach() * n
        correct = correct + right
        seen += n
        if progress is not None:
            ips = seen * world / (time.perf_counter() - start)
            progress(step, steps, mean(loss_sum, seen), mean(correct, seen), ips)
    seconds = time.perf_counter() - start
    loss_sum, correct, seen = all_sum([loss_sum.item(), correct.item(), float(seen)], device, world)
    return {
        "train_loss": loss_sum / seen,
        "train_acc": correct / seen,
        "seconds": seconds,
        "images_per_s": seen / seconds,
    }


def mean(total: torch.Tensor, n: int):
    """``total / n`` as a number, read (a device sync) only when called: a progress line reads it only
    when it is shown."""
    return lambda: (total / n).item()


def setup(cfg: TrainConfig, n_train: int, world: int):
    """Model, optimizer and schedule for ``cfg``, seeded so every rank builds the same model.

    Convolution weights go channels-last: oneDNN's CPU convolutions then train the ``cnn`` faster
    (benchmarks/train_throughput.py; docs/decisions.md); the state dict's values, and so every
    checkpoint, are the same either way.
    """
    torch.manual_seed(cfg.seed)
    model = models.from_config(cfg).to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, cfg, steps_per_epoch(n_train, world, cfg))
    return model, opt, sched


def print_progress(cfg: TrainConfig, epoch: int):
    """A live line per quarter epoch: the person at the terminal sees the run move."""

    def show(step, steps, loss, acc, ips):  # loss and acc are read (a device sync) only when shown
        if step == steps or step % max(1, steps // 4) == 0:
            log.info(
                f"[{cfg.model}] epoch {epoch + 1}/{cfg.epochs} step {step}/{steps} "
                f"loss {loss():.4f} acc {acc():.2%} {ips:,.0f} {kinds.of(cfg).unit}"
            )

    return show


def epoch_line(cfg: TrainConfig, stats: dict) -> str:
    return (
        f"[{cfg.model}] epoch {stats['epoch']}/{cfg.epochs} done: "
        f"train loss {stats['train_loss']:.4f} acc {stats['train_acc']:.2%} | "
        f"val loss {stats['val_loss']:.4f} acc {stats['val_acc']:.2%} | "
        f"{stats['seconds']:.1f}s {stats['images_per_s']:,.0f} {kinds.of(cfg).unit}"
    )


def train_loop_per_worker(loop_config: dict) -> None:
    """What each Ray Train worker runs: resume if there is a checkpoint, then train and report.
    ``loop_config`` holds the ``TrainConfig`` and the object-store reference of the images."""
    import ray
    import ray.train
    import ray.train.torch

    cfg, tracker = loop_config["config"], loop_config.get("tracker")  # tracking.Tracker of this run, or None
    quiet_worker(cfg)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.cpus_per_worker)
    device = ray.train.torch.get_device()
    nodes = node_ids(world)
    x, y, vx, vy = tensors(ray.get(loop_config["data"]))
    val = kinds.of(cfg).validation(cfg, vx, vy)

    model, opt, sched = setup(cfg, len(y), world)
    start_epoch, history = resume(model, opt, sched, cfg, rank)
    model = distributed(model)
    generator = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + rank + 17 * start_epoch)

    for epoch in range(start_epoch, cfg.epochs):
        show = print_progress(cfg, epoch) if rank == 0 else None
        stats = train_epoch(model, opt, sched, x, y, cfg, epoch, rank, world, device, generator, show)
        validating = time.perf_counter()
        stats |= kinds.of(cfg).validate(model, val, cfg, rank, world, device)
        stats |= {
            "epoch": epoch + 1,
            "nodes": len(set(nodes)),
            "val_seconds": time.perf_counter() - validating,
            "ended_at": time.time(),
        }  # which epochs a resumed run trained itself
        history.append(stats)
        if rank == 0:
            log.info(epoch_line(cfg, stats))
            if tracker is not None:
                tracker.log_epoch(stats)
        report(stats, rank, model, opt, sched, cfg, epoch, history)


def quiet_worker(cfg: TrainConfig) -> None:
    """The Train worker process's logging, set at its entry point. Ray Train logs every report at
    INFO on the root logger's handlers; the terminal keeps to our own progress lines (``log`` is
    INFO on its own, so it still gets through, unless ``cfg`` turns progress off)."""
    logging.getLogger().setLevel(logging.WARNING)
    log.setLevel(logging.INFO if cfg.log_progress else logging.WARNING)


def node_ids(world: int) -> list[str]:
    """The node of every worker, gathered from all ranks: the results say whether a run really spread
    out."""
    import ray

    nodes = [ray.get_runtime_context().get_node_id()] * world
    if world > 1:
        dist.all_gather_object(nodes, nodes[0])
    return nodes


def resume(model, opt, sched, cfg: TrainConfig, rank: int) -> tuple[int, list[dict]]:
    """The Train run's latest checkpoint, if it has one, loaded into the model, optimizer and
    schedule: the epoch to start at and the history so far (0 and none without one)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if not checkpoint:
        return 0, []
    state = checkpoints.load_ray(checkpoint)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    start_epoch = state["epoch"] + 1
    if rank == 0:
        log.info(f"[{cfg.model}] resuming after epoch {start_epoch}/{cfg.epochs}")
    return start_epoch, state["history"]


def distributed(model):
    """The model wrapped for data-parallel training (DDP), and moved to the worker's device.

    No BatchNorm buffer broadcast from rank 0 before every forward: that is a second collective, a
    sync point per step. Each rank keeps its own running statistics; rank 0's go into the
    checkpoint, as in torchvision's reference without --sync-bn.
    """
    import ray.train.torch

    return ray.train.torch.prepare_model(
        model, parallel_strategy_kwargs={BUFFER_SYNC_FLAG: False, "gradient_as_bucket_view": True}
    )


def report(stats: dict, rank: int, model, opt, sched, cfg: TrainConfig, epoch: int, history: list) -> None:
    """An epoch's stats to Ray Train, with rank 0's checkpoint: Train V2 keeps only metrics that come
    with a checkpoint, so rank 0 always attaches one."""
    import ray.train

    with tempfile.TemporaryDirectory() as folder:
        if rank == 0:
            checkpoints.save(folder, model, opt, sched, cfg, epoch, history)
        ray.train.report(stats, checkpoint=ray.train.Checkpoint.from_directory(folder) if rank == 0 else None)


def fit(
    cfg: TrainConfig,
    data,
    *,
    workers: int,
    use_gpu: bool,
    storage_path: str,
    name: str,
    max_failures: int = 0,
    callbacks=(),
    tracker=None,
):
    """Run ``train_loop_per_worker`` on ``workers`` Ray Train workers and return the ``Result``;
    ``data`` is the object-store reference of ``arrays_of(dataset)``, which every worker reads.

    Checkpoints are ranked by validation accuracy; the best two and the latest are
    kept. A run directory that already holds this ``name`` is resumed from its
    latest checkpoint (Train V2 restores its checkpoint manager from storage).
    ``callbacks`` are Train callbacks: a sweep passes Tune's, which hands each report to its trial.
    ``tracker`` (``tracking.Tracker`` of an MLflow run) gets every epoch from rank 0.
    """
    from ray.train import (
        CheckpointConfig,
        FailureConfig,
        LoggingConfig,
        RunConfig,
        ScalingConfig,
    )
    from ray.train.torch import TorchTrainer

    resources = {"CPU": cfg.cpus_per_worker} | ({"GPU": 1} if use_gpu else {})
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": cfg, "data": data, "tracker": tracker},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="val_acc", checkpoint_score_order="max"
            ),
            logging_config=LoggingConfig(log_level="WARNING"),
            callbacks=list(callbacks),
        ),
    )
    return trainer.fit()


def train_plain(cfg: TrainConfig, arrays: dict, device: torch.device) -> tuple:
    """The same epochs without Ray: one process, world size 1 (GPU checks, the baseline benchmark).

    A digit model's whole data set goes to the device once (MNIST is 47 MB as uint8), so a GPU
    never waits for a host-to-device copy per batch; a field model makes its strips on the host.
    """
    x, y, vx, vy = tensors(arrays)
    kind = kinds.of(cfg)
    if kind.data_on_device:
        x, y, vx, vy = (t.to(device) for t in (x, y, vx, vy))
    val = kind.validation(cfg, vx, vy)
    model, opt, sched = setup(cfg, len(y), 1)
    model.to(device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    history = []
    for epoch in range(cfg.epochs):
        stats = train_epoch(
            model,
            opt,
            sched,
            x,
            y,
            cfg,
            epoch,
            device=device,
            generator=generator,
            progress=print_progress(cfg, epoch),
        )
        stats |= kind.validate(model, val, cfg, device=device)
        history.append(stats | {"epoch": epoch + 1})
        log.info(epoch_line(cfg, history[-1]))
    return model, history


def arrays_of(dataset) -> dict:
    return {
        "train_x": dataset.train.x,
        "train_y": dataset.train.y,
        "val_x": dataset.val.x,
        "val_y": dataset.val.y,
    }


def tensors(arrays: dict) -> tuple[torch.Tensor, ...]:
    """Train and validation tensors; copies, because object-store arrays are read-only views."""
    return tuple(torch.tensor(arrays[k]) for k in ("train_x", "train_y", "val_x", "val_y"))
