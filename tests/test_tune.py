"""tune end to end on a real local Ray cluster: trials, best config, the best model's test rows, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hdr_dist import models
from hdr_dist.common import tables
from hdr_dist.jobs import compare, tune
from hdr_dist.models import checkpoints
from hdr_dist.training import sweep
from tests.helpers import ROOT

SWEEP = ["--limit-train", "1000", "--limit-test", "200", "--epochs", "2", "--num-samples", "3"]
SWEPT = ("lr", "batch_size", "weight_decay", "dropout", "width", "augment_strength")


def table(folder: Path, name: str) -> dict:
    return pq.read_table(folder / f"{name}.parquet").to_pydict()


@pytest.fixture(scope="module")
def swept(ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    assert tune.main([*SWEEP, "--output", str(out), "--mlflow", str(out / "mlruns")]) == 0
    return out


def test_trials_parquet_has_one_row_per_trial(swept):
    t = table(swept, "trials")
    assert len(t["trial_id"]) == 3
    assert len(set(t["trial_id"])) == 3
    assert set(SWEPT) | {"best_val_acc", "best_epoch", "epochs", "seconds", "status"} <= set(t)
    assert set(t["status"]) <= {"completed", "stopped early"}
    assert "completed" in t["status"]
    for i in range(3):
        assert 0 < t["best_val_acc"][i] <= 1
        assert 1 <= t["best_epoch"][i] <= t["epochs"][i] <= 2
        assert (t["status"][i] == "completed") == (t["epochs"][i] == 2)
        assert t["seconds"][i] > 0
        assert Path(t["checkpoint"][i]).is_dir()
    first = {k: t[k][0] for k in SWEPT}  # --recipe-first: trial 0 is the recipe's own settings
    assert first == pytest.approx(sweep.recipe_point("cnn"))
    assert len({(t["lr"][i], t["width"][i]) for i in range(3)}) == 3  # the others were sampled


def test_the_sweep_is_an_mlflow_run_with_each_trial_nested(swept):
    from mlflow import MlflowClient

    client = MlflowClient((swept / "mlruns").as_uri())
    experiment = client.get_experiment_by_name(swept.name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    assert parents[0].info.run_name.startswith("sweep-mnist-cnn")
    parent = parents[0]
    trials = table(swept, "trials")
    children = {
        r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(children) == {f"trial {t}" for t in trials["trial_id"]}
    for i, trial_id in enumerate(trials["trial_id"]):
        run = children[f"trial {trial_id}"]
        assert run.info.status == "FINISHED"
        assert run.data.tags["hdr.outcome"] == trials["status"][i]
        assert float(run.data.params["lr"]) == pytest.approx(trials["lr"][i])
        assert run.data.params["model"] == "cnn"
        steps = sorted(client.get_metric_history(run.info.run_id, "val_acc"), key=lambda m: m.step)
        # Rank 0 logs each epoch as it ends; when ASHA stops a trial, its worker may have finished one
        # more epoch than Tune counted.
        assert [m.step for m in steps] == list(range(1, len(steps) + 1))
        assert len(steps) >= trials["epochs"][i]
        assert max(m.value for m in steps[: trials["epochs"][i]]) == pytest.approx(trials["best_val_acc"][i])
    best = table(swept, "metrics")
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["accuracy"] == pytest.approx(best["accuracy"][0])
    assert parent.data.metrics["best_val_acc"] == pytest.approx(max(trials["best_val_acc"]))
    assert parent.data.params["num_samples"] == "3"
    files = {
        a.path for folder in (None, "checkpoint") for a in client.list_artifacts(parent.info.run_id, folder)
    }
    assert {"report.html", "figures", "checkpoint/model.pt"} <= files


def test_report_plots_each_hyperparameter(swept):
    from tests.helpers import check_report

    page = check_report(
        swept,
        {
            "comparison.png",
            "tune_hyperparameters.png",
            "curves_cnn.png",
            "confusion_cnn.png",
            "per_class_cnn.png",
            "mistakes_cnn.png",
        },
    )
    assert "Sweep: 3 trials" in page


def test_best_trial_is_tested_in_compares_schemas(swept):
    t, m, pc, cm = (table(swept, n) for n in ("trials", "metrics", "per_class", "confusion"))
    assert set(tables.METRIC_COLUMNS) <= set(m)
    assert m["model"] == ["cnn"]
    assert len(pc["label"]) == 10
    assert len(cm["count"]) == 100
    assert sum(cm["count"]) == 200
    diag = sum(c for tt, p, c in zip(cm["true"], cm["pred"], cm["count"]) if tt == p)
    assert diag / 200 == pytest.approx(m["accuracy"][0])
    best = max(range(3), key=lambda i: t["best_val_acc"][i])
    state = checkpoints.load(m["checkpoint"][0])
    assert state["config"]["lr"] == pytest.approx(t["lr"][best])
    assert state["config"]["width"] == t["width"][best]
    assert len(table(swept, "history")["epoch"]) == t["best_epoch"][best]


def test_best_config_trains_again_through_compare(swept, tmp_path):
    best = json.loads((swept / "best_config.json").read_text())
    t = table(swept, "trials")
    i = max(range(3), key=lambda i: t["best_val_acc"][i])
    assert best["models"] == "cnn"
    assert best["lr"] == pytest.approx(t["lr"][i], rel=1e-5)
    assert best["batch_size"] == t["batch_size"][i]
    assert best["epochs"] == 2
    # --epochs on the command line wins over the file's
    assert (
        compare.main(
            [
                "--config",
                str(swept / "best_config.json"),
                "--limit-train",
                "1000",
                "--limit-test",
                "200",
                "--epochs",
                "1",
                "--output",
                str(tmp_path),
            ]
        )
        == 0
    )
    cfg = checkpoints.load(table(tmp_path, "metrics")["checkpoint"][0])["config"]
    for key in ("lr", "batch_size", "weight_decay", "dropout", "width", "rotation", "shift", "zoom"):
        assert cfg[key] == pytest.approx(best[key], rel=1e-5), key
    assert cfg["epochs"] == 1


def test_width_and_dropout_reach_the_model():
    wide = models.build("cnn", 10, width=2.0, dropout=0.4)
    assert wide.features[0].out_channels == 32
    assert wide.classifier[0].p == 0.4
    assert models.count_params(wide) > 2 * models.count_params(models.build("cnn", 10))
    assert models.build("lstm", 10, width=0.5).rnn.hidden_size == 64


def sweep_dir(output: Path) -> Path:
    found = list(output.glob("ray_tune/sweep-*/tuner.pkl"))
    assert len(found) == 1, found  # resuming never starts a second sweep
    return found[0].parent


def first_epochs(output: Path) -> dict[str, float]:
    """Each trial's epoch-1 time from its Train run's checkpoints: equal later means not re-run.

    Only runs whose checkpoint Train has registered count (what a restart resumes from); a
    checkpoint being written at that moment is passed over for an older one.
    """
    out = {}
    for run in output.glob("ray_tune/*-trial-*"):
        if not (run / "checkpoint_manager_snapshot.json").exists():
            continue
        for folder in sorted((p for p in run.glob("checkpoint_*") if p.is_dir()), reverse=True):
            try:
                out[run.name.rsplit("-trial-", 1)[1]] = checkpoints.load(folder)["history"][0]["seconds"]
                break
            except (OSError, RuntimeError, EOFError):
                continue
    return out


def interrupted_sweep(ray_cluster, output: Path, args: list[str], sig: int, saved) -> subprocess.Popen:
    """A sweep in a separate driver on the session's cluster, sent ``sig`` once ``saved(output)``."""
    driver = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "jobs" / "tune.py"),
            *args,
            "--address",
            ray_cluster.address_info["address"],
        ],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not saved(output) and time.time() < deadline and driver.poll() is None:
        time.sleep(0.5)
    assert saved(output), "the sweep saved nothing to resume from before the deadline"
    driver.send_signal(sig)
    return driver


