"""Each of Ray's unstable names that ``common/ray_compat.py`` (and ``ray_notices``) rely on is still
where they look. A Ray upgrade that moves one fails here, with a line that names it, before a job
meets it."""

from __future__ import annotations

import importlib
import inspect
import os

import pytest

from hdr_dist.common import ray_compat, ray_notices


def where(description: str, check) -> None:
    try:
        assert check()
    except Exception as e:  # noqa: BLE001 - any way of being moved is the same failure
        pytest.fail(
            f"Ray moved {description} ({type(e).__name__}: {e}); update hdr_dist/common/ray_compat.py"
        )


def test_the_autoscaler_record_is_where_cluster_reads_it():
    from ray._private.state import state

    where(
        "ray._private.state.state.get_max_resources_from_cluster_config",
        lambda: callable(state.get_max_resources_from_cluster_config),
    )


def test_the_datasource_api_takes_what_reading_gives_it():
    Datasource, ReadTask, BlockMetadata = ray_compat.datasource_api()
    where(
        "ReadTask(read_fn, metadata, schema=, per_task_row_limit=)",
        lambda: {"schema", "per_task_row_limit"} <= set(inspect.signature(ReadTask).parameters),
    )
    where(
        "BlockMetadata(num_rows, size_bytes, input_files, exec_stats)",
        lambda: BlockMetadata(num_rows=1, size_bytes=None, input_files=None, exec_stats=None).num_rows == 1,
    )
    where("Datasource.get_read_tasks", lambda: callable(Datasource.get_read_tasks))


def test_the_train_controller_still_reads_the_settings_the_driver_passes_on():
    from ray.train.v2._internal.constants import ENV_VARS_TO_PROPAGATE

    for name, _ in (ray_compat.TRAIN_POLL, ray_compat.PREEMPTION_WATCHER):
        where(
            f"{name} in ray.train.v2._internal.constants.ENV_VARS_TO_PROPAGATE",
            lambda name=name: name in ENV_VARS_TO_PROPAGATE,
        )


def test_tunes_train_callback_is_importable():
    module, name = ray_compat.TUNE_REPORT_CALLBACK
    where(f"{module}.{name}", lambda: isinstance(getattr(importlib.import_module(module), name), type))


def test_the_data_context_has_every_setting_the_pipelines_set():
    from ray.data import DataContext

    context = (
        DataContext.get_current().copy() if hasattr(DataContext.get_current(), "copy") else DataContext()
    )
    for name in [*ray_compat.DATA_CONTEXT, ray_compat.WAIT_FOR_ACTORS, ray_compat.RESERVATION]:
        where(f"DataContext.{name}", lambda name=name: hasattr(context, name))
    ray_compat.configure_data_context(context, 7.0)
    assert getattr(context, ray_compat.WAIT_FOR_ACTORS) == 7.0
    assert context.enable_progress_bars is False
    assert getattr(context, ray_compat.RESERVATION) is False
    ray_compat.configure_data_context(context, reserve=True)
    assert getattr(context, ray_compat.RESERVATION) is True


def test_the_notice_ray_train_calls_safe_to_ignore_still_says_so():
    from ray.train.v2._internal.execution.scaling_policy import (
        autoscaling_coordinator_client,
    )

    marker = next(n.marker for n in ray_notices.NOTICES if n.says)
    where(
        f"the wording {marker!r} of Train's autoscaling coordinator",
        lambda: marker in inspect.getsource(autoscaling_coordinator_client),
    )


def test_tune_still_reads_the_setting_that_turns_its_new_output_off(monkeypatch):
    from ray.tune.experimental import output

    name, value = ray_compat.TUNE_OLD_OUTPUT
    where(
        f"{name} in ray.tune.experimental.output.get_air_verbosity",
        lambda: name in inspect.getsource(output.get_air_verbosity),
    )
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != name})  # this test's own
    ray_compat.tune_output_settings()
    assert os.environ[name] == value
    assert output.get_air_verbosity(0) is None  # what the setting is for: no banner, even at verbose=0
    os.environ[name] = "1"
    ray_compat.tune_output_settings()
    assert os.environ[name] == "1"  # a value the user set stays
    assert output.get_air_verbosity(1) is not None


def test_a_new_local_rays_processes_are_told_its_address_and_the_driver_is_not(monkeypatch):
    from ray._private import node, ray_constants
    from ray.dashboard import utils

    where(
        f"{ray_compat.GCS_PORT}, the head's GCS port, in ray._private.node",
        lambda: (
            ray_constants.GCS_PORT_ENVIRONMENT_VARIABLE == ray_compat.GCS_PORT
            and "GCS_PORT_ENVIRONMENT_VARIABLE" in inspect.getsource(node.Node)
        ),
    )
    where(
        f"{ray_compat.ADDRESS} in the state API's ray.dashboard.utils.get_address_for_submission_client",
        lambda: (
            ray_constants.RAY_ADDRESS_ENVIRONMENT_VARIABLE == ray_compat.ADDRESS
            and "RAY_ADDRESS_ENVIRONMENT_VARIABLE"
            in inspect.getsource(utils.get_address_for_submission_client)
        ),
    )
    monkeypatch.delenv(ray_compat.GCS_PORT, raising=False)
    monkeypatch.delenv(ray_compat.ADDRESS, raising=False)
    with ray_compat.own_address():
        port = os.environ[ray_compat.GCS_PORT]
        assert os.environ[ray_compat.ADDRESS] == f"127.0.0.1:{port}"
    assert ray_compat.GCS_PORT not in os.environ and ray_compat.ADDRESS not in os.environ
    monkeypatch.setenv(ray_compat.GCS_PORT, "6390")  # a port the user chose stays
    monkeypatch.setenv(ray_compat.ADDRESS, "elsewhere:6379")
    with ray_compat.own_address():
        assert os.environ[ray_compat.ADDRESS] == "127.0.0.1:6390"
    assert os.environ[ray_compat.ADDRESS] == "elsewhere:6379"
