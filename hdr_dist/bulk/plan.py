"""The resource plan of a bulk run, and the inference actors' pool it places: whether to use GPUs, how
many actors and read tasks run at once. A request the cluster can never place fails before work
starts, where Ray would wait forever.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hdr_dist.common import cluster
from hdr_dist.common.errors import SettingError, UserError, setting

ACTOR_START_TIMEOUT_S = 600  # on several nodes, how long the actors may take to start (ray_compat)


@dataclass(frozen=True)
class ResourcePlan:
    use_gpu: bool
    concurrency: int  # inference actors
    read_tasks: int  # read tasks at once
    decoders: int  # decoding tasks or actors that fit beside the inference actors


def resource_plan(
    gpu: str, concurrency: int | None, cpus_per_actor: float, decode_cpus: float
) -> ResourcePlan:
    """The plan for the cluster Ray is connected to; ``decode_cpus`` is what the job's page stage asks
    for per task, which must fit beside the actors."""
    import ray

    total = ray.cluster_resources()
    gpus, cpus = int(total.get("GPU", 0)), int(total.get("CPU", 0))
    if gpu == "on" and gpus == 0:
        raise SettingError("gpu", gpu, "the Ray cluster has no GPU")
    use_gpu = gpu != "off" and gpus > 0
    concurrency = concurrency or (gpus if use_gpu else max(1, cpus // 4))
    if use_gpu and concurrency > gpus:
        raise UserError(
            f"{setting('concurrency')} {concurrency} with GPUs needs {concurrency} GPUs; "
            f"the Ray cluster has {gpus}"
        )
    if cpus_per_actor <= 0:
        raise SettingError("cpus_per_actor", f"{cpus_per_actor:g}", "must be more than 0")
    actor_cpus = 1 if use_gpu else cpus_per_actor
    if concurrency * actor_cpus + decode_cpus > cpus:
        raise UserError(
            f"{setting('concurrency')} {concurrency} x {actor_cpus:g} CPUs per inference actor "
            "leaves too few of "
            f"the cluster's {cpus} CPUs for decoding ({decode_cpus:g})"
        )
    decoders = max(1, int((cpus - concurrency * actor_cpus) / decode_cpus))
    return ResourcePlan(use_gpu=use_gpu, concurrency=concurrency, read_tasks=max(2, cpus), decoders=decoders)


def require_visible(output: Path, inputs: tuple[str, ...]) -> None:
    """On a multi-node cluster, the output folder and every input must be where each node sees them
    (``cluster.require_shared``); the settings are ``output`` and ``inputs``."""
    where = [os.path.realpath(os.path.expanduser(i)) for i in inputs]
    cluster.require_shared({"output": str(output)}, {"inputs": where})


def actors_did_not_start(concurrency: int) -> SettingError:
    return SettingError(
        "concurrency",
        concurrency,
        f"the inference actors did not all start within {ACTOR_START_TIMEOUT_S} s; the cluster has no room "
        "for them now",
    )


def actor_stage(ds, actor, cfg, /, **constructor_kwargs):
    """``ds`` read by a pool of ``cfg.concurrency`` inference actors of class ``actor`` (an
    ``actor.InferenceActor``), each reserving a GPU, or ``cfg.cpus_per_actor`` CPUs on a CPU-only
    cluster, and taking batches of ``cfg.batch_size`` rows."""
    import ray.data

    return ds.map_batches(
        actor,
        batch_format="pyarrow",
        batch_size=cfg.batch_size,
        fn_constructor_kwargs=constructor_kwargs,
        compute=ray.data.ActorPoolStrategy(size=cfg.concurrency),
        num_cpus=1 if cfg.use_gpu else cfg.cpus_per_actor,
        num_gpus=1 if cfg.use_gpu else 0,
    )
