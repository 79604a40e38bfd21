"""MLflow tracking for compare and tune (``--mlflow [URI]``): one MLflow run per model, or per
trial nested under its sweep's run.

The job opens the tracker before anything trains (``open_tracker``), so a missing package, a server
that does not answer or a store that cannot be written is one line and costs nothing. It then
creates each run itself, with the settings as params, and hands its id to the Train workers: rank 0
logs every epoch live, and the job adds the test figures and artefacts at the end. Ray's ``setup_mlflow``
starts a new run in each worker process instead, so a resumed Train run would become a second MLflow
run, and the job could not add its test figures to it; here a run is found again by the Train run's
name (``RUN_TAG``), and a resumed job logs on where it stopped.

Every call after the opening check is best effort: a tracker that fails halfway costs a warning
line, never the training or the results on disk.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from hdr_dist.common import storage
from hdr_dist.common.errors import SettingError, UserError, one_line, setting

DEFAULT_STORE = "mlruns"  # a local file store: nothing here reaches a server
# MLflow 3 opens a folder store only with this set, in its client and its UI alike (docs/decisions.md).
ALLOW_FILE_STORE = ("MLFLOW_ALLOW_FILE_STORE", "true")
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")  # MLflow's database stores, by URI scheme
RUN_TAG = "hdr.run"  # the Train run (or sweep) a MLflow run records
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag for a nested run
NOT_PER_EPOCH = ("epoch", "ended_at", "nodes")  # bookkeeping of an epoch's stats, not figures of it
INSTALL = f"{setting('mlflow')} needs MLflow, an optional extra: pip install 'hdr-dist[mlflow]'"
log = logging.getLogger("hdr_dist.tracking")


def store_uri(value: str | None) -> str:
    """Where runs go: the flag's URI, else ``MLFLOW_TRACKING_URI``, else ./mlruns. A path (or a relative
    ``file:``) becomes an absolute ``file:`` URI, and a relative SQLite file an absolute one, because
    Ray's workers run in folders of their own."""
    value = value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme == "sqlite" and value.startswith("sqlite:///") and value[10:11] not in ("/", ":", ""):
        path, _, query = value[10:].partition("?")
        return f"sqlite:///{Path(path).expanduser().resolve()}" + (f"?{query}" if query else "")
    if scheme and scheme != "file":
        return value
    return Path(value.removeprefix("file://").removeprefix("file:")).expanduser().resolve().as_uri()


