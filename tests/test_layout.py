"""The layout a newcomer reads: imports inside ``runner/`` flow one way (no cycle), a ``runner`` import inside a
function is there only to keep a torch-free command fast and says so, and every module has its test file."""

import ast
from pathlib import Path

from tests.conftest import PROJECT

PACKAGE = PROJECT / "runner"
# Subpackages tested as a whole by one file, and that file.
TESTED_AS_A_WHOLE = {"models": "test_models.py", "report": "test_report.py"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runner_imports(path: Path) -> list[tuple[str, ast.stmt, bool]]:
    """(imported runner module, the statement, whether it sits inside a function) for every runner import."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "runner":
                for alias in child.names:
                    candidate = f"{child.module}.{alias.name}"
                    is_module = (PROJECT / Path(*candidate.split("."))).with_suffix(".py").exists()
                    found.append((candidate if is_module else child.module, child, inside))
            elif isinstance(child, ast.Import):
                found.extend((alias.name, child, inside) for alias in child.names if alias.name.startswith("runner"))
            visit(child, inside)

    visit(ast.parse(path.read_text()), False)
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        # Importing a.b.c runs a and a.b first: every prefix is an edge too.
        targets = set()
        for target, _, _ in runner_imports(path):
            pieces = target.split(".")
            targets.update(".".join(pieces[:length]) for length in range(2, len(pieces) + 1))
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting, done = [], set()

    def walk(node: str) -> list[str] | None:
        if node in visiting:
            return visiting[visiting.index(node) :] + [node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = walk(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = walk(node)
        if cycle:
            return cycle
    return None


def test_there_is_no_import_cycle_in_runner():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_runner_imports_inside_functions_say_why():
    lines_of = {}
    unexplained = []
    for path in PACKAGE.rglob("*.py"):
        for target, statement, inside in runner_imports(path):
            if not inside:
                continue
            lines = lines_of.setdefault(path, path.read_text().splitlines())
            nearby = " ".join(lines[max(0, statement.lineno - 3) : statement.lineno])
            if "start-up" not in nearby:
                unexplained.append(f"{path.relative_to(PROJECT)}:{statement.lineno} imports {target}")
    assert not unexplained, "runner imports inside functions without a '# ... start-up ...' comment: " + str(
        unexplained
    )


def test_every_module_has_its_test_file():
    tests = {path.name for path in (PROJECT / "tests").glob("test_*.py")}
    missing = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        subpackage = path.relative_to(PACKAGE).parts[0]
        expected = TESTED_AS_A_WHOLE.get(subpackage, f"test_{path.stem}.py")
        if expected not in tests:
            missing.append(f"{path.relative_to(PROJECT)} -> tests/{expected}")
    assert not missing, f"modules without their tests/test_<module>.py: {missing}"
