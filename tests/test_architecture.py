"""The layering that docs/ARCHITECTURE.md describes, checked on the source.

Every ``import`` in ``gcseg/`` (module level or inside a function) goes to the same group or
down a floor: commands -> cli -> engine -> deploy / config -> models / data / losses / optim ->
base.
No cycles between modules, and nothing in the package needs PaddleSeg or ``benchmarks/``.
"""
import ast
import re
from pathlib import Path
from typing import Dict, List, Set

from conftest import ROOT

FLOORS = {
    "base": 0, "models": 1, "data": 1, "losses": 1, "optim": 1,
    "deploy": 2, "config": 2, "engine": 3, "cli": 4, "commands": 5,
}
BASE_MODULES = {"gcseg", "gcseg.errors", "gcseg.registry", "gcseg.compat", "gcseg.cpu_env",
                "gcseg.staging", "gcseg.paddle_install", "gcseg.stopping"}
CONFIG_MODULES = {"gcseg.config", "gcseg.builder"}


def package_modules() -> Dict[str, Path]:
    modules = {}
    for path in (ROOT / "gcseg").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(path: Path) -> List[str]:
    """Every absolute module name ``path`` imports, plus ``module.name`` for ``from`` imports
    (the name may itself be a submodule)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (use gcseg.… names)"
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def import_graph() -> Dict[str, Set[str]]:
    modules = package_modules()
    graph = {}
    for name, path in modules.items():
        targets = {target for target in imported_names(path) if target in modules}
        # `from gcseg.data import palettes` imports the submodule, not the package
        graph[name] = {t for t in targets if t != name and not any(
            other.startswith(t + ".") for other in targets)}
    return graph


def group(module: str) -> str:
    if module in BASE_MODULES:
        return "base"
    if module in CONFIG_MODULES:
        return "config"
    return module.split(".")[1]


def test_every_module_has_a_floor():
    assert {group(module) for module in package_modules()} <= set(FLOORS)


def upward_imports(graph: Dict[str, Set[str]]) -> List[str]:
    return [f"{source} -> {target}" for source, targets in sorted(graph.items())
            for target in sorted(targets)
            if group(source) != group(target)
            and FLOORS[group(target)] >= FLOORS[group(source)]]


def cycles_in(graph: Dict[str, Set[str]]) -> List[str]:
    state: Dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(module: str, path: List[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_imports_never_run_back_up():
    assert upward_imports(import_graph()) == []


def test_no_import_cycles():
    assert cycles_in(import_graph()) == []


def test_package_needs_neither_paddleseg_nor_the_benchmarks():
    outside = [f"{name}: {target}" for name, path in package_modules().items()
               for target in imported_names(path)
               if target.split(".")[0] in {"paddleseg", "benchmarks"}]
    assert outside == []


def test_architecture_md_describes_every_module():
    """docs/ARCHITECTURE.md names each module file (the commands by their command names)."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = [(module, path.stem if path.parent.name == "commands" else path.name)
             for module, path in sorted(package_modules().items()) if path.name != "__init__.py"]
    undescribed = [module for module, name in named
                   if not re.search(rf"\b{re.escape(name)}\b", text)]
    assert undescribed == []


def test_the_checks_catch_an_upward_import_and_a_cycle():
    graph = {"gcseg.models.layers": {"gcseg.deploy.export"},
             "gcseg.deploy.export": {"gcseg.engine.inference", "gcseg.models.layers"},
             "gcseg.engine.inference": {"gcseg.errors"}, "gcseg.errors": set()}
    assert upward_imports(graph) == ["gcseg.deploy.export -> gcseg.engine.inference",
                                     "gcseg.models.layers -> gcseg.deploy.export"]
    assert cycles_in(graph) == [
        "gcseg.deploy.export -> gcseg.models.layers -> gcseg.deploy.export"]
