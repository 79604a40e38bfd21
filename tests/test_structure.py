"""The package's shape, checked: each subpackage imports only the layers below it (the table below is
the README's map), no import cycle among the modules, no job borrowing from another, no function too
long to read at once."""

from __future__ import annotations

import ast
import re

from tests.helpers import ROOT

PACKAGE = ROOT / "hdr_dist"
MAX_FUNCTION_LINES = 60
# What each subpackage may import, besides itself. The layers, bottom up: common; imaging; data and
# models; inference; training and scoring; review and reports; jobs, which alone may import anything.
ALLOWED = {
    "common": set(),
    "imaging": {"common"},
    "data": {"common", "imaging"},
    "models": {"common", "imaging"},
    "inference": {"common", "imaging", "models"},
    "training": {"common", "imaging", "data", "models", "inference"},
    "bulk": {"common", "imaging", "models", "inference"},
    "review": {"common", "imaging", "models", "inference", "bulk"},
    "reports": {"common", "inference"},
    "scoring": {"common", "imaging", "models", "inference", "bulk"},
    "forms": {"common", "imaging", "data", "models", "inference", "bulk", "review"},
    "jobs": {
        "common",
        "imaging",
        "data",
        "models",
        "inference",
        "training",
        "bulk",
        "scoring",
        "review",
        "reports",
        "forms",
    },
}
SHIMS = {"train": {"jobs"}, "samples": {"jobs"}}  # `python -m hdr_dist.train` and `-m hdr_dist.samples`
JOBS = {
    "jobs.compare",
    "jobs.tune",
    "jobs.score",
    "jobs.report",
    "jobs.train",
    "jobs.forms",
    "jobs.export",
    "jobs.samples",
    "jobs.models",
}


def modules() -> dict[str, ast.Module]:
    """Dotted name under hdr_dist (a package by its own name) -> its syntax tree."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def imports(tree: ast.Module, names: set[str]) -> set[str]:
    """The package's modules this one imports, at the top or inside a function alike."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hdr_dist":
            base = node.module.removeprefix("hdr_dist").lstrip(".")
            for alias in node.names:
                whole = f"{base}.{alias.name}".lstrip(".")
                found.add(whole if whole in names else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("hdr_dist.") for a in node.names if a.name.startswith("hdr_dist.")}
    return found - {""}


