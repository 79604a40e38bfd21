"""hdr export: the exported file computes what score's torch path computes (logits within 1e-4, the same
answers) for each model kind, in both formats, at any batch size and, for fields, any width; it
carries its metadata; docs/export.md's example runs; bad input is one line."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from scipy.special import log_softmax

from hdr_dist.data import datasets, fields, samples
from hdr_dist.imaging import images, preprocess
from hdr_dist.inference import ctc, evaluate, readers
from hdr_dist.inference.device import for_inference
from hdr_dist.jobs import cli
from hdr_dist.models import checkpoints, export, recipes
from hdr_dist.models.config import TrainConfig
from tests.helpers import ROOT

ort = pytest.importorskip("onnxruntime")
TOLERANCE = 1e-4
TEMPERATURE = 1.3
DIGITS, FIELDS = 1000, 200


@pytest.fixture(scope="module")
def data():
    return datasets.load("mnist", limit_train=2000, limit_test=DIGITS)


@pytest.fixture(scope="module")
def results(data, tmp_path_factory) -> Path:
    """A compare output folder as export meets it: a cnn, an lstm and a crnn with random weights and
    batch-norm statistics taken from real inputs (so every layer matters), and a classical model
    without a checkpoint."""
    folder = tmp_path_factory.mktemp("results")
    rows = []
    for name in ("cnn", "lstm", "crnn"):
        cfg = TrainConfig.from_recipe(name, data)
        torch.manual_seed(0)
        model = recipes.from_config(cfg).train()
        with torch.no_grad():
            model(*inputs(cfg, data, 64)) if cfg.kind == "field" else model(inputs(cfg, data, 64)[0])
        path = folder / name / "model.pt"
        path.parent.mkdir()
        torch.save(
            {"model": model.state_dict(), "config": cfg.as_dict(), "history": [], "temperature": TEMPERATURE},
            path,
        )
        rows.append(
            {
                "model": name,
                "checkpoint": str(path),
                "accuracy": 0.5,
                "field_accuracy": 0.5 if cfg.kind == "field" else None,
            }
        )
    rows.append({"model": "cnn-segmented", "checkpoint": None, "accuracy": 0.4, "field_accuracy": 0.4})
    pq.write_table(pa.Table.from_pylist(rows), folder / "metrics.parquet")
    return folder


def inputs(cfg: TrainConfig, data, n: int) -> tuple[torch.Tensor, ...]:
    """A batch as score feeds the model: standardised digits, or padded strips with their widths."""
    if cfg.kind == "digit":
        return (((torch.from_numpy(data.test.x[:n]).float() / 255 - cfg.mean) / cfg.std).unsqueeze(1),)
    xb, widths = fields.pad(field_strips(data, n))
    return (xb - cfg.mean) / cfg.std, widths


def field_strips(data, n: int = FIELDS) -> list[np.ndarray]:
    """``n`` test fields of 1 to 12 digits as score holds them: uint8 strips, white ink on black."""
    counts = fields.lengths(n, np.random.default_rng(0))
    strips, _ = fields.fixed_set(data.test.x, data.test.y, seed=1, counts=counts)
    return [(s * 255).round().astype(np.uint8) for s in strips]


def export_job(*argv) -> int:
    return cli.main(["export", *[str(a) for a in argv]])


def runner(path: Path, fmt: str):
    """The exported file as a serving stack runs it: (inputs by name) -> logits, and its metadata."""
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
        return (lambda feeds: session.run(["logits"], feeds)[0]), meta
    files = dict.fromkeys(export.KEYS, "")  # TorchScript gives back the extra files it is asked for
    module = torch.jit.load(str(path), _extra_files=files)
    meta = {k: json.loads(v) for k, v in files.items() if v}

    def run(feeds):  # the graph executor's optimising passes take seconds a shape here, and change nothing
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            return module(*[torch.from_numpy(v) for v in feeds.values()]).numpy()

    return run, meta


def standardised(pixels: np.ndarray, meta: dict) -> np.ndarray:
    """What the metadata says to do to uint8 pixels: the only preprocessing a serving stack knows."""
    return ((pixels.astype(np.float32) * meta["scale"] - meta["mean"]) / meta["std"]).astype(np.float32)


@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_digit_model_matches_torch_on_1000_test_images(results, data, tmp_path, name, fmt):
    out = tmp_path / f"{name}.{fmt}"
    assert export_job(results, "--model-name", name, "--format", fmt, "--output", out) == 0
    run, meta = runner(out, fmt)
    state, cfg, _ = checkpoints.for_scoring(str(results), name)
    model = for_inference(checkpoints.model_from_state(state)[0])
    with torch.inference_mode():  # score's torch path: uint8 in, standardised, channels-last
        expected = evaluate.logits(
            model, torch.from_numpy(data.test.x), cfg.mean, cfg.std, torch.device("cpu")
        ).numpy()
    got = np.concatenate(
        [
            run({"x": standardised(data.test.x[i : i + n], meta)[:, None]})
            for i, n in ((0, 1), (1, 511), (512, DIGITS - 512))
        ]
    )  # batch sizes: dynamic
    assert got.shape == expected.shape == (DIGITS, 10)
    assert np.abs(got - expected).max() <= TOLERANCE
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    assert meta["model"] == name
    assert meta["kind"] == "digit"
    assert meta["temperature"] == TEMPERATURE


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_crnn_matches_torch_on_200_test_fields_of_any_width(results, data, tmp_path, fmt):
    """Traced at width 64, run on strips of 17 to 200-odd columns: alone, and batched unsorted with
    padding, so each batch's widths differ. The torch model gets the same batches: at a strip's right
    edge its convolutions see what pads it (``architectures.CRNN``), a model property, not export's."""
    out = tmp_path / f"crnn.{fmt}"
    assert export_job(results, "--model-name", "crnn", "--format", fmt, "--output", out) == 0
    run, meta = runner(out, fmt)
    model = checkpoints.model_from_state(checkpoints.for_scoring(str(results), "crnn")[0])[0].eval()
    strips = field_strips(data)
    assert len({s.shape[1] for s in strips}) > 50
    got, expected = [], []
    for i, n in ((0, 1), (1, 2), (3, 64), (67, FIELDS - 67)):
        batch = strips[i : i + n]
        widths = np.array([s.shape[1] for s in batch], np.int64)
        x = np.zeros((n, 1, preprocess.STRIP_HEIGHT, widths.max()), np.float32)
        for row, s in zip(x, batch):
            row[0, :, : s.shape[1]] = standardised(s, meta)
        z = run({"x": x, "widths": widths})
        assert z.shape == (n, widths.max() // meta["step"], len(meta["labels"]) + 1)
        with torch.inference_mode():
            reference = model(torch.from_numpy(x), torch.from_numpy(widths)).numpy()
        got += [row[: w // meta["step"]] for row, w in zip(z, widths)]
        expected += [row[: w // meta["step"]] for row, w in zip(reference, widths)]
    assert len(got) == FIELDS
    assert max(np.abs(g - e).max() for g, e in zip(got, expected)) <= TOLERANCE
    reads = [
        [
            ctc.best_path(log_softmax(z / meta["temperature"], axis=1), len(z), meta["blank"])[0]
            for z in logits
        ]
        for logits in (got, expected)
    ]
    assert reads[0] == reads[1]
    assert sum(map(len, reads[0])) > FIELDS  # strings, not all blank


def test_metadata_is_the_same_in_both_formats_and_complete(results, tmp_path):
    state, cfg, _ = checkpoints.for_scoring(str(results), "crnn")
    found = {}
    for fmt in export.FORMATS:
        assert export_job(results, "--model-name", "crnn", "--format", fmt, "--output", tmp_path / fmt) == 0
        found[fmt] = export.read_metadata(tmp_path / fmt)
    assert found["onnx"] == found["torchscript"]
    meta = found["onnx"]
    assert meta["labels"] == list("0123456789")
    assert meta["blank"] == 10
    assert meta["step"] == 4
    assert (meta["temperature"], meta["scale"], meta["mean"], meta["std"]) == (
        TEMPERATURE,
        1 / 255,
        0.0,
        cfg.std,
    )
    assert meta["recipe"] == cfg.as_dict()
    assert meta["recipe"]["width"] == 1.5
    assert meta["input"]["x"]["shape"] == [None, 1, 32, None]
    assert meta["input"]["widths"]["dtype"] == "int64"
    digit = export.metadata(checkpoints.for_scoring(str(results), "cnn")[1], None)
    assert json.loads(digit["temperature"]) == 1.0
    assert "blank" not in digit  # no temperature fitted: 1


def test_the_docs_example_reads_a_scan_as_score_does(results, data, tmp_path, monkeypatch, capsys):
    """docs/export.md's onnxruntime example, run as written on a rendered scan, gives score's answer."""
    doc = (ROOT / "docs" / "export.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    assert len(code.strip().splitlines()) <= 15
    assert export_job(results, "--model-name", "cnn", "--output", tmp_path / "cnn.onnx") == 0
    (tmp_path / "digit.png").write_bytes(samples.render(data.test.x[7], 64, "PNG"))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    exec(compile(code, "docs/export.md", "exec"), {})
    label, confidence = capsys.readouterr().out.split()
    state, cfg, _ = checkpoints.for_scoring(str(results), "cnn")
    gray = next(images.decode((tmp_path / "digit.png").read_bytes()))[4]
    x = torch.from_numpy(preprocess.to_mnist(gray)[None])
    with torch.inference_mode():
        z = evaluate.logits(
            for_inference(checkpoints.model_from_state(state)[0]), x, cfg.mean, cfg.std, torch.device("cpu")
        )
    p = torch.softmax(z / TEMPERATURE, 1)[0]
    assert label == cfg.labels[int(p.argmax())]
    assert float(confidence) == pytest.approx(float(p.max()), abs=1e-3)


BAD = [
    (["{tmp}/nope", "--output", "{tmp}/m.onnx"], "RESULTS {tmp}/nope: no such file or folder"),
    (
        ["{results}", "--model-name", "rnn", "--output", "{tmp}/m.onnx"],
        "--model-name rnn: {results}/metrics.parquet has no such model; it has cnn, lstm, crnn to export",
    ),
    (
        ["{results}", "--model-name", "cnn-segmented", "--output", "{tmp}/m.onnx"],
        "--model-name cnn-segmented: a classical model, which keeps no checkpoint; "
        "{results}/metrics.parquet has cnn, lstm, crnn to export",
    ),
    (
        ["{results}", "--format", "pdf", "--output", "{tmp}/m.onnx"],
        "argument --format: invalid choice: 'pdf' (choose from onnx, torchscript) (see --help)",
    ),
    (
        ["{results}", "--output", "{tmp}/no/m.onnx"],
        "--output {tmp}/no/m.onnx: no folder {tmp}/no to write it in",
    ),
    (
        ["{results}", "--output", "{tmp}/junk.pt/m.onnx"],
        "--output {tmp}/junk.pt/m.onnx: no folder {tmp}/junk.pt to write it in",
    ),
    (["{results}", "--output", "{tmp}"], "--output {tmp}: a folder; name the file to write"),
    (
        ["{tmp}/junk.pt", "--output", "{tmp}/m.onnx"],
        "RESULTS {tmp}/junk.pt: {tmp}/junk.pt is not a readable hdr-dist "
        "checkpoint (not a torch checkpoint (not a zip archive))",
    ),
]


@pytest.mark.parametrize("argv,message", BAD)
def test_bad_input_is_one_line(results, tmp_path, capsys, argv, message):
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    fill = {"tmp": tmp_path, "results": results}
    try:
        status = export_job(*[a.format(**fill) for a in argv])
    except SystemExit as e:  # argparse's own errors exit from parse_args
        status = e.code
    assert status == 2
    err = re.sub(r"'(onnx|torchscript)'", r"\1", capsys.readouterr().err)  # Python < 3.12 quotes the choices
    assert err == f"hdr export: error: {message.format(**fill)}\n"
    assert not (tmp_path / "m.onnx").exists()


def test_without_onnx_installed_onnx_export_says_what_to_install(results, tmp_path):
    """A Python where ``import onnx`` fails (``sys.modules[name] = None`` is how Python blocks an import)."""
    script = (
        "import sys; sys.modules['onnx'] = None; from hdr_dist.jobs.cli import main; "
        f"raise SystemExit(main(['export', {str(results)!r}, '--output', {str(tmp_path / 'm.onnx')!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert (done.returncode, done.stderr) == (
        2,
        "hdr export: error: --format onnx needs the onnx package: pip install 'hdr-dist[onnx]'\n",
    )
    assert not (tmp_path / "m.onnx").exists()
    assert not (tmp_path / "m.onnx.partial").exists()


def test_the_job_script_exports_torchscript_and_says_where(results, tmp_path):
    out = tmp_path / "cnn.pt"
    done = subprocess.run(
        [
            sys.executable,
            "jobs/export.py",
            str(results),
            "--model-name",
            "cnn",
            "--format",
            "torchscript",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "export: " in done.stdout
    assert "torchscript, model cnn" in done.stdout
    assert export.read_metadata(out)["model"] == "cnn"
    assert torch.jit.load(io.BytesIO(out.read_bytes()))


@pytest.mark.parametrize("name", ["cnn", "crnn"])
def test_the_readers_run_the_onnx_model_as_score_actors_do(results, data, name):
    """``score --runtime onnx``'s actors hand the readers an ``OnnxModel`` where the torch model was; the
    answers are the same, calibrated at the same temperature."""
    from hdr_dist.inference.onnx_runtime import OnnxModel, for_actors

    state, cfg, _ = checkpoints.for_scoring(str(results), name)
    torch_model = for_inference(checkpoints.model_from_state(state)[0])
    onnx_model = OnnxModel(for_actors(state, use_gpu=False), threads=1)
    reader = readers.of(cfg)
    if cfg.kind == "digit":
        column = pa.array([x.tobytes() for x in data.test.x[:300]], pa.binary(28 * 28))
    else:
        column = pa.array([s.tobytes() for s in field_strips(data)], pa.binary())
    ok = np.ones(len(column), bool)
    with torch.inference_mode():
        answers = [
            reader.answer(m, column, ok, cfg, TEMPERATURE, 3, torch.device("cpu"))
            for m in (torch_model, onnx_model)
        ]
    (p_torch, a_torch), (p_onnx, a_onnx) = answers
    assert np.abs(p_torch - p_onnx).max() <= TOLERANCE
    assert a_torch["pred_label"].to_pylist() == a_onnx["pred_label"].to_pylist()
    assert np.ptp(p_torch) > 1e-3  # the confidences say something


def test_score_runtime_onnx_writes_the_torch_rows(ray_cluster, mnist, digits_model, tmp_path):
    from hdr_dist.jobs import score

    samples.write(
        tmp_path / "in",
        samples.entries(mnist.test.x[:60], mnist.test.y[:60], mnist.labels, (28, 64), ("PNG",)),
    )
    rows = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / runtime
        assert (
            score.main(
                [
                    str(tmp_path / "in"),
                    "--model",
                    str(digits_model),
                    "--output",
                    str(out),
                    "--labels-from",
                    "dirname",
                    "--batch-size",
                    "16",
                    "--runtime",
                    runtime,
                ]
            )
            == 0
        )
        table = pq.read_table(out / "predictions").sort_by([("source", "ascending")])
        rows[runtime] = table.select(
            ["source", "pred", "pred_label", "topk_labels", "confidence"]
        ).to_pylist()
    assert len(rows["onnx"]) == 120
    for a, b in zip(rows["torch"], rows["onnx"]):
        assert {k: v for k, v in a.items() if k != "confidence"} == {
            k: v for k, v in b.items() if k != "confidence"
        }
        assert b["confidence"] == pytest.approx(a["confidence"], abs=TOLERANCE)
    # Other kernels round differently: were every confidence bit-identical, torch would have run twice.
    assert any(a["confidence"] != b["confidence"] for a, b in zip(rows["torch"], rows["onnx"]))
