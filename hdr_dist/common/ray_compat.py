"""Every name of Ray's that is private, a DeveloperAPI, or a setting with no public argument, in one
place: what an upgrade of Ray may move. ``tests/test_ray_compat.py`` uses each one, and fails with a
line naming it when an upgrade has moved it.

Ray is imported inside each function, so that importing this module (and the library) costs no Ray.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager

# Ray Data settings the pipelines set on their own dataset's context (no per-call argument exists):
# the job's live line replaces the progress bars and the execution banner.
DATA_CONTEXT = {"enable_progress_bars": False, "print_on_execution_start": False}
WAIT_FOR_ACTORS = "wait_for_min_actors_s"  # Ray Data: hold inference until every actor is up
# Ray Data reserves a share of the cluster for each operator unless told not to. score turns it off: on 2
# CPUs it left decoding one task at a time, and score ran faster without it. forms keeps it: without it
# the inference actor got no pages while the preparing tasks had any left, so nothing was committed until
# the end; with it they stream, in the same time (docs/decisions.md).
RESERVATION = "op_resource_reservation_enabled"


# Ray Train's controller settings: environment variables the driver passes on to the controller actor
# (``ray.train.v2._internal.constants.ENV_VARS_TO_PROPAGATE``), with no argument of their own.
# How often the controller asks its workers how they are: at Ray's 2 s default a Train run ends seconds
# after its last epoch, at 0.25 s well under that (docs/decisions.md).
TRAIN_POLL = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
# The preemption watcher: an actor per Train run that watches Ray's node-drain notices (spot instances
# taken back). A private local Ray has nothing to drain; the actor is one more process to start.
PREEMPTION_WATCHER = ("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")


def train_controller_settings(private: bool) -> None:
    """For the driver, before a Train run: ``TRAIN_POLL``, and on a ``private`` local Ray (started by
    this job, on this machine alone) ``PREEMPTION_WATCHER``. A value the user set stays."""
    import os

    for name, value in (TRAIN_POLL, *((PREEMPTION_WATCHER,) if private else ())):
        os.environ.setdefault(name, value)


# A new local Ray's GCS port, which no ray.init argument sets (``ray._private.node`` reads it when the head
# starts), and the address Ray's state API (``ray.util.state``) reads before it looks for Ray's processes on
# the machine, where with two Rays it finds both and raises. Ray Train's placement-group cleaner, a detached
# actor, asks that API without an address whether a run's controller still lives: with a second job's Ray
# on the machine its thread died with a 30-line traceback on the job's terminal, and freed nothing.
GCS_PORT = "RAY_GCS_SERVER_PORT"
ADDRESS = "RAY_ADDRESS"


@contextmanager
def own_address():
    """Around ``ray.init`` of a new local Ray: its GCS on a free port, and ``ADDRESS`` naming it, in the
    environment its processes inherit (the raylet, and every worker it starts); Ray reads neither when it
    connects a worker, only its state API does. The driver's own environment is put back after, so that a
    job it starts later (a test's subprocess) starts a Ray of its own rather than joining this one."""
    import os
    import socket

    port = os.environ.get(GCS_PORT)
    if not port:
        with socket.socket() as s:
            s.bind(("", 0))
            port = str(s.getsockname()[1])
    saved = {name: os.environ.get(name) for name in (GCS_PORT, ADDRESS)}
    os.environ.update({GCS_PORT: port, ADDRESS: f"127.0.0.1:{port}"})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# Ray Tune's new output engine prints its banner even at verbose=0, and only this environment variable
# (no argument) turns it off (``ray.tune.experimental.output.get_air_verbosity``).
TUNE_OLD_OUTPUT = ("RAY_AIR_NEW_OUTPUT", "0")


def tune_output_settings() -> None:
    """For a job's ``main`` that runs a Tune sweep, before Ray starts: ``TUNE_OLD_OUTPUT``, for the
    job's own process. A value the user set stays."""
    import os

    os.environ.setdefault(*TUNE_OLD_OUTPUT)


def autoscaler_max_resources() -> dict | None:
    """The most of each resource the cluster's autoscaler may bring up, or None without one: Ray keeps
    the autoscaler's node types in the GCS (``ray._private.state``); Ray Train reads the same record
    to refuse worker groups larger than the cluster can ever grow to."""
    from ray._private.state import state

    try:
        limit = state.get_max_resources_from_cluster_config()
    except Exception:  # noqa: BLE001 - an older GCS without the record: behave as without an autoscaler
        return None
    return limit or None


def datasource_api():
    """Ray Data's DeveloperAPI for a datasource of our own: ``(Datasource, ReadTask, BlockMetadata)``."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    return Datasource, ReadTask, BlockMetadata


TUNE_REPORT_CALLBACK = ("ray.tune.integration.ray_train", "TuneReportCallback")


def tune_report_callback():
    """The Train callback that hands each report of a Train run to the Tune trial that started it
    (made inside the trial: it needs Tune's session)."""
    module, name = TUNE_REPORT_CALLBACK
    return getattr(importlib.import_module(module), name)()


def configure_data_context(
    context, wait_for_actors_s: float | None = None, reserve: bool = False, block_bytes: int | None = None
) -> None:
    """``DATA_CONTEXT`` on a dataset's own context (not the process's), the wait for actors, whether
    each operator has its share of the cluster reserved (``RESERVATION``), and the size at which a
    task hands a block on (``block_bytes``; None: Ray Data's default)."""
    for name, value in DATA_CONTEXT.items():
        setattr(context, name, value)
    setattr(context, RESERVATION, reserve)
    if block_bytes is not None:
        context.target_max_block_size = block_bytes
    if wait_for_actors_s is not None:
        setattr(context, WAIT_FOR_ACTORS, wait_for_actors_s)


def no_progress_bar_note(record) -> bool:
    return "Progress bars disabled" not in record.getMessage()


def quiet_ray_data() -> None:
    """For a job's ``main``: Ray Data's lines that the job's own live line replaces, its INFO lines and
    its note that its progress bars are off (``DATA_CONTEXT`` turns them off, for that line)."""
    import logging

    import ray.data  # noqa: F401 - importing it configures its loggers, which are set after

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    progress = logging.getLogger("ray.data._internal.progress")
    if no_progress_bar_note not in progress.filters:
        progress.addFilter(no_progress_bar_note)
