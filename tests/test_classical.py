"""The classical models through compare on a real local Ray cluster, and the comparison table."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from hdr_dist.common import studies, tables
from hdr_dist.data import datasets
from hdr_dist.jobs import compare
from hdr_dist.reports import display
from hdr_dist.training import classical, train

SMALL = ["--limit-train", "2000", "--limit-test", "300", "--cv-limit", "500"]
# Far above chance (10 %) for 1,800 training images, far below what the full data gives.
FLOORS = {"nb": 0.6, "dt": 0.55, "rf": 0.8, "knn": 0.8, "svm-linear": 0.75, "svm-rbf": 0.8, "mlp": 0.75}


def table(folder, name: str) -> dict:
    return pq.read_table(folder / f"{name}.parquet").to_pydict()


@pytest.fixture(scope="module")
def fitted(ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("classical")
    assert (
        compare.main(
            [
                *SMALL,
                "--models",
                ",".join(classical.MODELS),
                "--output",
                str(out),
                "--mlflow",
                str(out / "mlruns"),
            ]
        )
        == 0
    )
    return out


def test_each_classical_model_is_an_mlflow_run(fitted):
    from mlflow import MlflowClient

    client = MlflowClient((fitted / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name(fitted.name).experiment_id])
    m = table(fitted, "metrics")
    assert sorted(r.info.run_name for r in runs) == sorted(classical.MODELS)
    for run in runs:
        row = m["model"].index(run.info.run_name)
        assert run.data.params["method"] == m["method"][row]
        assert run.info.status == "FINISHED"
        assert run.data.metrics["accuracy"] == pytest.approx(m["accuracy"][row])
        assert not client.get_metric_history(run.info.run_id, "val_acc")  # one fit, no epochs
        assert "report.html" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_every_classical_model_writes_compare_rows(fitted):
    m = table(fitted, "metrics")
    assert set(tables.METRIC_COLUMNS) <= set(m)
    assert sorted(m["model"]) == sorted(classical.MODELS)
    for i, name in enumerate(m["model"]):
        assert m["accuracy"][i] > FLOORS[name], name
        assert m["train_seconds"][i] > 0
        assert m["infer_images_per_s"][i] > 0
        assert m["epochs"][i] is None
        assert m["checkpoint"][i] is None
        assert m["device"][i] == "cpu"
    methods = dict(zip(m["model"], m["method"]))
    assert methods["nb"].startswith("PCA(n_components=50) -> GaussianNB")
    assert "RandomForestClassifier(n_estimators=200)" in methods["rf"]
    assert "SVC(C=" in methods["svm-rbf"]
    assert "LinearSVC" in methods["svm-linear"]
    approximations = dict(zip(m["model"], m["approximation"]))
    assert approximations.pop("svm-rbf") == classical.APPROXIMATIONS["svm-rbf"] != ""
    assert set(approximations.values()) == {""}


def test_per_class_and_confusion_agree_with_metrics(fitted):
    m, pc, cm = (table(fitted, n) for n in ("metrics", "per_class", "confusion"))
    assert len(pc["model"]) == 70
    assert len(cm["model"]) == 700
    for model, acc in zip(m["model"], m["accuracy"]):
        cells = [
            (t, p, c) for mm, t, p, c in zip(cm["model"], cm["true"], cm["pred"], cm["count"]) if mm == model
        ]
        assert sum(c for _, _, c in cells) == 300
        assert sum(c for t, p, c in cells if t == p) / 300 == pytest.approx(acc)


def test_svm_grid_is_a_ray_tune_sweep_with_5_fold_cv(fitted):
    grid = table(fitted, "svm_rbf_cv")
    pairs = {(c, g) for c in classical.SVM_GRID["C"] for g in classical.SVM_GRID["gamma"]}
    assert set(zip(grid["C"], grid["gamma"])) == pairs
    assert len(grid["C"]) == len(pairs)
    assert set(grid["folds"]) == {5}
    assert set(grid["images"]) == {500}
    assert all(0.5 < a <= 1 for a in grid["cv_accuracy"])
    best = max(range(len(pairs)), key=lambda i: grid["cv_accuracy"][i])
    method = dict(zip(*(table(fitted, "metrics")[k] for k in ("model", "method"))))["svm-rbf"]
    assert f"C={grid['C'][best]}" in method
    assert f"gamma={grid['gamma'][best]}" in method
    assert list(fitted.glob("ray_train/svm-rbf-cv-*/experiment_state-*.json"))  # Tune's own record


def test_task_result_is_scikit_learns_own(ray_cluster):
    """The Ray task returns what the plain scikit-learn estimator predicts, fitted in this process."""
    ds = datasets.load("mnist", limit_train=1000, limit_test=200)
    out = classical.fit_and_predict("dt", train.arrays_of(ds), ds.test.x, seed=0, threads=1)
    from sklearn.tree import DecisionTreeClassifier

    direct = DecisionTreeClassifier(random_state=0).fit(classical.flatten(ds.train.x), ds.train.y)
    assert np.array_equal(out["pred"], direct.predict(classical.flatten(ds.test.x)))


def test_all_means_the_whole_hdalr_comparison():
    assert compare.model_names("all") == ["cnn", "lstm", *classical.MODELS]
    assert compare.model_names("nb,all") == [
        "nb",
        "cnn",
        "lstm",
        "dt",
        "rf",
        "knn",
        "svm-linear",
        "svm-rbf",
        "mlp",
    ]


def test_table_shows_each_seed_figure_and_the_difference(fitted):
    rows = pq.read_table(fitted / "metrics.parquet").to_pylist()
    console = Console(record=True, width=250)
    display.print_table(rows, console)
    text = console.export_text()
    for row in rows:
        label, figure = studies.STUDY_FIGURES.get(row["model"], ("", None))
        line = next(line for line in text.splitlines() if f" {row['model']} " in line)
        assert f"{100 * row['accuracy']:.2f}" in line
        assert f"{100 * row['f1_macro']:.2f}" in line
        if figure is not None:
            assert f"{label} {figure:.2f}" in line
            assert f"{100 * row['accuracy'] - figure:+.2f}" in line
    assert "50 PCA components" in next(line for line in text.splitlines() if " svm-rbf " in line)
    assert studies.STUDY_FIGURES["nb"] == ("002 NB", 80.6)
    assert studies.STUDY_FIGURES["svm-rbf"][1] == 94.4
