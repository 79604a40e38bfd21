"""Hostile values inside the files a user names: a template whose YAML aliases expand to billions of
items, a checkpoint whose config claims a far larger model than its weights, and values too long to
show. Each is one short line from the job, no traceback, and its process stays near what the job
takes to start (about 0.8 GB here: torch and Ray imported), far below what the input would take."""

from __future__ import annotations

import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from hdr_dist.common.errors import SettingError, quoted
from hdr_dist.forms import template as templates
from hdr_dist.models import checkpoints
from tests.helpers import ROOT

GiB = 2**30


# Run the job from a small launcher that reports its child's peak: a child started straight from this
# test process shares this process's pages until it execs (vfork), and its peak then counts ours too
# (1.2 GB measured after other tests had loaded MNIST and a model here).
LAUNCHER = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, s, u = os.wait4(p.pid, 0); "
    "open(sys.argv[1], 'w').write(str(u.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(s))"
)


def run_measured(argv: list[str], tmp_path: Path, timeout: float = 300) -> tuple[int, str, int]:
    """A job run as its own process: its exit status, its stderr, and its peak resident memory in bytes,
    read from that one process's rusage (wait4), so no other process the test session ran counts."""
    err_path, peak_path = tmp_path / "stderr.txt", tmp_path / "peak.txt"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(peak_path), sys.executable, *argv],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    return proc.returncode, err_path.read_text(errors="replace"), int(peak_path.read_text()) * 1024  # KiB


def alias_bomb(depth: int = 9) -> str:
    """A template whose ``size`` is 9 ** depth items (387 million at 9) in a few hundred bytes."""
    lines = ["a: &a [x,x,x,x,x,x,x,x,x]"]
    for before, name in zip(string.ascii_lowercase, string.ascii_lowercase[1:depth]):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{before}"] * 9) + "]")
    last = string.ascii_lowercase[depth - 1]
    return "\n".join([*lines, "name: bomb", f"size: *{last}", "reference: r.png", "fields: []"]) + "\n"


def test_an_alias_bomb_template_is_one_short_line_in_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    assert len(bomb.read_bytes()) < 400
    code, err, peak = run_measured(["jobs/forms.py", "--check-template", str(bomb)], tmp_path)
    print(f"peak memory refusing the alias bomb: {peak / GiB:.2f} GiB")
    assert code == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert len(err) < 300, err
    assert f"--template {bomb}: line 1: YAML anchors and aliases (&a) are not taken" in err
    assert peak < GiB, peak


@pytest.mark.parametrize(
    "text, mark",
    [
        ("zone: &z {name: a, kind: digit, box: [0, 0, 10, 10]}\nfields: [*z]\n", "&z"),
        ("fields:\n  - <<: *z\n    name: b\n", "*z"),
        ("name: !!str &n claim\n", "&n"),
    ],
)
def test_every_yaml_anchor_and_alias_is_refused(tmp_path, text, mark):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(SettingError, match=re.escape(f"YAML anchors and aliases ({mark})")):
        templates.load(path)


def test_what_a_template_names_too_long_to_show_is_quoted_short(tmp_path):
    Image.new("L", (200, 100), 255).save(tmp_path / "r.png")
    head = "name: t\nsize: [200, 100]\nreference: r.png\n"
    huge = "9" * 4000
    zone = "fields:\n  - {name: a, kind: digit, box: [0, 0, 10, 10]}\n"
    cases = {  # what is wrong -> (the template, what the line says)
        "kind": (head + zone.replace("digit", "s" * 100_000), "fields[0] (a).kind: unknown kind 'sss"),
        "box": (
            head + zone.replace("0, 0, 10, 10", ", ".join(["1"] * 50_000)),
            "fields[0] (a).box: want [x, y, width, height] in whole pixels, got [1, 1, 1, 1, ...]",
        ),
        "unknown key": (head + zone.replace("name: a", f"name: a, {'k' * 1000}: 1"), "unknown keys ['kkk"),
        "name": (
            head.replace("name: t", f"name: [{', '.join(['n'] * 50_000)}]") + zone,
            "name: want a non-empty text of at most 100 characters, got ['n', 'n', 'n', 'n', ...]",
        ),
        "zone name": (head + zone.replace("name: a", f"name: {'z' * 100_000}"), "(100,000 characters)"),
        "form name": (head.replace("name: t", f"name: {'t' * 100_000}") + zone, "(100,000 characters)"),
        "reference": (
            head.replace("reference: r.png", f"reference: {'r' * 100_000}.png") + zone,
            "characters): cannot read",
        ),
        "cells": (
            head + zone.replace("kind: digit", f"kind: comb, cells: {huge}"),
            "fields[0] (a).cells: want at most 10 cells, one pixel each, got 9999",
        ),
        "an integer past 4,300 digits": (
            head.replace("200, 100", f"{huge}{huge}, 100") + zone,
            "not a YAML file",
        ),
        "nesting 100,000 deep": ("fields: " + "[" * 100_000 + "]" * 100_000 + "\n", "not a YAML file"),
    }
    for key, (text, says) in cases.items():
        path = tmp_path / "t.yaml"
        path.write_text(text)
        with pytest.raises(SettingError) as e:
            templates.load(path)
        line = str(e.value)
        assert "\n" not in line, key
        assert len(line) < 400 + len(str(path)), (key, line[:1000])
        assert line.startswith(f"--template {path}: "), (key, line[:1000])
        assert says in line, (key, line[:1000])


