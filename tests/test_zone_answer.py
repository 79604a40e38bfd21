"""forms' decision rules for one zone (``forms.pipeline.zone_answer``), case by case, without Ray: what a
comb, a digit zone and a free field answer from their cells' reads, and when each goes to review."""

from __future__ import annotations

import pytest

from hdr_dist.forms.pipeline import zone_answer
from hdr_dist.forms.template import Zone

COMB = Zone("postcode", "comb", (0, 0, 300, 60), cells=(60, 60, 60, 60, 60))
DIGIT = Zone("copies", "digit", (0, 0, 60, 60), required=False)
FIELD = Zone("amount", "field", (0, 0, 400, 80), length=(1, 7))
OPTIONAL_COMB = Zone("phone", "comb", (0, 0, 120, 60), cells=(60, 60), required=False)


def cell(empty: bool = False, error: str | None = None) -> dict:
    return {"zone": 0, "cell": 0, "image": b"", "empty": empty, "error": error}


def comb_reads(confidences: list[float | None]) -> tuple[list[dict], dict]:
    """A comb's cells (None: an empty cell) and the digit each filled cell read, as ``read_digits`` gives."""
    reads = [cell(empty=c is None) for c in confidences]
    digits = {id(r): (str(i), c) for i, (r, c) in enumerate(zip(reads, confidences)) if c is not None}
    return reads, digits


def test_a_comb_read_whole_is_accepted_when_every_cell_clears_the_threshold():
    reads, digits = comb_reads([0.99, 0.98, 0.999, 0.97, 0.995])
    answer = zone_answer(COMB, reads, digits, {}, threshold=0.95)
    assert answer["text"] == "01234"
    assert answer["decision"] == "accept"
    assert answer["error"] is None
    assert answer["char_confidences"] == [0.99, 0.98, 0.999, 0.97, 0.995]
    assert answer["confidence"] == pytest.approx(0.99 * 0.98 * 0.999 * 0.97 * 0.995)


def test_one_unsure_cell_sends_the_comb_to_review_though_its_product_is_high():
    reads, digits = comb_reads([0.999, 0.999, 0.94, 0.999, 0.999])
    answer = zone_answer(COMB, reads, digits, {}, threshold=0.95)
    assert answer["decision"] == "review"
    assert answer["text"] == "01234"


def test_without_a_threshold_every_read_comb_is_accepted():
    reads, digits = comb_reads([0.3, 0.4, 0.5, 0.6, 0.7])
    assert zone_answer(COMB, reads, digits, {}, threshold=None)["decision"] == "accept"


def test_a_comb_with_some_cells_empty_goes_to_review_with_its_count():
    reads, digits = comb_reads([0.99, None, 0.99, None, 0.99])
    answer = zone_answer(COMB, reads, digits, {}, threshold=0.5)
    assert answer["error"] == "2 of 5 cells empty"
    assert answer["decision"] == "review"
    assert answer["text"] == "024"


def test_an_empty_required_zone_is_an_error_and_an_empty_optional_one_reads_as_nothing():
    reads, _ = comb_reads([None] * 5)
    required = zone_answer(COMB, reads, {}, {}, threshold=0.5)
    assert required["text"] == ""
    assert required["error"] == "empty"
    assert required["decision"] == "review"
    optional = zone_answer(OPTIONAL_COMB, [cell(empty=True), cell(empty=True)], {}, {}, threshold=0.5)
    assert optional["text"] == ""
    assert optional["error"] is None
    assert optional["decision"] == "accept"
    assert optional["confidence"] is None


def test_a_cell_that_failed_makes_the_zone_that_error():
    reads, digits = comb_reads([0.99, 0.99, 0.99, 0.99, 0.99])
    reads[3]["error"] = "field too wide: its ink is 386x1 pixels"
    answer = zone_answer(COMB, reads, digits, {}, threshold=0.5)
    assert answer["error"] == "field too wide: its ink is 386x1 pixels"
    assert answer["decision"] == "review"
    assert answer["text"] is None


def test_a_field_is_decided_by_its_string_confidence_not_its_digits():
    read = cell()
    fields = {id(read): ("1250", [0.6, 0.7, 0.8, 0.9], 0.97)}
    answer = zone_answer(FIELD, [read], {}, fields, threshold=0.95)
    assert answer["text"] == "1250"
    assert answer["confidence"] == 0.97
    assert answer["decision"] == "accept"
    assert zone_answer(FIELD, [read], {}, fields, threshold=0.98)["decision"] == "review"


def test_a_field_whose_ink_reads_as_no_digits_goes_to_review():
    read = cell()
    answer = zone_answer(FIELD, [read], {}, {id(read): ("", [], 0.0)}, threshold=None)
    assert answer["text"] == ""
    assert answer["decision"] == "review"


def test_a_digit_zone_reads_one_digit():
    read = cell()
    answer = zone_answer(DIGIT, [read], {id(read): ("7", 0.9)}, {}, threshold=0.8)
    assert answer["text"] == "7"
    assert answer["char_confidences"] == [0.9]
    assert answer["decision"] == "accept"
    assert answer["kind"] == "digit"
    assert answer["field"] == "copies"
