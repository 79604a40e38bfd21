"""How a job joins its Ray cluster, and what it checks there before it starts work.

Ray waits, silently and for ever, for workers the cluster can never place, and
on a multi-node cluster it writes checkpoints wherever a node-local path points
on each node. Each check here turns one of those into a one-line error at the
start of the job, where nothing has been trained yet.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from hdr_dist.common import ray_compat, storage
from hdr_dist.common.errors import UserError

AUTOSCALER_WAIT_S = 900  # --placement-timeout's default when an autoscaler can add nodes
PROBE_TIMEOUT_S = 60


def connect(address: str | None, log_to_driver: bool = True) -> None:
    """Join ``--address`` or RAY_ADDRESS (set by ``ray job submit``); otherwise start a private local Ray.

    Without an address Ray would also try the last cluster ``ray start`` left on this
    machine and hang if it is gone, so a plain local run asks for ``"local"``;
    ``--address auto`` joins a running ``ray start`` cluster on purpose.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    host, _, port = address.rpartition(":")
    if port.isdigit() and not storage.is_uri(address):  # a GCS host:port; Ray itself would retry for minutes
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as e:
            raise UserError(
                f"--address {address}: no Ray cluster answers there ({e.strerror or e})"
            ) from None
    ray_compat.train_controller_settings(private=address == "local")
    ray.init(address=address, logging_level="WARNING", log_to_driver=log_to_driver)


def alive_nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


@dataclass(frozen=True)
class Workers:
    """Where a training run's Ray Train workers go, once the cluster has room: ``count`` workers of
    ``cpus`` CPUs (and as many torch threads) each, with a GPU each when ``gpu``."""

    count: int
    cpus: int
    gpu: bool


