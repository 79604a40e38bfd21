"""The docs are the contract: every flag in their tables is a flag of that job, with the default they
give, and every flag a job has is in its doc's tables."""

from __future__ import annotations

import argparse
import re

import pytest

from hdr_dist.jobs import compare, export, forms, score, tune
from tests.helpers import ROOT

PARSERS = {
    "compare": compare.parser,
    "tune": tune.parser,
    "score": score.parser,
    "forms": forms.parser,
    "export": export.parser,
}
PROSE_NONE = ("none", "off", "required", "all", "the model's recipe")


def flag_rows(path) -> list[tuple[list[str], str]]:
    """Each row of the doc's flag tables (header ``| flag | default | meaning |``): its flags, its default."""
    rows, in_table = [], False
    for line in path.read_text().splitlines():
        if re.match(r"^\|\s*flag\s*\|\s*default\s*\|", line):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            in_table = False
        if in_table and not re.match(r"^\|\s*-", line):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.append((re.findall(r"`(--[\w-]+)", cells[0]), cells[1]))
    return rows


def same(documented: str, action: argparse.Action) -> bool:
    literal = re.fullmatch(r"`([^`]*)`", documented)
    if (
        literal is None
    ):  # prose: "on" for a switch on by default, else the flag has no literal default of its own
        return (
            action.default is True
            if documented == "on"
            else action.default in (None, False) or action.required
        )
    text = literal.group(1)
    if isinstance(action.default, (int, float)) and not isinstance(action.default, bool):
        try:
            return float(text.replace(",", "")) == float(action.default)
        except ValueError:
            return False
    return text == str(action.default)


@pytest.mark.parametrize("job", sorted(PARSERS))
def test_every_documented_flag_exists_with_its_default(job):
    parser = PARSERS[job](job)
    actions = {option: a for a in parser._actions for option in a.option_strings}
    rows = flag_rows(ROOT / "docs" / f"{job}.md")
    assert rows, f"docs/{job}.md has no flag table"
    documented = set()
    for flags, default in rows:
        for flag in flags:
            assert flag in actions, f"docs/{job}.md: {flag} is not a flag of {job}"
            assert same(default, actions[flag]), (
                f"docs/{job}.md: {flag} default {default} != {actions[flag].default!r}"
            )
            documented |= set(actions[flag].option_strings)
    undocumented = {
        o
        for o, a in actions.items()
        if o not in documented and a.dest != "help" and not o.startswith("--no-")
    }
    assert not undocumented, f"docs/{job}.md lacks {sorted(undocumented)}"


def test_the_readme_links_every_doc():
    readme = (ROOT / "README.md").read_text()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in readme, f"README does not link docs/{doc.name}"
