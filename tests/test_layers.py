"""The import graph of nemo_twvlm against its declared layer order (README's package map).

Every `import` of a nemo_twvlm module counts, at any depth of the file (lazy imports in function bodies
and TYPE_CHECKING blocks included). An import may point down the layers or stay inside its layer (except
the pairs in APART); between two packages of one layer the imports must not form a circle; no two
modules may import each other, directly or around a loop. A package added under nemo_twvlm/ must be
given a layer here.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nemo_twvlm"

# Lowest first. A component is a subpackage or top-level module of nemo_twvlm.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("presets", "compat", "rundir"),
    ("model",),
    ("data",),
    ("training", "inference", "planner"),
    ("evaluation", "conversion", "curation"),
    ("launch",),
)
# Pairs kept apart although the layers would allow it, and why.
APART = {("conversion", "training"): "an import writes the run record through rundir, not as a training config"}


def module_names(root: Path) -> dict[str, Path]:
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules `name` imports: for `from X import Y`, X.Y where that is a module, else X."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    root = name.partition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets.update(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names)
    resolved = set()
    for target in targets:
        if target.partition(".")[0] != root:
            continue
        while target not in modules and "." in target:
            target = target.rpartition(".")[0]
        if target in modules and target != name:
            resolved.add(target)
    return resolved


def component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle [a, b, ..., a] per group of nodes that reach each other (strongly connected component)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    cycles = []
    for group in groups:
        start = min(group)
        path, seen = [start], {start}
        while True:  # walk inside the group until the path closes
            nxt = min(n for n in graph[path[-1]] if n in group)
            if nxt in seen:
                cycles.append(path[path.index(nxt):] + [nxt])
                break
            path.append(nxt)
            seen.add(nxt)
    return sorted(cycles)


def layer_problems(root: Path, layers=LAYERS) -> list[str]:
    """Every way the package under `root` breaks the layer order, each naming the edge or the circle."""
    modules = module_names(root)
    level = {name: k for k, names in enumerate(layers) for name in names}
    problems = [f"{name}: component {component(name)!r} has no layer in LAYERS" for name in modules
                if component(name) and component(name) not in level]
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    packages: dict[str, set[str]] = {}
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            a, b = component(source), component(target)
            if not a or not b or a not in level or b not in level:
                continue
            if level[b] > level[a]:
                problems.append(f"upward import {source} -> {target} ({a} is in layer {level[a]}, "
                                f"{b} in layer {level[b]})")
            elif (a, b) in APART:
                problems.append(f"{source} -> {target}: {a} must not import {b} ({APART[a, b]})")
            elif level[b] == level[a] and a != b:
                packages.setdefault(a, set()).add(b)
    problems += ["import circle: " + " -> ".join(cycle) for cycle in find_cycles(graph)]
    problems += ["import circle between packages of one layer: " + " -> ".join(cycle)
                 for cycle in find_cycles(packages)]
    return problems


def test_nemo_twvlm_follows_the_layer_order():
    problems = layer_problems(PACKAGE)
    assert not problems, "\n".join(problems)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "nemo_twvlm" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "nemo_twvlm"


@pytest.mark.parametrize("files, expected", [
    # A lazy upward import inside a function.
    ({"__init__.py": "", "model/__init__.py": "", "data/__init__.py": "",
      "model/llava.py": "def f():\n    from nemo_twvlm.data.loader import x\n", "data/loader.py": "x = 1\n"},
     ["upward import nemo_twvlm.model.llava -> nemo_twvlm.data.loader (model is in layer 1, data in layer 2)"]),
    # A circle inside one package, through a relative import.
    ({"__init__.py": "", "data/__init__.py": "", "data/a.py": "from . import b\n",
      "data/b.py": "from nemo_twvlm.data.a import thing\n"},
     ["import circle: nemo_twvlm.data.a -> nemo_twvlm.data.b -> nemo_twvlm.data.a"]),
    # Two packages of one layer importing each other (no module-level circle).
    ({"__init__.py": "", "training/__init__.py": "", "inference/__init__.py": "",
      "training/x.py": "import nemo_twvlm.inference.y\n", "inference/y.py": "",
      "inference/z.py": "from nemo_twvlm.training import x\n"},
     ["import circle between packages of one layer: inference -> training -> inference"]),
    # Conversion reaching into training.
    ({"__init__.py": "", "conversion/__init__.py": "", "training/__init__.py": "", "training/pretrain.py": "",
      "conversion/importer.py": "def f():\n    from nemo_twvlm.training.pretrain import free_port\n"},
     ["nemo_twvlm.conversion.importer -> nemo_twvlm.training.pretrain: conversion must not import training "
      "(an import writes the run record through rundir, not as a training config)"]),
    # An undeclared package.
    ({"__init__.py": "", "extras/__init__.py": ""}, ["nemo_twvlm.extras: component 'extras' has no layer in LAYERS"]),
    # Downward and sideways imports without circles are fine.
    ({"__init__.py": "", "launch/__init__.py": "", "evaluation/__init__.py": "", "conversion/__init__.py": "",
      "launch/cli.py": "from nemo_twvlm.evaluation import e\n", "evaluation/e.py": "import nemo_twvlm.conversion.c\n",
      "conversion/c.py": "import torch\n"}, []),
])
def test_the_check_names_each_kind_of_problem(tmp_path, files, expected):
    assert layer_problems(_write(tmp_path, files)) == expected