RESUME = ["--limit-train", "1000", "--limit-test", "200", "--epochs", "3", "--num-samples", "4"]


def test_ctrl_c_then_the_same_command_resumes_the_sweep(ray_cluster, tmp_path):
    args = [*RESUME, "--output", str(tmp_path)]
    driver = interrupted_sweep(ray_cluster, tmp_path, args, signal.SIGINT, lambda out: first_epochs(out))
    _, err = driver.communicate(timeout=180)
    assert driver.returncode == 130
    assert "interrupted; run the same command again to resume the sweep" in err.splitlines()[-1]
    assert not (tmp_path / "trials.parquet").exists()
    before = first_epochs(tmp_path)

    time.sleep(2)  # let Ray reap the dead driver's actors
    assert tune.main(args) == 0
    t = table(tmp_path, "trials")
    assert len(t["trial_id"]) == 4
    assert set(before) <= set(t["trial_id"])
    after = first_epochs(tmp_path)
    assert {k: after[k] for k in before} == before  # resumed from their checkpoints, not retrained
    sweep_dir(tmp_path)


def test_killed_driver_then_the_same_command_resumes_the_sweep(ray_cluster, tmp_path):
    def saved(out: Path) -> bool:
        """Tune's saved experiment state already names a trial that has a Train checkpoint."""
        states = list(out.glob("ray_tune/sweep-*/experiment_state-*.json"))
        text = "".join(s.read_text(errors="replace") for s in states)
        return any(trial in text for trial in first_epochs(out))

    args = [*RESUME, "--output", str(tmp_path)]
    driver = interrupted_sweep(ray_cluster, tmp_path, args, signal.SIGKILL, saved)
    driver.wait(timeout=30)
    states = "".join(
        s.read_text(errors="replace") for s in tmp_path.glob("ray_tune/sweep-*/experiment_state-*.json")
    )
    known = {trial for trial in first_epochs(tmp_path) if trial in states}

    time.sleep(2)
    assert tune.main(args) == 0
    t = table(tmp_path, "trials")
    assert len(t["trial_id"]) == 4
    assert len(set(t["trial_id"])) == 4
    assert known <= set(t["trial_id"])
    sweep_dir(tmp_path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "tune.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
        (["--num-samples", "0"], "argument --num-samples: must be at least 1, got 0"),
        (["--epochs", "2", "--grace-period", "3"], "--grace-period 3 is longer than --epochs 2"),
        (["--reduction-factor", "1"], "--reduction-factor must be at least 2"),
        (["--mlflow", "http://127.0.0.1:9"], "--mlflow http://127.0.0.1:9: cannot log there"),
    ],
)
def test_bad_flags_give_one_line(args, message, tmp_path):
    result = run_cli(*args, "--output", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


def test_more_trials_at_once_than_the_cluster_holds(ray_cluster, tmp_path, capsys):
    assert tune.main([*SWEEP, "--max-concurrent", "3", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--max-concurrent 3: the Ray cluster holds 2 trials of 1 worker(s)" in err


def test_a_sweep_saved_by_a_version_whose_modules_moved_is_one_line(ray_cluster, tmp_path):
    """Tune pickles the experiment with references to the modules it ran; a sweep saved before a module
    moved cannot be read back, and says so in one line (a real sweep of the old layout failed this way
    with ModuleNotFoundError: No module named 'hdr_dist.cli')."""
    from hdr_dist.common.errors import UserError
    from hdr_dist.training import tuner

    (tmp_path / "tuner.pkl").write_bytes(b"chdr_dist.no_such_module\nthing\n.")  # pickle's GLOBAL opcode
    with pytest.raises(
        UserError,
        match=r"cannot be read back \(No module named 'hdr_dist.no_such_module'\); "
        "move it away",
    ):
        tuner.start_or_restore(str(tmp_path), lambda config: None, {}, None, None)
