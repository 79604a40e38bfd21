"""The package's shape: no import cycle among its modules, and no function too long to read at once."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

PACKAGE = ROOT / "hdr_dist"
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py"))}


def imports(tree: ast.Module, names: set[str]) -> set[str]:
    """The package's modules this one imports, at the top or inside a function alike."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hdr_dist"):
            if node.module == "hdr_dist":
                found |= {a.name for a in node.names if a.name in names}
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("hdr_dist.")}
    return found


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                return path[path.index(other):] + [other]
            if other not in state and (found := visit(other, [*path, other])):
                return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module, [module])):
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_among_the_package_modules():
    trees = modules()
    graph = {name: imports(tree, set(trees)) - {name} for name, tree in trees.items()}
    assert set().union(*graph.values()) <= set(trees)
    found = cycle(graph)
    assert found is None, "import cycle: " + " -> ".join(found)


def test_jobs_depend_on_the_library_not_on_one_another():
    """A job (a command) imports the library; no module imports a job, so no job borrows from another."""
    trees = modules()
    jobs = {"compare", "tune", "score", "report"}
    for name, tree in trees.items():
        assert not imports(tree, set(trees)) & (jobs - {name}), name


def test_no_function_longer_than_a_screen():
    long = [f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in sorted(PACKAGE.glob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long
