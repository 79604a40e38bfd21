"""The report: real figures from a real compare run's Parquet tables, report.html with each one
embedded, and `hdr report` redrawing them; `check_report` is what every job's test asks of its report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hdr_dist.common import tables
from hdr_dist.data import datasets, samples
from hdr_dist.jobs import compare, report, score
from tests.helpers import check_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compared(ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert (
        compare.main(
            [
                "--limit-train",
                "1500",
                "--limit-test",
                "300",
                "--epochs",
                "1",
                "--models",
                "cnn,nb",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_compare_writes_every_figure_and_the_report(compared):
    page = check_report(
        compared,
        {
            "comparison.png",
            "calibration.png",
            "curves_cnn.png",
            "confusion_cnn.png",
            "per_class_cnn.png",
            "mistakes_cnn.png",
            "risk_coverage_cnn.png",
            "confusion_nb.png",
            "per_class_nb.png",
        },
    )
    metrics = pq.read_table(compared / "metrics.parquet").to_pylist()
    for r in metrics:  # the table opens the page with each model's accuracy
        assert f"<td>{100 * r['accuracy']:.2f}</td>" in page.split("<img ")[0]
    assert "000 CNN 99.31" in page
    assert "002 NB 80.60" in page


def test_mistakes_are_the_most_confident_wrong_predictions(compared):
    ds = datasets.load("mnist", limit_train=1500, limit_test=300)
    rows = pq.read_table(compared / "mistakes.parquet").to_pylist()
    wrong = (
        sum(
            1 - r["accuracy"]
            for r in pq.read_table(compared / "metrics.parquet").to_pylist()
            if r["model"] == "cnn"
        )
        * 300
    )
    assert len(rows) == min(tables.MISTAKES, round(wrong)) > 0
    assert {r["model"] for r in rows} == {"cnn"}  # nb gives no probabilities
    assert [r["confidence"] for r in rows] == sorted((r["confidence"] for r in rows), reverse=True)
    for r in rows:
        i = int(r["item"].removeprefix("test #"))
        assert r["true_label"] == ds.labels[ds.test.y[i]] != r["pred_label"]
        assert r["image"] == ds.test.x[i].tobytes()


def test_hdr_report_redraws_a_results_folder(compared, capsys):
    expected = {p.name for p in (compared / "figures").glob("*.png")}
    for p in (compared / "figures").glob("*.png"):
        p.unlink()
    (compared / "report.html").unlink()
    assert report.main([str(compared)]) == 0
    assert f"report: {compared / 'report.html'} ({len(expected)} figures)" in capsys.readouterr().out
    check_report(compared, expected)


def test_bad_results_dirs_are_one_line(tmp_path, capsys):
    assert report.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"hdr report: error: RESULTS_DIR {tmp_path / 'nope'}: no such folder\n"
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "holds no results of compare, tune or score" in err
    hdr = Path(sys.executable).parent / "hdr"
    done = subprocess.run([str(hdr), "report"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "the following arguments are required: RESULTS_DIR" in done.stderr


def test_an_unlabelled_score_output_gets_its_confidences_and_errors(compared, tmp_path):
    ds = datasets.load("mnist", limit_test=50)
    samples.write(tmp_path / "in", samples.entries(ds.test.x, ds.test.y, ds.labels))
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "scored"
    # The folder's most accurate model with a checkpoint: cnn (nb, a classical model, keeps none).
    assert score.main([str(tmp_path / "in"), "--model", str(compared), "--output", str(out)]) == 0
    assert pq.read_table(out / "predictions").to_pydict()["model"][0] == "cnn"
    assert not (out / "report.html").exists()  # no labels, no automatic report
    assert report.main([str(out)]) == 0
    page = check_report(out, {"score_confidence.png", "score_errors.png"})
    assert (
        "<td>51</td><td>50</td><td>1</td><td>0</td><td>0</td>" in page
    )  # images, scored, failed, labelled, wrong


def test_figures_for_47_classes_stay_readable(tmp_path):
    """EMNIST's 47 classes: the confusion matrix grows with the classes, and every label is drawn."""
    from hdr_dist.reports import plots

    labels = list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt")
    rng = np.random.default_rng(0)
    cm = np.diag(rng.integers(50, 400, 47)) + rng.poisson(0.3, (47, 47))
    small = plots.confusion(cm[:10, :10], labels[:10], "cnn", tmp_path / "c10.png")
    large = plots.confusion(cm, labels, "cnn", tmp_path / "c47.png")
    with Image.open(small) as a, Image.open(large) as b:
        assert b.width > 1.8 * a.width
        assert b.height > 1.8 * a.height
        assert b.width >= 1200


def test_a_47_class_emnist_cnn_stands_beside_002s_emnist_cnn(tmp_path):
    """002's one EMNIST figure (88 %, a CNN on 47 classes) is what an EMNIST cnn is set beside, in the
    table and in the comparison figure; never 000's MNIST CNN. An EMNIST lstm has no seed figure."""
    from rich.console import Console

    from hdr_dist.common import studies
    from hdr_dist.reports import display, plots

    row = {
        "dataset": "emnist-bymerge-test-resplit",
        "model": "cnn",
        "accuracy": 0.9105,
        "f1_macro": 0.89,
        "train_seconds": 900.0,
        "epochs": 8,
        "num_workers": 2,
        "infer_images_per_s": 9000.0,
    }
    rows = [row, row | {"model": "lstm"}, row | {"dataset": "mnist", "accuracy": 0.997}]
    console = Console(record=True, width=250)
    display.print_table(rows, console)
    lines = console.export_text().splitlines()
    emnist_cnn, emnist_lstm, mnist_cnn = (
        next(line for line in lines if f"{100 * r['accuracy']:.2f}" in line and f" {r['model']} " in line)
        for r in rows
    )
    assert "002 CNN EMNIST Balanced 88.00" in emnist_cnn
    assert "+3.05" in emnist_cnn
    assert "000 CNN" not in emnist_cnn
    assert "002 " not in emnist_lstm
    assert "000 LSTM" not in emnist_lstm
    assert "000 CNN 99.31" in mnist_cnn
    assert studies.seed_figure("emnist-balanced", "cnn-emnist-seed") == ("002 CNN EMNIST Balanced", 88.0)
    png = plots.comparison(rows, tmp_path / "comparison.png")
    with Image.open(png) as image:
        assert image.height > 200


def test_accuracy_axes_stop_at_100_percent():
    """Accuracy runs to 100 % and no further: the comparison's axis and the per-class bars' axis end there,
    and every value printed on a bar sits inside the axes."""
    from hdr_dist.reports import plots

    rows = [
        {"dataset": "mnist", "model": m, "accuracy": a}
        for m, a in (("cnn", 0.9968), ("lstm", 0.9927), ("nb", 0.8789), ("dt", 0.8736))
    ]
    figures = [
        plots.comparison_figure(rows),
        plots.per_class_figure(
            [
                {"class": i, "label": str(i), "accuracy": a}
                for i, a in enumerate([1.0, 0.999, 0.98, 0.9968, 0.35])
            ],
            "cnn",
        ),
    ]
    for fig, axis in zip(figures, ("x", "y")):
        ax = fig.axes[0]
        low, high = getattr(ax, f"get_{axis}lim")()
        assert high == 100
        assert 0 <= low < 100
        fig.canvas.draw()
        box = ax.get_window_extent()
        for text in ax.texts:
            inside = text.get_window_extent()
            assert box.x0 - 1 <= inside.x0, text.get_text()
            assert inside.x1 <= box.x1 + 1, text.get_text()
            assert inside.y1 <= box.y1 + 1, text.get_text()
