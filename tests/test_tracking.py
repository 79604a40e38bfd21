"""MLflow tracking without Ray: where runs go, the one-line refusals, a run found again on resume, and a
tracker that fails halfway costing a warning, not the job."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time

import pytest

from hdr_dist.common.errors import UserError
from hdr_dist.training import tracking
from tests.helpers import ROOT


def test_the_store_comes_from_the_flag_then_the_environment_then_mlruns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.store_uri("") == (tmp_path / "mlruns").as_uri()
    assert (
        tracking.store_uri("runs/here") == (tmp_path / "runs" / "here").as_uri()
    )  # absolute: workers cd elsewhere
    assert tracking.store_uri("file:store") == (tmp_path / "store").as_uri()
    assert tracking.store_uri("http://tracker:5000") == "http://tracker:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///db.sqlite")
    assert tracking.store_uri("") == f"sqlite:///{tmp_path / 'db.sqlite'}"  # absolute too
    assert tracking.store_uri("sqlite:////abs/db.sqlite?timeout=20") == "sqlite:////abs/db.sqlite?timeout=20"
    assert tracking.store_uri("sqlite:///db?timeout=20") == f"sqlite:///{tmp_path / 'db'}?timeout=20"
    assert tracking.store_uri("sqlite:///:memory:") == "sqlite:///:memory:"
    assert tracking.store_uri(str(tmp_path / "x")) == (tmp_path / "x").as_uri()


def test_a_server_that_does_not_answer_is_one_line_at_once(tmp_path):
    started = time.perf_counter()
    with pytest.raises(UserError, match=r"^--mlflow http://127\.0\.0\.1:9: cannot log there \(") as e:
        tracking.open_tracker("http://127.0.0.1:9", "results", tmp_path)
    assert "\n" not in str(e.value)
    # MLflow's own retries would take minutes; a reasonable bound, not a timing target.
    assert time.perf_counter() - started < 60


def test_a_store_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot log there") as e:
        tracking.open_tracker(str(blocker / "mlruns"), "results", tmp_path)
    assert str(blocker / "mlruns") in str(e.value)
    assert "\n" not in str(e.value)


def test_without_mlflow_the_flag_says_how_to_install_it(tmp_path):
    # A fresh interpreter in which `import mlflow` fails, as on an install without the extra.
    code = (
        "import sys; sys.modules['mlflow'] = None; from hdr_dist.jobs.cli import main; "
        f"sys.exit(main(['compare', '--mlflow', '--output', {str(tmp_path / 'out')!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--mlflow needs MLflow, an optional extra: pip install 'hdr-dist[mlflow]'" in result.stderr


def test_a_resumed_run_is_found_again_and_each_epoch_is_a_step(tmp_path):
    from mlflow import MlflowClient

    opened = tracking.open_tracker(str(tmp_path / "mlruns"), "results", tmp_path / "results")
    run = opened.start("cnn", "mnist-cnn-abc", {"lr": 0.003, "labels": ["0", "1"]})
    run.log_epoch({"epoch": 1, "train_loss": 0.5, "val_acc": 0.9, "nodes": 1, "ended_at": 1e9})
    again = opened.start("cnn", "mnist-cnn-abc", {"lr": 0.003, "labels": ["0", "1"]})
    again.log_epoch({"epoch": 2, "train_loss": 0.4, "val_acc": 0.95, "nodes": 1, "ended_at": 1e9})
    other = opened.start("cnn", "mnist-cnn-def")
    assert again.run_id == run.run_id != other.run_id
    client = MlflowClient(opened.uri)
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "val_acc")] == [
        (1, 0.9),
        (2, 0.95),
    ]
    logged = client.get_run(run.run_id).data
    assert logged.params == {"lr": "0.003", "labels": '["0", "1"]'}
    assert not {"nodes", "ended_at", "epoch"} & set(logged.metrics)


def test_a_tracker_that_fails_halfway_costs_a_warning_not_the_job(tmp_path, caplog):
    store = tmp_path / "mlruns"
    run = tracking.open_tracker(str(store), "results", tmp_path).start("cnn", "key")
    shutil.rmtree(store)
    store.write_text("the store is gone")  # nothing can be written there any more
    with caplog.at_level(logging.WARNING, logger="hdr_dist.tracking"):
        run.log_epoch({"epoch": 1, "val_acc": 0.9})
        run.finish({"accuracy": 0.9}, {None: [tmp_path / "nothing.html"]})
        assert run.start("cnn", "key2") is None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3
    assert all(w.startswith("mlflow: could not log ") for w in warnings)
    assert all(str(store.as_uri()) in w for w in warnings)


def test_the_closing_line_says_how_to_open_the_runs_in_mlflows_ui():
    from hdr_dist.jobs.flags import mlflow_closing

    folder = mlflow_closing("file:///runs/mlruns", "results").splitlines()
    assert folder[0] == "MLflow: experiment 'results' at file:///runs/mlruns"
    assert folder[1].endswith(
        ": MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri file:///runs/mlruns"
    )
    database = mlflow_closing("sqlite:////runs/mlflow.db", "results")
    assert database.endswith(": mlflow ui --backend-store-uri sqlite:////runs/mlflow.db")
    server = mlflow_closing("http://tracker:5000", "results")
    assert server == "MLflow: experiment 'results' at http://tracker:5000"  # the server's address is its UI
