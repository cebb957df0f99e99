"""The house rules that import-linter cannot state: no import cycle among agent's modules (counting imports
made inside functions and under TYPE_CHECKING, which hide cycles at run time), and a core whose public API
loads no UI, no torch, no server and no plotting when imported in a fresh process."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "agent"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(AGENT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Every module of agent and the agent modules it imports, wherever the import is written. `from a
    import b` counts as importing a.b when that is a module, else a."""
    files = {module_name(path): path for path in AGENT.rglob("*.py")}
    edges: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_planted_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions_and_under_type_checking():
    edges = import_graph()
    # agent.tui.first_feed imports the app at module level; agent.core.api imports llm inside functions.
    assert "agent.tui.app" in edges["agent.tui.first_feed"]
    assert any(target.startswith("agent.core.llm") for target in edges["agent.core.api"])


def test_no_import_cycle_among_agents_modules():
    assert cycles(import_graph()) == []


def test_importing_the_cores_public_api_loads_no_ui_torch_server_or_plotting():
    heavy = ["textual", "torch", "transformers", "starlette", "uvicorn", "matplotlib", "llama_cpp"]
    probe = ("import sys; import agent.core.api; "
             f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_no_source_file_is_over_600_lines():
    long = {str(path.relative_to(AGENT.parent)): n for path in AGENT.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600}
    assert long == {}


# Functions outside the lab that are handed the whole agent, each with the reason.
AGENT_TAKERS_ALLOWED = {
    "agent/tui/app.py __init__": "the app is given the facade it shows (tests and the CLI open it)",
    "agent/tui/app.py _opened": "the app keeps the facade its worker opened",
}


def test_nothing_below_the_facade_imports_it_and_no_function_outside_the_lab_takes_an_agent():
    edges = import_graph()

    def facade(name: str) -> bool:  # the facade is the agent.core.api package
        return name == "agent.core.api" or name.startswith("agent.core.api.")

    below = [name for name in edges if name.startswith("agent.core.") and not facade(name)]
    assert [name for name in below if any(facade(target) for target in edges[name])] == []
    takers = []
    for path in AGENT.rglob("*.py"):
        if AGENT / "lab" in path.parents or AGENT / "core" / "api" in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                if any(a.arg == "agent" or "Agent" in ast.unparse(a.annotation or ast.Constant(""))
                       for a in arguments):
                    takers.append(f"{path.relative_to(AGENT.parent)} {node.name}")
    assert sorted(set(takers) - set(AGENT_TAKERS_ALLOWED)) == []


# Private attributes of objects this code does not own, each with the reason it is the only way.
PRIVATE_ACCESS_ALLOWED: dict[str, str] = {}


def test_no_module_touches_another_objects_private_attributes():
    found = []
    for path in AGENT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                where = f"{path.relative_to(AGENT.parent)}: {ast.unparse(node)}"
                if where not in PRIVATE_ACCESS_ALLOWED:
                    found.append(where)
    assert found == []
