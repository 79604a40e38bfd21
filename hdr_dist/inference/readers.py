"""What a model reads, and everything that differs with it: the one place where a digit model and a
field model part ways.

A *reader* is a model's kind (``Recipe.kind``): ``digit`` reads one 28x28 character, ``field`` reads a
strip of digits of any width, by CTC. Each kind carries what the rest of the project would otherwise
branch on: how a page is prepared for the model (the decode stage's schema and function), how the
model's output becomes answers with a calibrated confidence (the predictor's core, and a form's cells
and fields read by ``read``), which labels are valid, the metrics over labelled answers, and the
temperature fit and the test after training (``test``, the same call for both kinds). The bulk jobs,
review and compare ask ``of(cfg)`` for the kind and call it; none of them knows which kind it holds.
Training adds the kind's batches and objective on top (``training.kinds``), so that scoring never
imports training; how the review page shows a kind is the review layer's (``review.page.SHOWN``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from scipy.special import log_softmax

from hdr_dist import models
from hdr_dist.common import tables
from hdr_dist.imaging import images
from hdr_dist.inference import calibration, ctc, evaluate
from hdr_dist.inference.device import SHAPE_STEP, STRIP_STEP, autocast, pad, padded
from hdr_dist.models import checkpoints

CPU = torch.device("cpu")
FIELD_BATCH = 128  # strips per forward pass; each batch holds strips of similar width, so little is padding
READ_RATE_ERROR = 0.01  # the error at which a field reader's read rate is quoted (field_row)
FIELD_ASPECT = 2.5  # an image this many times as wide as high is a field of several digits, not one


@dataclass(frozen=True)
class ReaderTest:
    """A reader's test, the same for both kinds: ``row`` the metrics columns it gives; ``sets`` what each
    test set measured; the ``temperature`` its answers were calibrated at (and the seconds its fit
    took); the risk-coverage curves where the reader draws them; and ``scores``, what compare's and
    tune's tables are made of."""

    row: dict
    sets: dict
    temperature: float
    calibration_seconds: float = 0.0
    curves: dict | None = None
    scores: dict = field(default_factory=dict)