def test_a_setting_error_quotes_a_bounded_piece_of_a_10_mb_value():
    e = SettingError("template", "x" * 10_000_000, "no such file")
    assert len(str(e)) < 400
    assert str(e).endswith("… (10,000,000 characters): no such file")
    assert str(e).startswith("--template " + "x" * 200)
    assert e.value == "x" * 10_000_000  # kept whole: a job may need it
    assert len(str(SettingError("model", Path("/" + "p" * 10_000_000), "no such file"))) < 400


def test_quoting_a_value_never_shows_it_whole_first():
    nested = ["x"] * 9
    for _ in range(9):  # 9 ** 10 items, shared as YAML aliases share them: billions if shown whole
        nested = [nested] * 9
    assert len(quoted(nested)) <= 81
    assert quoted("abc") == "'abc'"
    assert quoted("abc", plain=True) == "abc"
    assert quoted("y" * 100, 10) == "'yyyyyyyyyy…' (100 characters)"
    assert quoted(b"y" * 100, 10) == "b'yyyyyyyyyy…' (100 bytes)"
    assert quoted([1, 2]) == "[1, 2]"
    assert quoted(10**5000) == "<int too large to show>"


def digit_template(tmp_path: Path, length: str) -> Path:
    Image.new("L", (200, 100), 255).save(tmp_path / "r.png")
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\nsize: [200, 100]\nreference: r.png\nfields:\n"
        f"  - {{name: copies, kind: digit, box: [10, 10, 40, 40], length: {length}}}\n"
        "  - {name: code, kind: comb, box: [60, 10, 120, 40], cells: 3}\n"
    )
    return path


@pytest.mark.parametrize("length", ["1", "[1, 1]"])
def test_a_digit_zone_may_say_its_length_is_1(tmp_path, length):
    template = templates.load(digit_template(tmp_path, length))
    assert template.zones[0].kind == "digit"
    assert template.zones[0].length == (1, 1)


@pytest.mark.parametrize("length", ["2", "[1, 2]", "0", "true", "[true, true]", "[1]", "one"])
def test_a_digit_zone_of_any_other_length_is_one_line(tmp_path, length):
    path = digit_template(tmp_path, length)
    with pytest.raises(SettingError) as e:
        templates.load(path)
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(
        f"--template {path}: fields[0] (copies).length: a digit zone holds one digit: want 1 or [1, 1], got "
    )


def test_a_comb_with_a_length_is_one_line(tmp_path):
    path = digit_template(tmp_path, "1")
    path.write_text(path.read_text().replace("cells: 3", "cells: 3, length: 3"))
    with pytest.raises(SettingError, match=r"fields\[1\] \(code\)\.length: a comb's length is its number"):
        templates.load(path)


def giant_checkpoint(folder: Path) -> Path:
    """The kept cnn's weights (width 1), under a config that says width 50: 542 million parameters."""
    state = torch.load(ROOT / "tests" / "data" / "cnn-before-the-layout.pt", weights_only=True)
    state["config"]["width"] = 50.0
    path = folder / "giant.pt"
    torch.save(state, path)
    return path


def test_a_checkpoint_claiming_a_giant_model_is_refused_before_it_is_built(tmp_path):
    model = giant_checkpoint(tmp_path)
    scans = tmp_path / "scans"
    scans.mkdir()
    Image.new("L", (28, 28), 255).save(scans / "a.png")
    argv = ["jobs/score.py", str(scans), "--model", str(model), "--output", str(tmp_path / "out")]
    code, err, peak = run_measured(argv, tmp_path)
    print(f"peak memory refusing the giant checkpoint: {peak / GiB:.2f} GiB")
    assert code == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith(
        f"jobs/score.py: error: --model {model}: {model}: its weights do not fit the model its config "
        "describes (cnn, width 50.0): 'features.0.weight' is 16x1x3x3 in the weights, 800x1x3x3 in that model"
    ), err
    assert peak < 1.5 * GiB, peak
    assert not (tmp_path / "out").exists()


def test_weights_missing_or_extra_are_named(tmp_path):
    state = torch.load(ROOT / "tests" / "data" / "cnn-before-the-layout.pt", weights_only=True)
    cases = {
        "missing": ({k: v for k, v in state["model"].items() if k != "classifier.4.bias"}, "lack"),
        "extra": (state["model"] | {"x" * 10_000: torch.zeros(1)}, "its weights hold 'xxxxx"),
        "not a tensor": (state["model"] | {"classifier.4.bias": [0.0] * 10}, "hold as no tensor"),
    }
    for name, (weights, words) in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(state | {"model": weights}, path)
        with pytest.raises(SettingError) as e:
            checkpoints.for_scoring(str(path), None)
        assert words in str(e.value), (name, str(e.value))
        assert len(str(e.value)) < 300 + 2 * len(str(path)), name
