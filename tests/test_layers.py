"""berth's layers, as ARCHITECTURE.md draws them, checked on every module's imports (an
import-linter contract cannot be used: `berth.operator` must stay a namespace package, or the
folder `operator/` would shadow the standard library's module of that name).

A module may import from its own package and from any layer below it, never above; the
operator knows the recommender only by its HTTP client; the core, placement and the simulator
do no I/O with the cluster, a model runtime or Prometheus."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Top to bottom; packages in one row are independent of each other.
LAYERS = [
    {"berth.__main__"},
    {"berth.cli"},  # the commands
    {"berth.simulate"},
    {"berth.operator"},
    {"berth.recommender"},
    {"berth.profiler"},
    {"berth.simulator"},
    {"berth.placement"},
    {"berth.core"},
    {"berth.crds", "berth.progress_bar"},
]
FOLDERS = {
    "berth": ROOT / "src" / "berth",
    "berth.operator": ROOT / "operator",
    "berth.recommender": ROOT / "recommender",
    "berth.profiler": ROOT / "profiler",
    "berth.crds": ROOT / "crds",
}
ALLOWED = {("berth.operator", "berth.recommender.client")}  # its public HTTP client
PURE = {"berth.core", "berth.placement", "berth.simulator"}
IO = {"kubernetes", "kopf", "onnxruntime", "torch", "prometheus_client", "prometheus_api_client",
      "starlette", "uvicorn", "httptools"}  # fmt: skip


def modules() -> Iterator[tuple[str, Path]]:
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "berth" and parts[0] in ("operator", "recommender", "profiler", "crds"):
                continue
            name = ".".join((package, *parts)).removesuffix(".__init__")
            yield name, path


def layer_of(module: str) -> tuple[int, str] | None:
    for depth, row in enumerate(LAYERS):
        for top in row:
            if module == top or module.startswith(top + "."):
                return depth, top
    return None


def imports(source: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{a.name}") for a in node.names)


def violations(name: str, source: str, shown: str) -> list[str]:
    """What in `source` (module `name`, shown as `shown`) breaks the layers."""
    here = layer_of(name)
    if here is None:
        return []
    found = []
    for line, target in imports(source):
        there = layer_of(target)
        where = f"{shown}:{line}: {name} imports {target}"
        if target.split(".")[0] in IO and here[1] in PURE:
            found.append(f"{where}: {here[1]} does no I/O")
        if there is None or there[1] == here[1]:
            continue
        if any(here[1] == a and (target == b or target.startswith(b + ".")) for a, b in ALLOWED):
            continue
        if there[0] < here[0]:
            found.append(f"{where}: {there[1]} is a layer above {here[1]}")
        elif there[0] == here[0]:
            found.append(f"{where}: {there[1]} and {here[1]} are independent")
        elif here[1] == "berth.operator" and there[1] == "berth.recommender":
            found.append(f"{where}: the operator uses only berth.recommender.client")
    return found


def test_every_folder_of_the_layout_is_in_a_layer() -> None:
    assert all(layer_of(name) for name, _ in modules() if name != "berth")


@pytest.mark.parametrize("name,path", list(modules()), ids=lambda v: str(v))
def test_a_module_imports_only_from_its_layer_and_below(name: str, path: Path) -> None:
    assert violations(name, path.read_text(), str(path.relative_to(ROOT))) == []


def test_an_import_from_a_layer_above_or_of_io_in_the_core_is_refused() -> None:
    leak = "from berth.operator.workers import worker_name\nimport kubernetes\n"
    found = violations("berth.placement.leak", leak, "leak.py")
    assert found == [
        "leak.py:1: berth.placement.leak imports berth.operator.workers: "
        "berth.operator is a layer above berth.placement",
        "leak.py:1: berth.placement.leak imports berth.operator.workers.worker_name: "
        "berth.operator is a layer above berth.placement",
        "leak.py:2: berth.placement.leak imports kubernetes: berth.placement does no I/O",
    ]


def test_the_operator_may_use_the_recommenders_client_and_nothing_else_of_it() -> None:
    ok = "from berth.recommender.client import RecommenderClient\n"
    assert violations("berth.operator.x", ok, "x.py") == []
    assert violations("berth.operator.x", "from berth.recommender import tables\n", "x.py")