class DigitReader:
    """One character per image: softmax over the classes, top-k answers."""

    kind = "digit"
    preparation = images.DIGIT  # the decode stage: a page -> the 28x28 MNIST-space image

    def describes(self, model: str) -> str:
        return f"classes of model {model}"

    def is_label(self, text: str, labels: list[str]) -> bool:
        return text in labels

    def answer(
        self, model, column: pa.Array, ok: np.ndarray, cfg, temperature: float, top_k: int, device
    ) -> tuple[np.ndarray, dict]:
        """A batch's answers to its rows that decoded (``ok``): each row's calibrated confidence, and the
        prediction columns, built column-wise (a failed row borrows row 0's values, then is masked)."""
        n, k, labels = len(column), min(top_k, cfg.num_classes), pa.array(cfg.labels, pa.string())
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        pixels = np.frombuffer(column.buffers()[1], np.uint8)[
            column.offset * images.PIXELS : (column.offset + n) * images.PIXELS
        ]
        probs = self.probabilities(model, pixels.reshape(n, 28, 28)[ok], cfg, temperature, device)
        top_p, top_i = (t.numpy() for t in probs.topk(k, dim=1))
        at = np.where(ok, np.cumsum(ok) - 1, 0)
        if not ok.any():
            top_p, top_i = np.zeros((1, k), np.float32), np.zeros((1, k), np.int64)
        pred, failed = top_i[at, 0].astype(np.int32), pa.array(~ok)
        return top_p[at, 0], {
            "pred": pa.array(pred, mask=~ok),
            "pred_label": pc.if_else(failed, pa.scalar(None, pa.string()), labels.take(pa.array(pred))),
            "topk_labels": pa.FixedSizeListArray.from_arrays(
                labels.take(pa.array(top_i[at].ravel())), k, mask=failed
            ),
            "topk_probs": pa.FixedSizeListArray.from_arrays(pa.array(top_p[at].ravel()), k, mask=failed),
        }

    def probabilities(self, model, x_u8: np.ndarray, cfg, temperature: float, device) -> torch.Tensor:
        """Each 28x28 image's (uint8, MNIST space) class probabilities, calibrated at ``temperature``."""
        if not len(x_u8):
            return torch.zeros((0, cfg.num_classes))
        x = torch.from_numpy(np.ascontiguousarray(padded(x_u8)))
        z = evaluate.logits(model, x, cfg.mean, cfg.std, device)[: len(x_u8)]
        return torch.softmax(z / temperature, dim=1).cpu()

    def read(self, model, x_u8: np.ndarray, cfg, temperature: float, device) -> list[tuple[str, float]]:
        """Each image's most likely class and its calibrated confidence: a form's comb cells and digit
        zones, each read alone."""
        confidence, pred = self.probabilities(model, x_u8, cfg, temperature, device).max(1)
        return [(cfg.labels[int(k)], float(p)) for k, p in zip(pred, confidence)]

    def scores(self, labelled: pa.Table, cfg, dataset: str) -> tuple[dict, dict, np.ndarray]:
        """compare's metrics over labelled answers (a ``PREDICTION_SCHEMA`` table): the metrics row, the
        tables beside it (per class, confusion), and which answers were wrong."""
        index = {label: i for i, label in enumerate(cfg.labels)}
        y_true = np.array([index[t] for t in labelled["true_label"].to_pylist()], np.int64)
        y_pred = labelled["pred"].to_numpy()
        row = evaluate.metrics(y_true, y_pred, cfg.num_classes)
        return row, tables.model_tables(dataset, cfg.model, list(cfg.labels), row), y_true != y_pred

    def headline(self, row: dict) -> str:
        return f"accuracy {100 * row['accuracy']:.2f} %"

    def warnings(self, scored: pa.Table, cfg) -> list[str]:
        """A digit model reads one digit per image, so images shaped like fields of several digits get
        one (wrong) answer each; say so when most of the scored images are that shape."""
        if scored.num_rows == 0:
            return []
        wide = int(
            np.sum(
                scored["width"].to_numpy(zero_copy_only=False)
                >= FIELD_ASPECT * scored["height"].to_numpy(zero_copy_only=False)
            )
        )
        if 2 * wide <= scored.num_rows:
            return []
        return [
            f"{wide:,} of the {scored.num_rows:,} scored images are at least {FIELD_ASPECT:g} times as "
            f"wide as high: they look like fields of several digits, which digit model {cfg.model} reads "
            "as one digit each; score them with a field model (compare --models crnn)"
        ]

    def test(self, state, sets: dict[str, tuple], device=CPU, temperature: float | None = None) -> ReaderTest:
        """A checkpoint's weights scored once on each of ``sets`` (name -> (uint8 images, classes)). Without
        a ``temperature``, one is fitted on the set named ``val`` (none: 1). Each set keeps its metrics,
        its ``logits`` (for fitting a temperature), its ``probs`` calibrated at the temperature, and its
        predictions; the set named ``test`` is what compare's and tune's tables are made of."""
        model, cfg = checkpoints.model_from_state(state)
        scored = {}
        for name, (x_u8, y) in sets.items():
            z, pred, ips = evaluate.predict(model, x_u8, cfg.mean, cfg.std, device)
            scored[name] = evaluate.metrics(y, pred, cfg.num_classes) | {
                "infer_images_per_s": ips,
                "params": models.count_params(model),
                "logits": z,
                "pred": pred,
            }
        fitting = time.perf_counter()
        if temperature is None:
            temperature = 1.0
            if "val" in sets:
                nll = calibration.class_nll(scored["val"]["logits"], sets["val"][1])
                temperature = calibration.fit_temperature(nll, len(sets["val"][1]))
        fitting = time.perf_counter() - fitting
        for found in scored.values():
            found["probs"] = calibration.calibrated(found["logits"], temperature).astype(np.float32)
        test = scored.get("test", {})
        row = {k: v for k, v in test.items() if isinstance(v, (int, float))}
        return ReaderTest(row, scored, temperature, fitting, scores=test)


