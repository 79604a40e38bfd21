"""compare end to end on a real local Ray cluster: Parquet outputs, checkpoints, resume, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from hdr_dist.common import cluster, tables
from hdr_dist.data import datasets
from hdr_dist.inference import calibration, readers
from hdr_dist.jobs import compare
from hdr_dist.models import checkpoints
from tests.helpers import ROOT, checkpoint_files, driver_with_a_checkpoint, table

# Enough steps (2 x 56 batches) for BatchNorm's running statistics to settle, still seconds per model.
SMALL = ["--limit-train", "2000", "--limit-test", "200", "--epochs", "2", "--batch-size", "32"]
STORE = "mlruns"  # the MLflow file store the compare run below logs to, inside its output folder
# The smallest run of one model: one worker, one epoch of two batches.
TINY = ["--models", "cnn", "--limit-train", "500", "--limit-test", "100", "--epochs", "1", "--workers", "1"]
# MLflow's own client on a store (argv 1) and experiment (argv 2): each run's status, val_acc and accuracy.
READ_BACK = """
import json, sys
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
runs = client.search_runs([client.get_experiment_by_name(sys.argv[2]).experiment_id])
print(json.dumps({r.info.run_name: {
    "status": r.info.status,
    "accuracy": r.data.metrics.get("accuracy"),
    "val_acc": [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "val_acc")],
} for r in runs}))
"""


@pytest.fixture(scope="module")
def compared(ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert (
        compare.main([*SMALL, "--models", "cnn,lstm", "--output", str(out), "--mlflow", str(out / STORE)])
        == 0
    )
    return out


def test_metrics_parquet_schema_and_values(compared):
    m = table(compared, "metrics")
    assert set(tables.METRIC_COLUMNS) <= set(m)
    assert m["model"] == ["cnn", "lstm"]
    assert m["dataset"] == ["mnist", "mnist"]
    # --workers auto on the session's one node of 2 CPUs: a worker per core, one torch thread each.
    assert m["epochs"] == [2, 2]
    assert m["num_workers"] == [2, 2]
    assert m["device"] == ["cpu", "cpu"]
    assert m["threads_per_worker"] == [1, 1]
    assert m["num_nodes"] == [1, 1]
    assert m["accuracy"][0] > 0.8
    assert m["accuracy"][1] > 0.3  # chance is 0.1
    assert all(0 < v <= 1 for v in m["f1_macro"] + m["precision_weighted"])
    assert all(v > 0 for v in m["train_seconds"] + m["infer_images_per_s"] + m["params"])


def test_timings_say_where_the_wall_time_went(compared):
    timings = json.loads((compared / compare.TIMINGS).read_text())
    seconds, share = timings["seconds"], timings["share"]
    assert list(seconds) == [*compare.Phases.ORDER, "other"]
    # Two models trained and tested: each phase took time (the temperature fit on 180 validation images,
    # under a millisecond, may round to 0), and the phases add up to the whole.
    assert all(seconds[k] > 0 for k in ("data", "ray_start", "train_start", "epochs", "evaluation", "report"))
    assert seconds["calibration"] >= 0
    assert sum(seconds.values()) == pytest.approx(timings["total_seconds"], rel=0.01)
    assert sum(share.values()) == pytest.approx(1, abs=0.01)
    history = table(compared, "history")
    assert seconds["epochs"] >= sum(history["seconds"]) - 0.1  # training, and validation beside it


def test_workers_auto_and_a_number():
    nodes = [{"CPU": 2.0}, {"CPU": 2.0}]
    assert cluster.auto_workers(nodes, use_gpu=False) == cluster.Workers(4, 1, False)
    assert cluster.auto_workers(
        [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}], use_gpu=True
    ) == cluster.Workers(3, 8, True)
    assert cluster.auto_workers([{"CPU": 0.0}], use_gpu=False) == cluster.Workers(1, 1, False)  # a bare head
    args = compare.parser().parse_args([])
    assert args.workers is None
    assert args.cpus_per_worker is None  # auto, decided on the cluster
    assert compare.parser().parse_args(["--workers", "3"]).workers == 3
    with pytest.raises(SystemExit):
        compare.parser().parse_args(["--workers", "many"])


def test_report_has_every_models_figures(compared):
    from tests.helpers import check_report

    check_report(
        compared,
        {"comparison.png", "calibration.png"}
        | {
            f"{kind}_{m}.png"
            for m in ("cnn", "lstm")
            for kind in ("curves", "confusion", "per_class", "mistakes", "risk_coverage")
        },
    )


def test_tables_agree_with_each_other(compared):
    m, pc, cm, h = (table(compared, n) for n in ("metrics", "per_class", "confusion", "history"))
    assert len(pc["model"]) == 20
    assert set(pc["label"]) == {str(d) for d in range(10)}
    assert len(cm["model"]) == 200
    assert {"model", "true", "pred", "count"} <= set(cm)
    for i, model in enumerate(m["model"]):
        counts = [c for c, mm in zip(cm["count"], cm["model"]) if mm == model]
        diag = [
            c
            for c, mm, t, p in zip(cm["count"], cm["model"], cm["true"], cm["pred"])
            if mm == model and t == p
        ]
        assert sum(counts) == 200
        assert sum(diag) / 200 == pytest.approx(m["accuracy"][i])
        support = [s for s, mm in zip(pc["support"], pc["model"]) if mm == model]
        assert sum(support) == 200
    assert set(tables.HISTORY_COLUMNS) <= set(h)
    assert [(mo, e) for mo, e in zip(h["model"], h["epoch"])] == [
        ("cnn", 1),
        ("cnn", 2),
        ("lstm", 1),
        ("lstm", 2),
    ]


def test_calibration_is_stored_with_the_checkpoint_and_its_curves_written(compared):
    ds = datasets.load("mnist", limit_train=2000, limit_test=200)  # SMALL's images and hold-out
    curves = pq.read_table(compared / "risk_coverage.parquet").to_pylist()
    for row in pq.read_table(compared / "metrics.parquet").to_pylist():
        assert set(tables.CALIBRATION_COLUMNS) <= set(row)
        assert 0 <= row["ece_after"] <= 1
        state = checkpoints.load(row["checkpoint"])
        assert state["temperature"] == pytest.approx(row["temperature"])
        assert 0.05 <= row["temperature"] <= 20
        # the temperature was fitted on the hold-out
        val = readers.DIGIT.test(state, {"val": (ds.val.x, ds.val.y)}, temperature=1.0).sets["val"]
        assert calibration.nll(val["logits"], ds.val.y, row["temperature"]) <= calibration.nll(
            val["logits"], ds.val.y, 1.0
        )
        for split, n in (("val", len(ds.val.y)), ("test", 200)):
            curve = sorted(
                (r for r in curves if r["model"] == row["model"] and r["split"] == split),
                key=lambda r: -r["threshold"],
            )
            assert [r["coverage"] for r in curve] == sorted(r["coverage"] for r in curve)
            assert curve[-1]["coverage"] == 1.0
            assert round(curve[0]["coverage"] * n) >= 1
            if split == "val":  # kept with the checkpoint too: score --target-error reads its threshold there
                assert state["val_risk_coverage"]["threshold"] == pytest.approx(
                    [r["threshold"] for r in curve]
                )
        assert curve[-1]["risk"] == pytest.approx(1 - row["accuracy"])  # the test split, all accepted


def test_checkpoint_loads_weights_only_and_reproduces_accuracy(compared):
    m = table(compared, "metrics")
    ds = datasets.load("mnist", limit_train=2000, limit_test=200)
    for model, path, acc in zip(m["model"], m["checkpoint"], m["accuracy"]):
        state = torch.load(path, weights_only=True)
        assert state["config"]["model"] == model
        assert state["config"]["labels"] == ds.labels
        again = readers.DIGIT.test(state, {"test": (ds.test.x, ds.test.y)}).scores
        assert again["accuracy"] == pytest.approx(acc)
        from sklearn.metrics import f1_score

        assert again["f1_macro"] == pytest.approx(f1_score(ds.test.y, again["pred"], average="macro"))


def test_rerun_resumes_instead_of_retraining(compared, capsys):
    before = table(compared, "history")
    assert (
        compare.main(
            [*SMALL, "--models", "cnn,lstm", "--output", str(compared), "--mlflow", str(compared / STORE)]
        )
        == 0
    )
    after = table(compared, "history")
    # Epoch timings are measured, so equal values mean the epochs were not run again.
    assert after["seconds"] == before["seconds"]


def test_each_model_is_an_mlflow_run_read_back_by_mlflow(compared):
    """Read with MLflow's own client, whether or not the rerun above went first: a resumed run logs on
    to the same MLflow run, so each deep model still has one run, with one step per epoch."""
    from mlflow import MlflowClient

    client = MlflowClient((compared / STORE).as_uri())
    experiment = client.get_experiment_by_name(compared.name)
    runs = client.search_runs([experiment.experiment_id])
    by_model = {}
    for run in runs:
        by_model.setdefault(run.info.run_name, []).append(run)
    assert set(by_model) == {"cnn", "lstm"}
    assert len(by_model["cnn"]) == len(by_model["lstm"]) == 1
    metrics = table(compared, "metrics")
    history = table(compared, "history")
    for model in ("cnn", "lstm"):
        run = by_model[model][0]
        assert run.info.status == "FINISHED"
        assert run.data.params["model"] == model
        assert run.data.params["epochs"] == "2"
        assert run.data.params["batch_size"] == "32"
        assert json.loads(run.data.params["labels"]) == list("0123456789")
        assert run.data.params["workers"] == str(metrics["num_workers"][metrics["model"].index(model)])
        logged = {
            name: client.get_metric_history(run.info.run_id, name)
            for name in ("train_loss", "train_acc", "val_loss", "val_acc", "images_per_s")
        }
        mine = [i for i, m in enumerate(history["model"]) if m == model]
        for name, steps in logged.items():
            assert [m.step for m in steps] == [1, 2], name
        assert [m.value for m in logged["val_acc"]] == pytest.approx([history["val_acc"][i] for i in mine])
        row = metrics["model"].index(model)
        for name in (
            "accuracy",
            "f1_macro",
            "ece_before",
            "ece_after",
            "coverage_at_0.01",
            "coverage_at_0.005",
            "coverage_at_0.001",
        ):
            assert run.data.metrics[name] == pytest.approx(metrics[name][row]), name
        files = {
            a.path
            for folder in ("", "figures", "checkpoint")
            for a in client.list_artifacts(run.info.run_id, folder or None)
        }
        assert {
            "report.html",
            "checkpoint/model.pt",
            f"figures/curves_{model}.png",
            "figures/comparison.png",
        } <= files
        saved = Path(client.download_artifacts(run.info.run_id, "checkpoint/model.pt"))
        assert torch.load(saved, weights_only=True)["config"]["model"] == model


def test_mlflow_alone_logs_to_mlruns_which_mlflow_opens_as_the_closing_line_says(
    ray_cluster, tmp_path, monkeypatch, capsys
):
    """``--mlflow`` with no URI: the ./mlruns file store, read back by MLflow's own client in a fresh
    interpreter with no MLflow settings but the one the job's closing line names, and refused without it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "tiny"
    assert compare.main([*TINY, "--output", str(out), "--mlflow"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "mlflow ui" in line)
    setting, uri = re.search(r": (\w+=\S+) mlflow ui --backend-store-uri (\S+)$", line).groups()
    assert uri == (tmp_path / "mlruns").as_uri()

    def read_back(env: dict) -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", READ_BACK, uri, out.name]
        return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    refused = read_back(env)
    assert refused.returncode == 1 and "maintenance mode" in refused.stderr
    read = read_back(env | dict([setting.split("=", 1)]))
    assert read.returncode == 0, read.stderr
    runs = json.loads(read.stdout)
    assert set(runs) == {"cnn"}
    assert runs["cnn"]["status"] == "FINISHED"
    assert runs["cnn"]["val_acc"] == [[1, pytest.approx(table(out, "history")["val_acc"][0])]]
    assert runs["cnn"]["accuracy"] == pytest.approx(table(out, "metrics")["accuracy"][0])


def test_killed_driver_resumes_from_last_checkpoint(ray_cluster, tmp_path):
    """Kill the job's driver mid-run; the same command then continues after the last checkpoint."""
    args = [
        "--limit-train",
        "2000",
        "--limit-test",
        "200",
        "--epochs",
        "4",
        "--models",
        "cnn",
        "--output",
        str(tmp_path),
    ]
    driver = driver_with_a_checkpoint(ray_cluster, args, tmp_path, stderr=subprocess.DEVNULL)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert not (tmp_path / "metrics.parquet").exists()
    first = checkpoints.load(checkpoint_files(tmp_path)[0])["history"][0]

    time.sleep(2)  # let Ray reap the dead driver's actors
    assert compare.main(args) == 0
    h = table(tmp_path, "history")
    assert h["epoch"] == [1, 2, 3, 4]
    assert h["seconds"][0] == first["seconds"]  # epoch 1 came from the checkpoint, not a re-run


def test_ctrl_c_stops_with_a_resume_hint(ray_cluster, tmp_path):
    """Ctrl-C mid-training: Ray Train aborts the run, the job says how to resume, status 130."""
    args = [
        "--models",
        "cnn",
        "--limit-train",
        "3000",
        "--limit-test",
        "200",
        "--epochs",
        "8",
        "--output",
        str(tmp_path),
    ]
    driver = driver_with_a_checkpoint(ray_cluster, args, tmp_path, stderr=subprocess.PIPE, text=True)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130
    assert "jobs/compare.py: interrupted; run the same command again to resume" in err
    assert not (tmp_path / "metrics.parquet").exists()


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "compare.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "cnn,resnet"], "unknown model 'resnet'"),
        (["--models", ","], "--models is empty"),
        (["--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
        (["--dataset", "emnist-letters"], "--dataset emnist-letters needs --data-dir"),
        (["--data-dir", "/nonexistent/mnist"], "--data-dir /nonexistent/mnist: no such folder"),
        (["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
        (["--workers", "two"], "argument --workers: must be a number of workers or auto, got 'two'"),
        (["--gpu", "maybe"], "argument --gpu: invalid choice: 'maybe'"),
        (
            ["--address", "127.0.0.1:9", "--limit-train", "500"],
            "--address 127.0.0.1:9: no Ray cluster answers there",
        ),
        (
            ["--mlflow", "http://127.0.0.1:9", "--limit-train", "500"],
            "--mlflow http://127.0.0.1:9: cannot log there",
        ),
        (["--mlflow", "nosuch://tracker"], "--mlflow nosuch://tracker: cannot log there"),
    ],
)
def test_bad_flags_give_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_data_dir_contents_give_one_line(tmp_path, mnist_copy):
    (mnist_copy / "t10k-labels-idx1-ubyte").unlink()
    result = run_cli("--data-dir", str(mnist_copy), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "incomplete MNIST folder, missing t10k-labels-idx1-ubyte" in result.stderr

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for f in mnist_copy.iterdir():
        (corrupt / f.name).write_bytes(f.read_bytes())
    (corrupt / "t10k-labels-idx1-ubyte").write_bytes(np.array([0, 0, 8, 1], np.uint8).tobytes() + b"\x00\x00")
    result = run_cli("--data-dir", str(corrupt), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "t10k-labels-idx1-ubyte: truncated IDX header" in result.stderr


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("--output", str(blocker / "results"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"--output {blocker / 'results'}: cannot write there" in result.stderr


def test_more_workers_than_the_cluster_can_place(ray_cluster, tmp_path, capsys):
    """Without an autoscaler, at once; with --placement-timeout, after waiting that long; never a hang."""
    assert compare.main([*SMALL, "--workers", "3", "--output", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1
    assert err.startswith(
        "hdr compare: error: --workers 3 x --cpus-per-worker 1: the Ray cluster's 1 node(s) hold 2 such "
        "workers (2 CPUs); add nodes, lower --workers, or pass --placement-timeout SECONDS"
    )
    assert "waiting" not in out  # it did not wait for nodes: no autoscaler, no --placement-timeout
    started = time.monotonic()
    assert (
        compare.main(
            [
                *SMALL,
                "--workers",
                "2",
                "--cpus-per-worker",
                "2",
                "--placement-timeout",
                "3",
                "--output",
                str(tmp_path),
            ]
        )
        == 2
    )
    out, err = capsys.readouterr()
    assert time.monotonic() - started >= 3
    assert "waiting up to 3 s for nodes: --workers 2 x --cpus-per-worker 2" in out
    assert err.count("\n") == 1
    assert "hold 1 such workers (2 CPUs); waited 3 s (--placement-timeout)" in err
    assert (
        compare.main(
            [*SMALL, "--workers", "1", "--cpus-per-worker", "2", "--gpu", "on", "--output", str(tmp_path)]
        )
        == 2
    )
    assert "--gpu on with --workers 1 needs 1 GPUs; the Ray cluster has 0" in capsys.readouterr().err


def test_emnist_47_classes_end_to_end(ray_cluster, tmp_path):
    from tests.helpers import shared

    folder = shared("emnist-bymerge")
    assert (
        compare.main(
            [
                "--dataset",
                "emnist-bymerge",
                "--data-dir",
                str(folder),
                "--models",
                "cnn",
                "--limit-train",
                "3000",
                "--limit-test",
                "470",
                "--epochs",
                "1",
                "--output",
                str(tmp_path),
            ]
        )
        == 0
    )
    m, pc = table(tmp_path, "metrics"), table(tmp_path, "per_class")
    assert m["dataset"] == ["emnist-bymerge-test-resplit"]  # never called "EMNIST Balanced"
    assert len(pc["label"]) == 47
    assert pc["label"][10] == "A"
    assert pc["label"][36] == "a"
    state = checkpoints.load(m["checkpoint"][0])
    assert state["config"]["num_classes"] == 47
    assert len(state["config"]["labels"]) == 47
    from PIL import (
        Image,  # the report's 47-class confusion matrix grows to stay readable
    )

    with Image.open(tmp_path / "figures" / "confusion_cnn.png") as im:
        assert im.width >= 1200
        assert im.height >= 1200


def test_console_script():
    hdr = Path(sys.executable).parent / "hdr"
    result = subprocess.run([str(hdr), "compare", "--models", "nope"], capture_output=True, text=True)
    assert result.returncode == 2
    assert (
        result.stderr == "hdr compare: error: unknown model 'nope'; "
        "choose from cnn, lstm, crnn, cnn-seed, cnn-emnist-seed, lstm-seed\n"
    )
    result = subprocess.run([str(hdr)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage: hdr {compare,score,forms,tune,report,export,models}" in result.stderr
