"""The package shows its pipeline: one folder per stage, imports that run one way.

Every ``maskwatch`` import in the package (module level or inside a function) is read from the
source: a stage may use the shared modules, its own modules and the packages of earlier stages
(through what their ``__init__`` exports), never a later stage, and no import cycle exists.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "firmware" / "maskwatch"
SHARED = {"maskwatch", "maskwatch.types", "maskwatch.redact", "maskwatch.alarm_format",
          "maskwatch.config"}
# Data flows down this list; stages on one rank (outputs, web) do not use each other. The
# stream draws its boxes as the page does (web's draw_faces), so it comes after web.
RANK = {"sources": 1, "conditions": 2, "vision": 3, "decision": 4, "events": 5,
        "outputs": 6, "web": 6, "stream": 7, "service": 8, "cli": 9}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> str:
    if module == "maskwatch.__main__":
        return "cli"
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else "shared"


def imports(path: Path) -> set[str]:
    """The maskwatch modules ``path`` imports (``from maskwatch.x import y`` names module
    ``maskwatch.x``, or ``maskwatch.x.y`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("maskwatch")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("maskwatch"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in MODULES else node.module)
    return found


FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {module_name(p) for p in FILES}
GRAPH = {module_name(p): imports(p) for p in FILES}


def test_every_module_sits_in_a_stage_folder_or_the_small_shared_core() -> None:
    loose = {m for m in MODULES if stage(m) == "shared"} - SHARED - {"maskwatch.__main__"}
    assert not loose, f"modules outside a stage folder: {sorted(loose)}"
    assert {stage(m) for m in MODULES} == set(RANK) | {"shared"}


def test_no_stage_imports_a_later_one_or_a_sibling() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        here = stage(module)
        for target in targets:
            there = stage(target)
            if there == "shared" or there == here:
                continue
            if here == "shared" or RANK[there] >= RANK[here]:
                wrong.append(f"{module} ({here}) imports {target} ({there})")
    assert not wrong, "\n".join(wrong)


def test_other_stages_use_only_what_a_stage_package_exports() -> None:
    private = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if stage(target) not in ("shared", stage(module)) and target.count(".") > 1
    ]
    assert not private, "\n".join(private)


def test_every_name_taken_from_a_stage_package_is_exported_by_it() -> None:
    missing = []
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.ImportFrom) and node.module
                    and node.module.startswith("maskwatch.") and node.module.count(".") == 1):
                package = importlib.import_module(node.module)
                if stage(node.module) in RANK:
                    missing += [f"{module_name(path)}: {node.module}.{a.name}"
                                for a in node.names if a.name not in package.__all__]
    assert not missing, "\n".join(missing)


def test_there_is_no_import_cycle() -> None:
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [module, target] if target in path else [
                    module, target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [module])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])


def test_the_checker_sees_a_backward_import(tmp_path: Path) -> None:
    """The walk finds imports inside functions too, and ranks them."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from maskwatch.service import run_service\n")
    assert imports(source) == {"maskwatch.service"}
    assert RANK[stage("maskwatch.service")] > RANK[stage("maskwatch.sources.demo")]