class FieldReader:
    """A strip of digits of any width: per step the digits and CTC's blank (the class after the
    digits), read as the best path's string, whose confidence is the probability CTC gives it."""

    kind = "field"
    preparation = images.FIELD  # the decode stage: a page -> the strip (preprocess.to_strip)

    def describes(self, model: str) -> str:
        return f"strings of the characters field model {model} reads"

    def is_label(self, text: str, labels: list[str]) -> bool:
        return bool(text) and set(text) <= set(labels)

    @torch.no_grad()
    def step_logits(
        self,
        model: torch.nn.Module,
        strips: list[np.ndarray],
        mean: float,
        std: float,
        device=CPU,
    ) -> list[np.ndarray]:
        """Each strip's (steps, classes + blank) logits; strips are white ink on black, on [0, 1]. The
        model says how many columns a step covers (``CRNN.step``)."""
        model.eval()
        out: list[np.ndarray | None] = [None] * len(strips)
        order = sorted(range(len(strips)), key=lambda i: strips[i].shape[1])
        for start in range(0, len(order), FIELD_BATCH):
            take = order[start : start + FIELD_BATCH]
            xb, widths = pad([strips[i] for i in take], SHAPE_STEP, STRIP_STEP)
            with autocast(device):
                z = model((xb.to(device) - mean) / std, widths).float().cpu().numpy()
            for i, row, width in zip(take, z, widths.tolist()):
                out[i] = row[: width // model.step]
        return out

    def text_log_probs(
        self, logits: list[np.ndarray], temperature: float, strings: list[list[int]], blank: int
    ) -> np.ndarray:
        """Each field's log-probability of ``strings`` at ``temperature``. Fitting a temperature scores the
        best paths' strings, decoded once: no temperature moves a step's most likely class."""
        return ctc.string_log_probs([log_softmax(z / temperature, axis=1) for z in logits], strings, blank)

    def best_paths(self, logits: list[np.ndarray], temperature: float, blank: int) -> tuple[list, list]:
        """Each field's log-probabilities at ``temperature``, and its best path: (classes, each digit's
        confidence, the surest of its steps, ...)."""
        scaled = [log_softmax(z / temperature, axis=1) for z in logits]
        return scaled, [ctc.best_path(lp, len(lp), blank) for lp in scaled]

    def read(
        self, logits: list[np.ndarray], temperature: float, labels: list[str], lengths: list | None = None
    ) -> list[tuple[str, list[float], float]]:
        """Each field's digit string, each digit's confidence (the surest of its steps), and the field's
        (the probability of its string), calibrated at ``temperature``.

        ``lengths`` reads a form's zones: per field, the (fewest, most) digits its template allows, or
        None. A field of known length is decoded under it (``ctc.best_path_of_length``), and a zone whose
        ink reads as no digits gets no confidence: it is not an answer."""
        if lengths is None:
            return reads(*self.best_paths(logits, temperature, len(labels)), labels)
        blank = len(labels)
        scaled = [log_softmax(z / temperature, axis=1) for z in logits]
        paths = [constrained_path(lp, blank, length) for lp, length in zip(scaled, lengths)]
        return [(text, chars, p if text else 0.0) for text, chars, p in reads(scaled, paths, labels)]

    def answer(
        self, model, column: pa.Array, ok: np.ndarray, cfg, temperature: float, top_k: int, device
    ) -> tuple[np.ndarray, dict]:
        n, data = len(column), column.to_pylist()
        strips = [images.strip_of(data[i]) for i in np.flatnonzero(ok)]
        answers = iter(
            self.read(
                self.step_logits(model, strips, cfg.mean, cfg.std, device), temperature, list(cfg.labels)
            )
        )
        text, chars, confidence = [None] * n, [None] * n, np.zeros(n, np.float32)
        for i in np.flatnonzero(ok):
            text[i], chars[i], confidence[i] = next(answers)
        return confidence, {
            "pred_label": pa.array(text, pa.string()),
            "text": pa.array(text, pa.string()),
            "char_confidences": pa.array(chars, pa.list_(pa.float32())),
        }

    def scores(self, labelled: pa.Table, cfg, dataset: str) -> tuple[dict, dict, np.ndarray]:
        truth, read = labelled["true_label"].to_pylist(), labelled["text"].to_pylist()
        found = ctc.field_metrics(truth, read)
        row = {
            "accuracy": found["char_accuracy"],
            "field_accuracy": found["field_accuracy"],
            "cer": found["cer"],
        }
        return (
            row,
            {"field_lengths": tables.length_rows(dataset, cfg.model, found["by_length"])},
            np.array([t != r for t, r in zip(truth, read)], bool),
        )

    def headline(self, row: dict) -> str:
        return (
            f"field accuracy {100 * row['field_accuracy']:.2f} %, "
            f"character error rate {100 * row['cer']:.2f} %"
        )

    def warnings(self, scored: pa.Table, cfg) -> list[str]:
        return []

    def test(self, state, sets: dict[str, tuple], device=CPU, temperature: float | None = None) -> ReaderTest:
        """A field model's test: its temperature, fitted on the validation fields (the set named ``val``:
        strips and their digits) unless one is given; then the other sets (strips and their strings)
        read at it, with the calibration columns and the risk-coverage curves of whole fields (the set
        named ``fields``). The best paths do not depend on the temperature, so each field is decoded
        once."""
        val, tests = sets["val"], {name: found for name, found in sets.items() if name != "val"}
        model, cfg = checkpoints.model_from_state(state)
        model.to(device)
        labels, blank = list(cfg.labels), len(cfg.labels)
        val_logits = self.step_logits(model, val[0], cfg.mean, cfg.std, device)
        val_truth = ["".join(labels[d] for d in t) for t in val[1]]
        val_scaled, val_paths = self.best_paths(val_logits, 1.0, blank)
        val_reads = reads(val_scaled, val_paths, labels)
        val_right = np.array([r[0] == t for r, t in zip(val_reads, val_truth)], bool)
        val_strings = [classes for classes, _, _ in val_paths]
        fitting = time.perf_counter()
        if temperature is None:
            temperature = calibration.fit_temperature(
                calibration.right_or_wrong(
                    lambda t: self.text_log_probs(val_logits, t, val_strings, blank), val_right
                ),
                len(val_right),
            )
        fitting = time.perf_counter() - fitting
        sets, raw = {}, None
        for name, (strips, truth) in tests.items():
            start = time.perf_counter()
            logits = self.step_logits(model, strips, cfg.mean, cfg.std, device)
            scaled, paths = self.best_paths(logits, temperature, blank)
            sets[name] = field_scores(truth, reads(scaled, paths, labels))
            sets[name]["fields_per_s"] = len(strips) / max(time.perf_counter() - start, 1e-9)
            if name == "fields":
                raw = np.exp(self.text_log_probs(logits, 1.0, [classes for classes, _, _ in paths], blank))
        val_conf = np.exp(self.text_log_probs(val_logits, temperature, val_strings, blank))
        row, curves = calibration.report(
            (val_conf, val_right), (sets["fields"]["confidence"], sets["fields"]["right"]), raw, temperature
        )
        row = field_row(sets) | {"params": models.count_params(model)} | row
        return ReaderTest(row, sets, temperature, fitting, curves, scores=row)


def constrained_path(log_probs: np.ndarray, blank: int, length: tuple[int, int] | None) -> tuple:
    """A field's best path of the ``length`` (fewest, most) digits, or its best path where no path has
    that many (or no length is known), as ``ctc.best_path`` gives it: (classes, confidences, ...)."""
    found = ctc.best_path_of_length(log_probs, blank, *length) if length else None
    return (*found, None) if found else ctc.best_path(log_probs, len(log_probs), blank)


def reads(scaled: list[np.ndarray], paths: list, labels: list[str]) -> list[tuple[str, list[float], float]]:
    """Best paths (``FieldReader.best_paths``) as (digit string, digit confidences, field confidence)."""
    strings = np.exp(ctc.string_log_probs(scaled, [classes for classes, _, _ in paths], len(labels)))
    return [
        ("".join(labels[c] for c in classes), confidences, float(p))
        for (classes, confidences, _), p in zip(paths, strings)
    ]


def field_scores(truth: list[str], reads: list[tuple[str, list[float], float]]) -> dict:
    """Field accuracy and CER of ``reads`` (string, digit confidences, field confidence), with which
    were right and their confidences, for the risk-coverage curves."""
    texts = [r[0] for r in reads]
    out = ctc.field_metrics(truth, texts)
    return out | {
        "right": np.array([t == r for t, r in zip(truth, texts)], bool),
        "texts": texts,
        "confidence": np.array([r[2] for r in reads]),
    }


def read_rate(
    val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], target: float = READ_RATE_ERROR
) -> tuple[float, float]:
    """The share of ``test`` answers accepted at the threshold that ``val`` gives for ``target`` error, and
    the error among them: each (confidence, right). Form-reading products quote this operating point."""
    _, threshold = calibration.coverage_at(calibration.risk_coverage(*val), target)
    return calibration.accepted(*test, threshold)


def field_row(sets: dict[str, dict]) -> dict:
    """A field reader's metrics columns from its test sets: ``accuracy`` is per character (1 - CER),
    to stand beside the digit models' per-digit accuracy; the field accuracies say what a field costs;
    the read rate is the 5-digit scans' at 1 % error, its threshold from the validation scans."""
    f, s = sets["fields"], sets["scans"]
    row = {
        "accuracy": f["char_accuracy"],
        "field_accuracy": f["field_accuracy"],
        "cer": f["cer"],
        "field_accuracy_5": s["field_accuracy"],
        "cer_5": s["cer"],
        "infer_images_per_s": f["fields_per_s"],
    }
    if "val_scans" in sets:
        v = sets["val_scans"]
        row["read_rate_at_0.01"], row["read_error_at_0.01"] = read_rate(
            (v["confidence"], v["right"]), (s["confidence"], s["right"])
        )
    return row


READERS = {r.kind: r for r in (DigitReader(), FieldReader())}
DIGIT, FIELD = READERS["digit"], READERS["field"]


def of(cfg) -> DigitReader | FieldReader:
    """The reader of a model's ``TrainConfig``."""
    return READERS[cfg.kind]