def auto_workers(nodes: list[dict], use_gpu: bool) -> Workers:
    """``--workers auto`` on these nodes (each a ``ray.nodes()`` resources dict).

    With GPUs: one worker per GPU, each with its share of its node's CPUs. On CPU-only
    nodes: one worker per core, each with one CPU and one torch thread, rather than one
    worker per node with all its cores. On one 2-core node, ``benchmarks/train_throughput.py``
    (three rounds, alternated; AMD EPYC; medians against a plain PyTorch loop on both cores)
    measured two one-core workers at 1.19x and 1.01x in two runs, one two-core worker at
    0.99x and 0.97x: the all-reduce between the two costs less than torch's two threads
    lose inside each small convolution. A cluster with no CPUs yet (an autoscaler's head)
    gets one worker, which ``placement`` then waits for.
    """
    if use_gpu:
        gpu_nodes = [n for n in nodes if n.get("GPU", 0) >= 1]
        cpus = min((int(n.get("CPU", 0) // n["GPU"]) for n in gpu_nodes), default=1)
        return Workers(sum(int(n["GPU"]) for n in gpu_nodes) or 1, max(1, cpus), True)
    return Workers(max(1, slots(nodes, 1, False)), 1, False)


def slots(nodes: list[dict], cpus_per_worker: float, use_gpu: bool) -> int:
    """How many workers the nodes hold, each worker whole on one node."""
    total = 0
    for n in nodes:
        fit = int(n.get("CPU", 0) // cpus_per_worker)
        total += min(fit, int(n.get("GPU", 0))) if use_gpu else fit
    return total


def placement(
    workers: int | None, cpus_per_worker: int | None, gpu: str, timeout: float | None, console: Console
) -> Workers:
    """Where the Train workers go, once the cluster can place them: ``workers`` (None: ``--workers
    auto``, decided by ``auto_workers`` on the nodes there are) of ``cpus_per_worker`` CPUs each
    (None: auto's choice, or 1 with a number of workers), with GPUs or not as ``gpu`` and the cluster say.

    A request the cluster cannot place now fails at once, unless an autoscaler
    could add the nodes or ``--placement-timeout`` was given: then the job asks
    the autoscaler for them and waits, saying so, for at most that long.
    """
    from ray.autoscaler.sdk import request_resources

    limit = ray_compat.autoscaler_max_resources()
    wait = timeout if timeout is not None else (AUTOSCALER_WAIT_S if limit else 0)
    deadline = time.monotonic() + wait
    asked = False
    while True:
        nodes = alive_nodes()
        resources = [n["Resources"] for n in nodes]
        gpus = sum(int(r.get("GPU", 0)) for r in resources)
        if workers is None:
            plan = auto_workers(resources, gpu == "on" or (gpu == "auto" and gpus > 0))
            cpus = cpus_per_worker or plan.cpus
            count = plan.count if cpus_per_worker is None else max(1, slots(resources, cpus, plan.gpu))
            shown = f"--workers auto ({count})"
        else:
            count, cpus, shown = workers, cpus_per_worker or 1, f"--workers {workers}"
        can_get_gpus = max(gpus, (limit or {}).get("GPU", 0)) >= count
        use_gpu = gpu == "on" or (gpu == "auto" and can_get_gpus)
        need = f"{shown} x --cpus-per-worker {cpus}" + (" with one GPU each" if use_gpu else "")
        if gpu == "on" and not can_get_gpus:
            raise UserError(
                f"--gpu on with {shown} needs {count} GPUs; the Ray cluster has {gpus}"
                + (f" and its autoscaler can reach {limit.get('GPU', 0)}" if limit else "")
            )
        if limit and (count * cpus > limit.get("CPU", 0)):
            raise UserError(
                f"{need} needs {count * cpus} CPUs; the cluster's autoscaler can reach {limit.get('CPU', 0)}"
            )
        have = slots(resources, cpus, use_gpu)
        if have >= count:
            if asked:
                request_resources(bundles=[])  # withdraw the request: Ray Train makes its own
            return Workers(count, cpus, use_gpu)
        cpu_total = sum(r.get("CPU", 0) for r in resources)
        now = (
            f"the Ray cluster's {len(nodes)} node(s) hold {have} such workers "
            f"({cpu_total:g} CPUs{f', {gpus} GPUs' if use_gpu else ''})"
        )
        if time.monotonic() >= deadline:
            hint = (
                f"waited {wait:g} s (--placement-timeout) for nodes to join"
                if wait
                else "add nodes, lower --workers, or pass --placement-timeout SECONDS to wait for nodes to join"
            )
            raise UserError(f"{need}: {now}; {hint}")
        if not asked:
            bundle = {"CPU": cpus} | ({"GPU": 1} if use_gpu else {})
            request_resources(bundles=[bundle] * count)
            asked = True
            console.print(f"waiting up to {wait:g} s for nodes: {need}, and {now}")
        time.sleep(2)


def is_shared(path: str) -> bool:
    """s3://, gs://, abfs://, hdfs://...: storage every node reaches by name, not a node's own disk."""
    return storage.is_uri(path) and not path.startswith(("file://", "local://"))


def nearest_folder(path: Path) -> Path:
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def _visible(paths: list[str]) -> list[bool]:
    return [os.path.exists(p) for p in paths]


def require_shared(outputs: dict[str, str], inputs: dict[str, list[str]] | None = None) -> None:
    """On a multi-node cluster, fail at once if a flag's path is one some node cannot see.

    ``outputs`` (flag -> folder every node writes into) are probed with a marker
    file the driver writes; ``inputs`` (flag -> paths every node reads) must
    exist on every node. A task pinned to each other node looks, so an NFS mount
    passes and a node's own disk fails, whatever the path looks like. Nodes an
    autoscaler adds later are not seen here: give those clusters a URI.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    others = [n for n in alive_nodes() if n["NodeID"] != here]
    checks = [(flag, p, p) for flag, p in outputs.items() if not is_shared(p)]
    checks += [(flag, p, p) for flag, ps in (inputs or {}).items() for p in ps if not is_shared(p)]
    if not others or not checks:
        return
    markers = []
    try:
        for i, (flag, shown, path) in enumerate(checks):
            if flag in outputs:
                folder = nearest_folder(Path(path))
                marker = folder / f".hdr-shared-{uuid.uuid4().hex}"
                try:
                    marker.write_text("")
                except OSError:
                    continue  # the job's own write will fail with the reason
                markers.append(marker)
                checks[i] = (flag, shown, str(marker))
        look = ray.remote(num_cpus=0, max_retries=0)(_visible)
        refs = {
            n["NodeManagerAddress"] + " " + n["NodeID"][:8]: look.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote([c[2] for c in checks])
            for n in others
        }
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
        seen = {node: ray.get(ref) for node, ref in refs.items() if ref in ready}
    finally:
        for marker in markers:
            marker.unlink(missing_ok=True)
    for i, (flag, shown, _) in enumerate(checks):
        blind = [node for node, visible in seen.items() if not visible[i]]
        if blind:
            raise UserError(
                f"{flag} {shown}: a node-local path; {len(blind)} of the cluster's {len(others) + 1} nodes "
                f"({', '.join(blind)}) cannot see it. A multi-node run needs storage every node shares: "
                "s3://..., gs://..., or an NFS mount at the same path on every node"
            )