@contextmanager
def impatient():
    """MLflow retries an unanswered server 7 times with backoff, for minutes; the opening check
    should say so at once."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value


@dataclass(frozen=True)
class Tracker:
    """A tracking store and experiment, and with ``run_id`` the run this process logs to; plain
    strings, so Ray hands it to a Train worker or a Tune trial as it is."""

    uri: str
    experiment_id: str
    run_id: str | None = None

    def client(self):
        import mlflow

        if self.uri.startswith("file:"):
            # MLflow 3 keeps the file store in maintenance mode and refuses it unless this is set;
            # every process that logs (driver, Tune trial, Train rank 0) builds its own store.
            os.environ.update([ALLOW_FILE_STORE])
        return mlflow.MlflowClient(self.uri)

    def shared(self) -> dict[str, str]:
        """A folder store, as ``cluster.require_shared`` takes it: rank 0 may run on any node."""
        return {"mlflow": self.uri.removeprefix("file://")} if self.uri.startswith("file:") else {}

    def warn(self, what: str, error: Exception) -> None:
        log.warning(f"mlflow: could not log {what} to {self.uri}: {one_line(error)}")

    def start(
        self, name: str, key: str, params: dict | None = None, parent: str | None = None
    ) -> Tracker | None:
        """The run recording ``key`` (a Train run or sweep; created if new, so a resumed job logs on
        to the same run), with ``params``; the tracker of that run, or None if the tracker failed."""
        try:
            client = self.client()
            found = client.search_runs([self.experiment_id], f"tags.`{RUN_TAG}` = '{key}'", max_results=1)
            tags = {RUN_TAG: key} | ({PARENT_TAG: parent} if parent else {})
            run = found[0] if found else client.create_run(self.experiment_id, run_name=name, tags=tags)
            if found and run.info.status != "RUNNING":
                client.update_run(run.info.run_id, status="RUNNING")
            tracker = replace(self, run_id=run.info.run_id)
            tracker.log_params(params or {})
            return tracker
        except Exception as e:  # noqa: BLE001 - the tracker is never worth the training
            self.warn(f"the run {name}", e)
            return None

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        values = [Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in params.items()]
        self.client().log_batch(self.run_id, params=values)

    def log_epoch(self, stats: dict) -> None:
        """One epoch's stats at its number as the step: train and validation loss and accuracy,
        images (or fields) per second, seconds."""
        try:
            self.client().log_batch(self.run_id, metrics=numbers(stats, stats["epoch"], skip=NOT_PER_EPOCH))
        except Exception as e:  # noqa: BLE001 - best effort: a failing tracker costs a warning, not the run
            self.warn(f"epoch {stats['epoch']}", e)

    def finish(self, metrics: dict, files: dict[str | None, list], status: str = "FINISHED") -> None:
        """The test figures, then each artefact folder's files (local paths or storage URIs), then the
        run's end."""
        try:
            client = self.client()
            client.log_batch(self.run_id, metrics=numbers(metrics, 0))
            for folder, paths in files.items():
                for path in paths:
                    log_file(client, self.run_id, str(path), folder)
            client.set_terminated(self.run_id, status)
        except Exception as e:  # noqa: BLE001 - best effort: a failing tracker costs a warning, not the run
            self.warn("the results", e)

    def end_children(self, outcomes: dict[str, str]) -> None:
        """End the runs nested under this one that are still open (Tune stops a trial ASHA drops without
        letting it finish), each tagged with its outcome by key: completed, stopped early, error."""
        try:
            client = self.client()
            nested = client.search_runs([self.experiment_id], f"tags.`{PARENT_TAG}` = '{self.run_id}'")
            for run in nested:
                outcome = outcomes.get(run.data.tags.get(RUN_TAG), "")
                client.set_tag(run.info.run_id, "hdr.outcome", outcome)
                if run.info.status == "RUNNING":
                    client.set_terminated(run.info.run_id, "FAILED" if outcome == "error" else "FINISHED")
        except Exception as e:  # noqa: BLE001 - best effort: a failing tracker costs a warning, not the run
            self.warn("the trials' ends", e)

    def end(self, status: str = "FINISHED") -> None:
        try:
            self.client().set_terminated(self.run_id, status)
        except Exception as e:  # noqa: BLE001 - best effort: a failing tracker costs a warning, not the run
            self.warn("the run's end", e)


def numbers(metrics: dict, step: int, skip=()) -> list:
    """The numbers of ``metrics`` as MLflow metrics at ``step``: a None, a NaN or a string is left out."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(k, float(v), now, step)
        for k, v in metrics.items()
        if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
    ]


def log_file(client, run_id: str, path: str, folder: str | None) -> None:
    """One artefact; a checkpoint behind a storage URI (s3://...) is copied down first."""
    if Path(path).is_file():
        client.log_artifact(run_id, path, folder)
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(path).name
        local.write_bytes(storage.read_bytes(path))
        client.log_artifact(run_id, str(local), folder)


def open_tracker(value: str | None, experiment: str, output: Path) -> Tracker:
    """The tracker at ``value`` (``store_uri``), with the experiment ``experiment`` there, or the
    user's one-line error: no MLflow, an unanswered server, a store that cannot be written."""
    try:
        import mlflow  # noqa: F401 - imported only to learn whether the optional extra is installed
    except ImportError:
        raise UserError(INSTALL) from None
    uri = store_uri(value)
    tracker = Tracker(uri, "")
    try:
        with impatient():
            client = tracker.client()
            found = client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else client.create_experiment(experiment)
            # A write on every start: an existing experiment in a store now read-only fails here, not later.
            client.set_experiment_tag(experiment_id, "hdr.output", str(output))
    except Exception as e:  # noqa: BLE001 - whatever MLflow raises, it is this tracker's fault
        raise SettingError("mlflow", uri, f"cannot log there ({one_line(e)})") from None
    return Tracker(uri, experiment_id)
