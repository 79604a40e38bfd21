"""Training: one epoch function shared by the Ray Train loop and the plain loop.

``train_epoch`` and ``evaluate_split`` know nothing about Ray: given a rank and a
world size they shard the data themselves and, when the world is larger than
one, sum their counts with ``torch.distributed``. ``train_loop_per_worker`` is
what Ray Train runs on each worker; ``fit`` builds the ``TorchTrainer``. The
same epoch code therefore runs on a GPU machine that has torch but no Ray
(``python -m hdr_dist.train``).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from hdr_dist import checkpoints, ctc, fields, models
from hdr_dist.augment import AugmentRanges, augment
from hdr_dist.config import TrainConfig

# DDP's switch for syncing buffers each forward; torch 2.15 renamed it.
BUFFER_SYNC_FLAG = ("forward_sync_buffers" if "forward_sync_buffers" in
                    inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
                    else "broadcast_buffers")
# Progress goes through logging: on Ray Train workers that reaches the driver's terminal
# once, where print() would be echoed twice by Train V2's print patch.
log = logging.getLogger("hdr_dist.train")
log.setLevel(logging.INFO)


def normalise(x_u8: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28), scaled to [0, 1] then standardised."""
    return ((x_u8.float() / 255.0) - mean).div_(std).unsqueeze(1)


def shard(n: int, rank: int, world: int, seed: int, epoch: int) -> torch.Tensor:
    """This rank's sample indices for one epoch.

    Every rank draws the same permutation (seeded by epoch) and takes every
    world-th element, cut to an equal length so all ranks run the same number of
    steps, which DDP's collective all-reduce requires.
    """
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    perm = torch.randperm(n, generator=g)
    return perm[rank::world][: n // world]


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
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, pct_start=0.2,
                                                   total_steps=cfg.epochs * steps_per_epoch)
    decay = cfg.lr_decay if cfg.schedule == "inverse-time" else 0.0
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1.0 + decay * step))


