"""Every name of Ray's that is private, a DeveloperAPI, or a setting with no public argument, in one
place: what an upgrade of Ray may move. ``tests/test_ray_compat.py`` uses each one, and fails with a
line naming it when an upgrade has moved it.

Ray is imported inside each function, so that importing this module (and the library) costs no Ray.
"""

from __future__ import annotations

import importlib

# Ray Data settings the score pipeline sets on its own dataset's context (no per-call argument exists):
# the job's live line replaces the progress bars and the execution banner; by default Ray Data reserves
# a share of the cluster for every operator, which on 2 CPUs left decoding one task at a time (17 s ->
# 14 s for 20,000 images without it).
DATA_CONTEXT = {"enable_progress_bars": False, "print_on_execution_start": False,
                "op_resource_reservation_enabled": False}
WAIT_FOR_ACTORS = "wait_for_min_actors_s"  # Ray Data: hold inference until every actor is up


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


def configure_data_context(context, wait_for_actors_s: float | None = None) -> None:
    """``DATA_CONTEXT`` on a dataset's own context (not the process's), and the wait for actors."""
    for name, value in DATA_CONTEXT.items():
        setattr(context, name, value)
    if wait_for_actors_s is not None:
        setattr(context, WAIT_FOR_ACTORS, wait_for_actors_s)