def graph() -> dict[str, set[str]]:
    trees = modules()
    return {name: imports(tree, set(trees)) - {name} for name, tree in trees.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for other in sorted(edges.get(module, ())):
            if state.get(other) == "open":
                return path[path.index(other) :] + [other]
            if other not in state and (found := visit(other, [*path, other])):
                return found
        state[module] = "done"
        return None

    for module in sorted(edges):
        if module not in state and (found := visit(module, [module])):
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_every_module_sits_in_a_subpackage_of_the_table():
    loose = [name for name in modules() if name and name.split(".")[0] not in ALLOWED | SHIMS]
    assert not loose, f"modules outside the layered subpackages: {loose}"
    sizes = {package: sum(name.startswith(f"{package}.") for name in modules()) for package in ALLOWED}
    # jobs holds one module per command, and the two every command shares: it grows with the commands.
    assert all(2 <= n <= 10 for package, n in sizes.items() if package != "jobs"), sizes
    assert {name for name in modules() if name.startswith("jobs.")} == JOBS | {"jobs.cli", "jobs.flags"}


def test_each_subpackage_imports_only_the_layers_below_it():
    wrong = []
    for name, imported in graph().items():
        layer = name.split(".")[0]
        allowed = SHIMS.get(layer) if layer in SHIMS else ALLOWED.get(layer, set())
        for other in sorted(imported):
            if other.split(".")[0] not in allowed | {layer}:
                wrong.append(f"{name} -> {other}")
    assert not wrong, "imports against the layering: " + "; ".join(wrong)


def test_the_layering_test_sees_a_wrong_import():
    trees = {
        "scoring.pipeline": ast.parse("from hdr_dist.training import train\n"),
        "training.train": ast.parse(""),
    }
    assert imports(trees["scoring.pipeline"], set(trees)) == {"training.train"}


def test_no_import_cycle_among_the_package_modules():
    edges = graph()
    assert set().union(*edges.values()) <= set(edges)
    found = cycle(edges)
    assert found is None, "import cycle: " + " -> ".join(found)


def test_jobs_depend_on_the_library_not_on_one_another():
    """A job (a command) imports the library; no module imports a job, so no job borrows from another
    (a shim stands for its job under an old name)."""
    for name, imported in graph().items():
        if name not in SHIMS:
            assert not imported & (JOBS - {name}), name


def test_no_function_longer_than_a_screen():
    long = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_importing_the_library_sets_nothing_for_the_process():
    """Only a job's main may set process-wide switches: importing every module of the package changes no
    environment variable, no logger's level or handlers, and chooses no matplotlib backend."""
    import subprocess
    import sys

    script = """
import importlib, json, logging, os, pkgutil, sys
# what these set at import is theirs (cv2: LD_LIBRARY_PATH)
import cv2, matplotlib, numpy, pyarrow, PIL, scipy, sklearn, torch
NAMES = ("ray", "ray.data", "ray.train", "hdr_dist")
def loggers():
    return {n: (l.level, len(l.handlers)) for n, l in
            [("", logging.getLogger())] + [(n, logging.getLogger(n)) for n in NAMES]}
before = (dict(os.environ), matplotlib.rcParams["backend"], loggers())
import hdr_dist
for m in pkgutil.walk_packages(hdr_dist.__path__, "hdr_dist."):
    importlib.import_module(m.name)
after = (dict(os.environ), matplotlib.rcParams["backend"], loggers())
print(json.dumps([before[0] == after[0], before[1], after[1], before[2] == after[2], before[2], after[2]]))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    same_env, backend_before, backend_after, same_logs, logs_before, logs_after = json.loads(
        result.stdout.splitlines()[-1]
    )
    assert same_env, "importing the library changed the environment"
    assert backend_before == backend_after
    assert same_logs, (logs_before, logs_after)


def test_the_inference_actor_imports_no_training_code():
    """What a score actor imports (its class's module) starts every actor: it takes no training code,
    no Ray Train or Tune, and none of the report's or classical models' libraries."""
    import subprocess
    import sys

    script = (
        "import sys, hdr_dist.scoring.pipeline as p; assert p.Predictor; print(sorted({m.split('.')[0] if "
        "not m.startswith(('hdr_dist.', 'ray.')) else '.'.join(m.split('.')[:2]) for m in sys.modules}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    for heavy in (
        "hdr_dist.training",
        "hdr_dist.jobs",
        "hdr_dist.reports",
        "ray.train",
        "ray.tune",
        "matplotlib",
        "sklearn",
        "mlflow",
    ):
        assert f"'{heavy}'" not in loaded, f"the inference actor's module imports {heavy}"
    assert "'torch'" in loaded  # the test reads what was loaded
    assert "'hdr_dist.inference'" in loaded


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
# The library's own flag strings, each with the reason it cannot be the job's: every other error
# names a setting (``errors.setting``) and the job shows it as its flag.
LIBRARY_FLAGS = {
    "forms/samples.py": "`python -m hdr_dist.forms.samples` is its own command, inside the forms layer",
    "review/page.py": "the page tells its reader how to score again with the corrections it saves",
    "inference/readers.py": "a warning that summary.json keeps names compare's flag for a field model",
}


def docstrings(tree: ast.Module) -> set[int]:
    """The ids of the string constants that are docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def flag_strings(tree: ast.Module) -> list[str]:
    """The command-line flags a module's strings spell, docstrings aside."""
    skip = docstrings(tree)
    return [
        match
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
        for match in FLAG.findall(node.value)
    ]


def test_the_library_leaves_flags_to_the_jobs():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        if not name.startswith("jobs/") and (flags := flag_strings(ast.parse(path.read_text()))):
            found[name] = flags
    unexplained = {name: flags for name, flags in found.items() if name not in LIBRARY_FLAGS}
    assert not unexplained, f"flag strings outside hdr_dist/jobs/: {unexplained}"
    assert sum(len(flags) for flags in found.values()) <= 5, found


def test_the_flag_finder_skips_docstrings_and_sees_f_strings():
    tree = ast.parse('"""--doc"""\ndef f(x):\n    """--also-doc"""\n    return f"--gpu {x}: no", "a--b"\n')
    assert flag_strings(tree) == ["--gpu"]


NOQA = "# no" + "qa"  # spelt apart, so this file's own lines are not taken for one


def test_every_noqa_says_why():
    """A noqa comment names its rule and gives the reason on the same line."""
    bare = []
    for path in sorted(
        [
            *PACKAGE.rglob("*.py"),
            *(ROOT / "tests").rglob("*.py"),
            *(ROOT / "jobs").glob("*.py"),
            *(ROOT / "benchmarks").glob("*.py"),
        ]
    ):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if NOQA in line and not re.search(NOQA + r": [A-Z]+[0-9]+(, [A-Z]+[0-9]+)* +[-—:]+ +\w", line):
                bare.append(f"{path.relative_to(ROOT)}:{number}")
    assert not bare, f"noqa without a rule and a reason: {bare}"


def test_a_setting_error_names_its_flag_and_survives_pickling():
    """The library names a setting; the job shows it as its flag, or as it maps it; a SettingError
    raised in a Ray worker comes back to the driver whole."""
    import pickle

    from hdr_dist.common.errors import JOB, SettingError, UserError, setting

    e = SettingError("model_name", "rnn", f"no such model; give {setting('target_error')} ({JOB} takes one)")
    assert str(e) == "--model-name rnn: no such model; give --target-error (job takes one)"
    shown = e.line({"model_name": "--digit-model-name", "job": "forms"})
    assert shown == "--digit-model-name rnn: no such model; give --target-error (forms takes one)"
    again = pickle.loads(pickle.dumps(e))
    assert again.line() == e.line()
    assert again.setting == "model_name"
    assert e.renamed("field_model_name").line() == (
        "--field-model-name rnn: no such model; give --target-error (job takes one)"
    )
    assert UserError(f"INPUT x: {setting('resume')} it").line({"resume": "RESUME"}) == "INPUT x: RESUME it"