def per_rank(n: int, world: int, cfg: TrainConfig) -> int:
    """What one rank trains on per epoch: its share of the digits, or the fields made of them."""
    return fields.per_epoch(n // world) if cfg.reads_fields else n // world


def steps_per_epoch(n: int, world: int, cfg: TrainConfig) -> int:
    return -(-per_rank(n, world, cfg) // max(1, cfg.batch_size // world))


def all_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def autocast(device: torch.device):
    """bf16 on GPUs; on CPUs fp32 is both faster and exact for models this small."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def digit_batches(x, y, idx, cfg: TrainConfig, per_rank_batch: int, device, generator):
    """A digit model's batches, as (the model's inputs, the targets, the count): this rank's images,
    augmented on [0, 1], then standardised."""
    ranges = AugmentRanges(cfg.rotation, cfg.shift, cfg.zoom)
    for b in idx.split(per_rank_batch):
        xb = (x[b].to(device, non_blocking=True).float() / 255.0).unsqueeze(1)
        if cfg.augment:
            xb = augment(xb, ranges, generator)
        yield ((xb - cfg.mean) / cfg.std,), y[b].to(device, non_blocking=True), len(b)


def field_batches(x, y, idx, cfg: TrainConfig, per_rank_batch: int, device, generator):
    """A field model's batches, made here from this rank's digits: each digit of the shard goes
    into one field per epoch (fields of 1 to MAX_DIGITS digits), so an epoch is one pass over
    the digits, as for a digit model."""
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
    picks = fields.picks_of(idx.numpy(), fields.lengths(fields.per_epoch(len(idx)), rng))
    for start in range(0, len(picks), per_rank_batch):
        strips, labels = fields.strips(x, y, picks[start:start + per_rank_batch], fields.FieldStyle(), rng,
                                       generator)
        xb, widths = fields.pad(strips)
        yield ((xb.to(device) - cfg.mean) / cfg.std, widths), (labels, widths), len(labels)


def objective(out: torch.Tensor, target, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor | int]:
    """The loss, and how many answers were right: digits by cross-entropy, fields by CTC (a field is
    right when its best path reads exactly its digits). A digit model's count stays a tensor on the
    device, so a GPU is not made to wait for it every step."""
    if not cfg.reads_fields:
        loss = F.cross_entropy(out, target, label_smoothing=cfg.label_smoothing)
        return loss, (out.argmax(1) == target).sum()
    labels, widths = target
    log_probs = out.float().log_softmax(-1)
    steps = torch.div(widths, fields.WIDTH_STEP, rounding_mode="floor")
    loss = F.ctc_loss(log_probs.transpose(0, 1), torch.from_numpy(np.concatenate(labels)).long(), steps,
                      torch.tensor([len(t) for t in labels]), blank=cfg.num_classes, zero_infinity=True)
    reads = ctc.greedy(log_probs.detach().cpu().numpy(), steps.tolist(), cfg.num_classes)
    return loss, sum(r == t.tolist() for r, t in zip(reads, labels))


def train_epoch(model, opt, sched, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, epoch: int,
                rank: int = 0, world: int = 1, device=torch.device("cpu"),
                generator: torch.Generator | None = None, progress=None) -> dict:
    """One pass over this rank's shard of ``x`` (uint8 images) and ``y``; returns global stats."""
    model.train()
    idx = shard(len(y), rank, world, cfg.seed, epoch)
    per_rank_batch = max(1, cfg.batch_size // world)
    make = field_batches if cfg.reads_fields else digit_batches
    steps = steps_per_epoch(len(y), world, cfg)
    # Sums stay on the device until a progress line or the epoch's end reads them.
    loss_sum = correct = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    start = time.perf_counter()
    for step, (inputs, target, n) in enumerate(make(x, y, idx, cfg, per_rank_batch, device, generator), 1):
        with autocast(device):
            out = model(*inputs)
        loss, right = objective(out, target, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum = loss_sum + loss.detach() * n
        correct = correct + right
        seen += n
        if progress is not None:
            progress(step, steps, lambda: (loss_sum / seen).item(), lambda: (correct / seen).item(),
                     seen * world / (time.perf_counter() - start))
    seconds = time.perf_counter() - start
    loss_sum, correct, seen = all_sum([loss_sum.item(), correct.item(), float(seen)], device, world)
    return {"train_loss": loss_sum / seen, "train_acc": correct / seen, "seconds": seconds,
            "images_per_s": seen / seconds}


@torch.no_grad()
def evaluate_split(model, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, rank: int = 0, world: int = 1,
                   device=torch.device("cpu"), batch_size: int = 1024) -> dict:
    """Loss and accuracy over ``x``, each rank taking every world-th sample."""
    model.eval()
    loss_sum = correct = 0.0
    xs, ys = x[rank::world], y[rank::world]
    for start in range(0, len(ys), batch_size):
        xb = normalise(xs[start:start + batch_size].to(device), cfg.mean, cfg.std)
        yb = ys[start:start + batch_size].to(device)
        with autocast(device):
            logits = model(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    loss_sum, correct, seen = all_sum([loss_sum, correct, float(len(ys))], device, world)
    return {"val_loss": loss_sum / seen, "val_acc": correct / seen}


@torch.no_grad()
def evaluate_fields(model, strips: list, labels: list, cfg: TrainConfig, rank: int = 0, world: int = 1,
                    device=torch.device("cpu"), batch_size: int = 256) -> dict:
    """CTC loss and field accuracy (exact match) over fixed fields, each rank taking every world-th;
    fields go in batches of similar width, so little of each batch is padding."""
    model.eval()
    loss_sum = correct = 0.0
    mine = sorted(range(rank, len(labels), world), key=lambda i: strips[i].shape[1])
    for start in range(0, len(mine), batch_size):
        take = mine[start:start + batch_size]
        xb, widths = fields.pad([strips[i] for i in take])
        with autocast(device):
            out = model((xb.to(device) - cfg.mean) / cfg.std, widths)
        loss, right = objective(out, ([labels[i] for i in take], widths), cfg)
        loss_sum += loss.item() * len(take)
        correct += right
    loss_sum, correct, seen = all_sum([loss_sum, correct, float(len(mine))], device, world)
    return {"val_loss": loss_sum / seen, "val_acc": correct / seen}


def validation(cfg: TrainConfig, vx: torch.Tensor, vy: torch.Tensor) -> tuple:
    """What a model is validated on: the hold-out digits, or fixed fields made of them."""
    return fields.fixed_set(vx.numpy(), vy.numpy(), cfg.seed) if cfg.reads_fields else (vx, vy)


def validate(model, val: tuple, cfg: TrainConfig, rank: int = 0, world: int = 1, device=torch.device("cpu")) -> dict:
    return (evaluate_fields if cfg.reads_fields else evaluate_split)(model, *val, cfg, rank, world, device)


def setup(cfg: TrainConfig, n_train: int, world: int):
    """Model, optimizer and schedule for ``cfg``, seeded so every rank builds the same model.

    Convolution weights go channels-last: oneDNN's CPU convolutions then train the ``cnn`` about
    1.4x faster (benchmarks/train_throughput.py); the state dict's values, and so every checkpoint,
    are the same either way.
    """
    torch.manual_seed(cfg.seed)
    model = models.from_config(cfg).to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, cfg, steps_per_epoch(n_train, world, cfg))
    return model, opt, sched


def unit(cfg: TrainConfig) -> str:
    """What a model trains on, per second: images, or fields of them."""
    return "fields/s" if cfg.reads_fields else "img/s"


def print_progress(cfg: TrainConfig, epoch: int):
    """A live line per quarter epoch: the person at the terminal sees the run move."""
    def show(step, steps, loss, acc, ips):  # loss and acc are read (a device sync) only when shown
        if step == steps or step % max(1, steps // 4) == 0:
            log.info(f"[{cfg.model}] epoch {epoch + 1}/{cfg.epochs} step {step}/{steps} "
                     f"loss {loss():.4f} acc {acc():.2%} {ips:,.0f} {unit(cfg)}")
    return show


def epoch_line(cfg: TrainConfig, stats: dict) -> str:
    return (f"[{cfg.model}] epoch {stats['epoch']}/{cfg.epochs} done: "
            f"train loss {stats['train_loss']:.4f} acc {stats['train_acc']:.2%} | "
            f"val loss {stats['val_loss']:.4f} acc {stats['val_acc']:.2%} | "
            f"{stats['seconds']:.1f}s {stats['images_per_s']:,.0f} {unit(cfg)}")


def train_loop_per_worker(loop_config: dict) -> None:
    """What each Ray Train worker runs: resume if there is a checkpoint, then train and report.
    ``loop_config`` holds the ``TrainConfig`` and the object-store reference of the images."""
    import ray
    import ray.train
    import ray.train.torch

    # Ray Train logs every report at INFO on the root logger's handlers; keep the terminal to
    # our own progress lines (``log`` is INFO on its own, so it still gets through).
    logging.getLogger().setLevel(logging.WARNING)
    cfg = loop_config["config"]
    log.setLevel(logging.INFO if cfg.log_progress else logging.WARNING)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.cpus_per_worker)
    device = ray.train.torch.get_device()
    # Which nodes the workers landed on: the results say whether a run really spread out.
    nodes = [ray.get_runtime_context().get_node_id()] * world
    if world > 1:
        dist.all_gather_object(nodes, nodes[0])
    x, y, vx, vy = tensors(ray.get(loop_config["data"]))
    val = validation(cfg, vx, vy)

    model, opt, sched = setup(cfg, len(y), world)
    start_epoch, history = 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        state = checkpoints.load_ray(checkpoint)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        if rank == 0:
            log.info(f"[{cfg.model}] resuming after epoch {start_epoch}/{cfg.epochs}")
    # No BatchNorm buffer broadcast from rank 0 before every forward: that is a second
    # collective, a sync point per step. Each rank keeps its own running statistics;
    # rank 0's go into the checkpoint, as in torchvision's reference without --sync-bn.
    model = ray.train.torch.prepare_model(
        model, parallel_strategy_kwargs={BUFFER_SYNC_FLAG: False, "gradient_as_bucket_view": True})
    generator = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + rank + 17 * start_epoch)

    for epoch in range(start_epoch, cfg.epochs):
        show = print_progress(cfg, epoch) if rank == 0 else None
        stats = train_epoch(model, opt, sched, x, y, cfg, epoch, rank, world, device, generator, show)
        stats |= validate(model, val, cfg, rank, world, device) | {"epoch": epoch + 1, "nodes": len(set(nodes))}
        history.append(stats)
        if rank == 0:
            log.info(epoch_line(cfg, stats))
        with tempfile.TemporaryDirectory() as folder:
            if rank == 0:
                checkpoints.save(folder, model, opt, sched, cfg, epoch, history)
            # Train V2 keeps only metrics that come with a checkpoint, so rank 0 always attaches one.
            ray.train.report(stats, checkpoint=ray.train.Checkpoint.from_directory(folder) if rank == 0 else None)


def fit(cfg: TrainConfig, data, *, workers: int, use_gpu: bool, storage_path: str, name: str, max_failures: int = 0,
        callbacks=()):
    """Run ``train_loop_per_worker`` on ``workers`` Ray Train workers and return the ``Result``;
    ``data`` is the object-store reference of ``arrays_of(dataset)``, which every worker reads.

    Checkpoints are ranked by validation accuracy; the best two and the latest are
    kept. A run directory that already holds this ``name`` is resumed from its
    latest checkpoint (Train V2 restores its checkpoint manager from storage).
    ``callbacks`` are Train callbacks: a sweep passes Tune's, which hands each report to its trial.
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
        train_loop_per_worker, train_loop_config={"config": cfg, "data": data},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=name, storage_path=storage_path, failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_acc",
                                               checkpoint_score_order="max"),
            logging_config=LoggingConfig(log_level="WARNING"), callbacks=list(callbacks)))
    return trainer.fit()


def train_plain(cfg: TrainConfig, arrays: dict, device: torch.device) -> tuple:
    """The same epochs without Ray: one process, world size 1 (GPU checks, the baseline benchmark).

    A digit model's whole data set goes to the device once (MNIST is 47 MB as uint8), so a GPU
    never waits for a host-to-device copy per batch; a field model makes its strips on the host.
    """
    x, y, vx, vy = tensors(arrays)
    if not cfg.reads_fields:
        x, y, vx, vy = (t.to(device) for t in (x, y, vx, vy))
    val = validation(cfg, vx, vy)
    model, opt, sched = setup(cfg, len(y), 1)
    model.to(device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    history = []
    for epoch in range(cfg.epochs):
        stats = train_epoch(model, opt, sched, x, y, cfg, epoch, device=device, generator=generator,
                            progress=print_progress(cfg, epoch))
        stats |= validate(model, val, cfg, device=device)
        history.append(stats | {"epoch": epoch + 1})
        log.info(epoch_line(cfg, history[-1]))
    return model, history


def arrays_of(dataset) -> dict:
    return {"train_x": dataset.train.x, "train_y": dataset.train.y,
            "val_x": dataset.val.x, "val_y": dataset.val.y}


def tensors(arrays: dict) -> tuple[torch.Tensor, ...]:
    """Train and validation tensors; copies, because object-store arrays are read-only views."""
    return tuple(torch.tensor(arrays[k]) for k in ("train_x", "train_y", "val_x", "val_y"))


def main(argv=None) -> int:
    """``python -m hdr_dist.train``: the training step alone, without Ray (e.g. on a GPU box)."""
    from hdr_dist import data

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--model", default="cnn", choices=list(models.RECIPES))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--limit-train", type=int)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ds = data.load("mnist", limit_train=args.limit_train)
    cfg = TrainConfig.from_recipe(args.model, ds, epochs=args.epochs, batch_size=args.batch_size,
                                  cpus_per_worker=os.cpu_count() or 1)
    train_plain(cfg, arrays_of(ds), torch.device(args.device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
