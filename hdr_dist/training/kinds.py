"""The reader kinds as training sees them: each is its reader (``inference.readers``) with what training
adds, namely what a rank trains on per epoch, its batches and objective, what it is validated on, and
its test after training. Training and compare ask ``of(cfg)`` and never branch on the kind.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from hdr_dist.common import tables
from hdr_dist.data import fields
from hdr_dist.data.augment import AugmentRanges, augment
from hdr_dist.data.cells import cell_artefacts
from hdr_dist.inference import calibration, ctc
from hdr_dist.inference.device import autocast, normalise, pad
from hdr_dist.inference.readers import CPU, DigitReader, FieldReader
from hdr_dist.models.config import TrainConfig
from hdr_dist.training import field_eval
from hdr_dist.training.ranks import all_sum

LENGTH_WINDOW = 32  # batches whose fields are sorted by length together (field models)


class DigitTraining(DigitReader):
    unit = "img/s"
    validate_batch = 1024  # hold-out images per forward pass
    data_on_device = True  # MNIST is 47 MB as uint8: the whole set goes to the device once

    def per_rank(self, n: int, world: int) -> int:
        """What one rank trains on per epoch: its share of the digits."""
        return n // world

    def batches(self, x, y, idx, cfg, per_rank_batch: int, device, generator):
        """(the model's inputs, the targets, the count): this rank's images, augmented on [0, 1] (moved,
        then a share made form cells, as ``hdr forms`` would cut them from a scan), then standardised."""
        ranges = AugmentRanges(cfg.rotation, cfg.shift, cfg.zoom)
        for b in idx.split(per_rank_batch):
            xb = (x[b].to(device, non_blocking=True).float() / 255.0).unsqueeze(1)
            if cfg.augment:
                xb = augment(xb, ranges, generator)
            if cfg.cell_artefacts:
                xb = cell_artefacts(xb, cfg.cell_artefacts, generator)
            yield ((xb - cfg.mean) / cfg.std,), y[b].to(device, non_blocking=True), len(b)

    def objective(self, model, out: torch.Tensor, target, cfg) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy, and how many were right: a count kept on the device, so a GPU is not made to
        wait for it every step."""
        return F.cross_entropy(out, target, label_smoothing=cfg.label_smoothing), (
            out.argmax(1) == target
        ).sum()

    def validation(self, cfg, vx: torch.Tensor, vy: torch.Tensor) -> tuple:
        return vx, vy

    @torch.no_grad()
    def validate(self, model, val: tuple, cfg, rank: int = 0, world: int = 1, device=CPU) -> dict:
        """Loss and accuracy over the hold-out, each rank taking every world-th image."""
        model.eval()
        loss_sum = correct = 0.0
        xs, ys = val[0][rank::world], val[1][rank::world]
        size = self.validate_batch
        for start in range(0, len(ys), size):
            xb = normalise(xs[start : start + size].to(device), cfg.mean, cfg.std)
            yb = ys[start : start + size].to(device)
            with autocast(device):
                logits = model(xb)
            loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
        loss_sum, correct, seen = all_sum([loss_sum, correct, float(len(ys))], device, world)
        return {"val_loss": loss_sum / seen, "val_acc": correct / seen}

    def test_sets(self, ds, seed: int, field_tests=None) -> dict[str, tuple]:
        """What ``test`` reads after training: the hold-out, to fit the temperature on, and the test split."""
        return {"val": (ds.val.x, ds.val.y), "test": (ds.test.x, ds.test.y)}

    def tested(self, state: dict, ds, field_tests=None) -> dict:
        """After training: the temperature fitted on the hold-out, the test split at it, the calibration
        columns and both risk-coverage curves. ``scores`` hold what compare's tables are made of,
        ``row`` the columns calibration adds to the metrics row; ``seconds``: what inference and what
        calibration took."""
        t0 = time.perf_counter()
        tested = self.test(state, self.test_sets(ds, 0))
        t1 = time.perf_counter()
        val, scores, temperature = tested.sets["val"], tested.scores, tested.temperature
        row, scores["curves"] = calibration.report(
            calibration.answers(val["logits"], ds.val.y, temperature),
            calibration.answers(scores["logits"], ds.test.y, temperature),
            calibration.calibrated(scores["logits"], 1.0).max(1),
            temperature,
        )
        fit = tested.calibration_seconds
        seconds = {"evaluation": t1 - t0 - fit, "calibration": fit + time.perf_counter() - t1}
        return {
            "row": row,
            "scores": scores,
            "temperature": temperature,
            "curves": scores["curves"],
            "seconds": seconds,
        }


class FieldTraining(FieldReader):
    unit = "fields/s"
    validate_batch = 256  # hold-out fields per forward pass
    data_on_device = False  # strips are made on the host, from the digits, each epoch

    def per_rank(self, n: int, world: int) -> int:
        """What one rank trains on per epoch: the fields made of its share of the digits."""
        return fields.per_epoch(n // world)

    def batches(self, x, y, idx, cfg, per_rank_batch: int, device, generator):
        """Fields made here from this rank's digits: each digit of the shard goes into one field per
        epoch (fields of 1 to MAX_DIGITS digits), so an epoch is one pass over the digits."""
        rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
        picks = fields.picks_of(idx.numpy(), fields.lengths(fields.per_epoch(len(idx)), rng))
        for batch in similar_lengths(picks, per_rank_batch, rng):
            strips, labels = fields.strips(x, y, batch, fields.FieldStyle(), rng, generator)
            xb, widths = pad(strips)
            yield ((xb.to(device) - cfg.mean) / cfg.std, widths), (labels, widths), len(labels)

    def objective(self, model, out: torch.Tensor, target, cfg) -> tuple[torch.Tensor, int]:
        """CTC, and how many fields were right (a field is right when its best path reads exactly its
        digits). The model says how many columns an output step covers."""
        labels, widths = target
        log_probs = out.float().log_softmax(-1)
        steps = torch.div(widths, getattr(model, "module", model).step, rounding_mode="floor")
        loss = F.ctc_loss(
            log_probs.transpose(0, 1),
            torch.from_numpy(np.concatenate(labels)).long(),
            steps,
            torch.tensor([len(t) for t in labels]),
            blank=cfg.num_classes,
            zero_infinity=True,
        )
        reads = ctc.greedy(log_probs.detach().cpu().numpy(), steps.tolist(), cfg.num_classes)
        return loss, sum(r == t.tolist() for r, t in zip(reads, labels))

    def validation(self, cfg, vx: torch.Tensor, vy: torch.Tensor) -> tuple:
        """Fixed fields made of the hold-out digits, the same every epoch and run."""
        return fields.fixed_set(vx.numpy(), vy.numpy(), cfg.seed)

    @torch.no_grad()
    def validate(self, model, val: tuple, cfg, rank: int = 0, world: int = 1, device=CPU) -> dict:
        """CTC loss and field accuracy (exact match), each rank taking every world-th field; fields go in
        batches of similar width, so little of each batch is padding."""
        model.eval()
        strips, labels = val
        loss_sum = correct = 0.0
        mine = sorted(range(rank, len(labels), world), key=lambda i: strips[i].shape[1])
        for start in range(0, len(mine), self.validate_batch):
            take = mine[start : start + self.validate_batch]
            xb, widths = pad([strips[i] for i in take])
            with autocast(device):
                out = model((xb.to(device) - cfg.mean) / cfg.std, widths)
            loss, right = self.objective(model, out, ([labels[i] for i in take], widths), cfg)
            loss_sum += loss.item() * len(take)
            correct += right
        loss_sum, correct, seen = all_sum([loss_sum, correct, float(len(mine))], device, world)
        return {"val_loss": loss_sum / seen, "val_acc": correct / seen}

    def test_sets(self, ds, seed: int, field_tests=None) -> dict[str, tuple]:
        """What ``test`` reads after training: fixed fields of the hold-out digits, to fit the temperature
        on, and the test sets (``field_eval.test_sets``, made once by compare for every field model)."""
        val = fields.fixed_set(ds.val.x, ds.val.y, seed)
        return {"val": val, **(field_tests or field_eval.test_sets(ds, seed))}

    def tested(self, state: dict, ds, field_tests=None) -> dict:
        """After training: ``test`` on the validation fields and the test sets (``field_eval.test_sets``)."""
        start = time.perf_counter()
        cfg = TrainConfig.from_dict(state["config"])
        tested = self.test(state, self.test_sets(ds, cfg.seed, field_tests))
        lengths = tables.length_rows(ds.name, cfg.model, tested.sets["fields"]["by_length"])
        fit = tested.calibration_seconds
        return {
            "row": tested.row,
            "sets": tested.sets,
            "curves": tested.curves,
            "temperature": tested.temperature,
            "scores": tested.row | {"curves": tested.curves, "lengths": lengths},
            "seconds": {"evaluation": time.perf_counter() - start - fit, "calibration": fit},
        }


def similar_lengths(
    picks: list[np.ndarray], size: int, rng: np.random.Generator, window: int = LENGTH_WINDOW
) -> list[list[np.ndarray]]:
    """Batches of ``size`` fields of similar length, in random order: fields are sorted by length within
    windows of ``window`` batches, so a batch still mixes the epoch's digits but pads little, and the
    crnn trains faster on them than on random batches (docs/decisions.md)."""
    batches = []
    for start in range(0, len(picks), size * window):
        part = sorted(picks[start : start + size * window], key=len)
        batches += [part[i : i + size] for i in range(0, len(part), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


KINDS = {k.kind: k for k in (DigitTraining(), FieldTraining())}


def of(cfg) -> DigitTraining | FieldTraining:
    """The training side of a model's reader, by its ``TrainConfig``."""
    return KINDS[cfg.kind]
