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

from hdr_dist.common import errors, ray_compat, storage
from hdr_dist.common.errors import SettingError, UserError, setting

AUTOSCALER_WAIT_S = 900  # --placement-timeout's default when an autoscaler can add nodes
PROBE_TIMEOUT_S = 60
POLL_S = 2  # how often a job waiting for nodes looks again


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
            raise SettingError(
                "address", address, f"no Ray cluster answers there ({e.strerror or e})"
            ) from None
    ray_compat.train_controller_settings(private=address == "local")
    if address == "local":
        start_private(logging_level="WARNING", log_to_driver=log_to_driver)
    else:
        ray.init(address=address, logging_level="WARNING", log_to_driver=log_to_driver)


def start_private(**init):
    """A new local Ray for this process alone (``ray.init(address="local", **init)``), whose own processes
    know its address (``ray_compat.own_address``): with two jobs' Rays on one machine, Ray's state API,
    asked without one, finds both and fails, and Ray Train's placement-group cleaner asks it so."""
    import ray

    with ray_compat.own_address():
        return ray.init(address="local", **init)


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
    worker per node with all its cores: on 2-core machines one one-core worker per core trained
    faster than one worker with both cores, as the all-reduce between the two costs less than
    torch's two threads lose inside each small convolution (``benchmarks/train_throughput.py``;
    docs/decisions.md). A cluster with no CPUs yet (an autoscaler's head) gets one worker, which
    ``placement`` then waits for.
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


@dataclass(frozen=True)
class Request:
    """What a job asks of the cluster, decided on the nodes there are now: ``count`` workers of
    ``cpus`` CPUs each, a GPU each when ``gpu``; ``shown`` words the workers setting it came from."""

    count: int
    cpus: int
    gpu: bool
    shown: str

    @property
    def need(self) -> str:
        """The request in words, each setting it came from named (``errors.setting``)."""
        return f"{self.shown} x {setting('cpus_per_worker')} {self.cpus}" + (
            " with one GPU each" if self.gpu else ""
        )

    def workers(self) -> Workers:
        return Workers(self.count, self.cpus, self.gpu)


def total_gpus(nodes: list[dict]) -> int:
    return sum(int(n.get("GPU", 0)) for n in nodes)


def reachable_gpus(nodes: list[dict], limit: dict | None) -> int:
    """The GPUs the cluster has, or its autoscaler could bring up, whichever is more."""
    return max(total_gpus(nodes), (limit or {}).get("GPU", 0))


def sized(
    workers: int | None, cpus_per_worker: int | None, gpu: str, nodes: list[dict]
) -> tuple[int, int, str]:
    """How many workers, of how many CPUs each, and their wording: the numbers given, or (``workers``
    None) ``auto_workers``'s choice on these nodes, with their GPUs unless ``gpu`` is off."""
    if workers is None:
        plan = auto_workers(nodes, gpu == "on" or (gpu == "auto" and total_gpus(nodes) > 0))
        cpus = cpus_per_worker or plan.cpus
        count = plan.count if cpus_per_worker is None else max(1, slots(nodes, cpus, plan.gpu))
        return count, cpus, f"{setting('workers')} auto ({count})"
    return workers, cpus_per_worker or 1, f"{setting('workers')} {workers}"


def request(
    workers: int | None, cpus_per_worker: int | None, gpu: str, nodes: list[dict], limit: dict | None
) -> Request:
    """The request on these nodes: its size (``sized``), and a GPU per worker when ``gpu`` is on, or
    auto and the cluster has (or its autoscaler can reach) one for every worker."""
    count, cpus, shown = sized(workers, cpus_per_worker, gpu, nodes)
    use_gpu = gpu == "on" or (gpu == "auto" and reachable_gpus(nodes, limit) >= count)
    return Request(count, cpus, use_gpu, shown)


def check_reachable(req: Request, gpu: str, nodes: list[dict], limit: dict | None) -> None:
    """Fail at once on a request that no wait can satisfy: GPUs asked for that the cluster neither has
    nor can reach, or more CPUs than its autoscaler (``limit``) can ever bring up."""
    if gpu == "on" and reachable_gpus(nodes, limit) < req.count:
        raise UserError(
            f"{setting('gpu')} on with {req.shown} needs {req.count} GPUs; "
            f"the Ray cluster has {total_gpus(nodes)}"
            + (f" and its autoscaler can reach {limit.get('GPU', 0)}" if limit else "")
        )
    if limit and (req.count * req.cpus > limit.get("CPU", 0)):
        raise UserError(
            f"{req.need} needs {req.count * req.cpus} CPUs; the cluster's autoscaler can reach "
            f"{limit.get('CPU', 0)}"
        )


def holding(nodes: list[dict], have: int, use_gpu: bool) -> str:
    """What the cluster holds now of the workers asked for, in words."""
    cpu_total = sum(n.get("CPU", 0) for n in nodes)
    return (
        f"the Ray cluster's {len(nodes)} node(s) hold {have} such workers "
        f"({cpu_total:g} CPUs{f', {total_gpus(nodes)} GPUs' if use_gpu else ''})"
    )


def gave_up(req: Request, now: str, wait: float) -> UserError:
    """The error of a request still not placed after ``wait`` seconds (0: none was allowed)."""
    hint = (
        f"waited {wait:g} s ({setting('placement_timeout')}) for nodes to join"
        if wait
        else f"add nodes, lower {setting('workers')}, or pass {setting('placement_timeout')} SECONDS "
        "to wait for nodes to join"
    )
    return UserError(f"{req.need}: {now}; {hint}")


def ask_autoscaler(req: Request | None) -> None:
    """Ask the autoscaler for the nodes ``req`` needs, or (None) withdraw the request: Ray Train
    makes its own once the nodes are there."""
    from ray.autoscaler.sdk import request_resources

    if req is None:
        request_resources(bundles=[])
        return
    bundle = {"CPU": req.cpus} | ({"GPU": 1} if req.gpu else {})
    request_resources(bundles=[bundle] * req.count)


def placement(
    workers: int | None, cpus_per_worker: int | None, gpu: str, timeout: float | None, console: Console
) -> Workers:
    """Where the Train workers go, once the cluster can place them: ``workers`` (None: ``--workers
    auto``, decided by ``auto_workers`` on the nodes there are) of ``cpus_per_worker`` CPUs each
    (None: auto's choice, or 1 with a number of workers), with GPUs or not as ``gpu`` and the cluster say.

    A request the cluster cannot place now fails at once, unless an autoscaler
    could add the nodes or ``--placement-timeout`` was given: then the job asks
    the autoscaler for them and waits, saying so, for at most that long. The request is decided
    again on each look, as nodes join.
    """
    limit = ray_compat.autoscaler_max_resources()
    wait = timeout if timeout is not None else (AUTOSCALER_WAIT_S if limit else 0)
    deadline = time.monotonic() + wait
    asked = False
    while True:
        nodes = [n["Resources"] for n in alive_nodes()]
        req = request(workers, cpus_per_worker, gpu, nodes, limit)
        check_reachable(req, gpu, nodes, limit)
        have = slots(nodes, req.cpus, req.gpu)
        if have >= req.count:
            if asked:
                ask_autoscaler(None)
            return req.workers()
        now = holding(nodes, have, req.gpu)
        if time.monotonic() >= deadline:
            raise gave_up(req, now, wait)
        if not asked:
            ask_autoscaler(req)
            asked = True
            console.print(errors.shown(f"waiting up to {wait:g} s for nodes: {req.need}, and {now}"))
        time.sleep(POLL_S)


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
    """On a multi-node cluster, fail at once if a setting's path is one some node cannot see.

    ``outputs`` (setting -> folder every node writes into, such as ``{"output": ...}``) are probed
    with a marker file the driver writes; ``inputs`` (setting -> paths every node reads) must exist
    on every node. The error names the setting (``errors.setting``), which the job shows as its flag
    or, mapped, as a positional argument's name. A task pinned to each other node looks, so an NFS
    mount passes and a node's own disk fails, whatever the path looks like. Nodes an autoscaler
    adds later are not seen here: give those clusters a URI.
    """
    import ray

    here = ray.get_runtime_context().get_node_id()
    others = [n for n in alive_nodes() if n["NodeID"] != here]
    checks = [(name, p, p) for name, p in outputs.items() if not is_shared(p)]
    checks += [(name, p, p) for name, ps in (inputs or {}).items() for p in ps if not is_shared(p)]
    if not others or not checks:
        return
    markers = []
    try:
        for i, (name, shown, path) in enumerate(checks):
            if name in outputs:
                marker = nearest_folder(Path(path)) / f".hdr-shared-{uuid.uuid4().hex}"
                try:
                    marker.write_text("")
                except OSError:
                    continue  # the job's own write will fail with the reason
                markers.append(marker)
                checks[i] = (name, shown, str(marker))
        seen = visible_on(others, [c[2] for c in checks])
    finally:
        for marker in markers:
            marker.unlink(missing_ok=True)
    for i, (name, shown, _) in enumerate(checks):
        blind = [node for node, visible in seen.items() if not visible[i]]
        if blind:
            raise SettingError(
                name,
                shown,
                f"a node-local path; {len(blind)} of the cluster's {len(others) + 1} nodes "
                f"({', '.join(blind)}) cannot see it. A multi-node run needs storage every node shares: "
                "s3://..., gs://..., or an NFS mount at the same path on every node",
            )


def visible_on(nodes: list[dict], paths: list[str]) -> dict[str, list[bool]]:
    """Which of ``paths`` each of ``nodes`` sees, by a task pinned to it; a node that has not answered
    within ``PROBE_TIMEOUT_S`` is left out."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    look = ray.remote(num_cpus=0, max_retries=0)(_visible)
    refs = {
        n["NodeManagerAddress"] + " " + n["NodeID"][:8]: look.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(paths)
        for n in nodes
    }
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
    return {node: ray.get(ref) for node, ref in refs.items() if ref in ready}
