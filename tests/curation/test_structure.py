"""The shape of nemo_twvlm.curation: every configured value has one home (the YAML; the schema and
the stages carry no copy), stages share one task protocol, the import graph has no circles (lazy
imports included) and points down the layers, and no function outgrows a screen."""
from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import nemo_twvlm.curation as curation
from nemo_twvlm.curation import config

PACKAGE = Path(curation.__file__).parent
# Stage fields that are not configuration: the stage's name and resources (Curator's), and the model
# inference batch of the CLIP stages, which changes speed, never a decision.
NOT_CONFIGURED = {"name", "resources", "chunk"}
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _stage_classes() -> list[type]:
    from nemo_curator.stages.base import ProcessingStage

    from nemo_twvlm.curation import stages

    for info in pkgutil.walk_packages(stages.__path__, stages.__name__ + "."):
        importlib.import_module(info.name)
    return sorted({cls for module in _modules() if module.startswith(stages.__name__)
                   for _, cls in inspect.getmembers(importlib.import_module(module), inspect.isclass)
                   if issubclass(cls, ProcessingStage) and cls.__module__.startswith("nemo_twvlm")},
                  key=lambda c: c.__qualname__)


def test_the_schema_has_no_values_of_its_own():
    schema = [cls for _, cls in inspect.getmembers(config, inspect.isclass) if dataclasses.is_dataclass(cls)]
    assert len(schema) == 16  # CurationConfig and its 15 sections
    with_defaults = [f"{cls.__name__}.{f.name}" for cls in schema for f in dataclasses.fields(cls)
                     if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
    assert with_defaults == []


def _declared_here(cls: type) -> set[str]:
    """Fields this package declares (Curator's own stages keep their defaults)."""
    return {name for base in cls.__mro__ if base.__module__.startswith("nemo_twvlm")
            for name in vars(base).get("__annotations__", {})}


def test_no_stage_carries_a_default_of_its_own():
    stages = [cls for cls in _stage_classes() if dataclasses.is_dataclass(cls)]
    assert len(stages) >= 25
    own = [f"{cls.__name__}.{f.name}" for cls in stages for f in dataclasses.fields(cls)
           if f.name not in NOT_CONFIGURED and f.name in _declared_here(cls)
           and (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)]
    assert own == []


def test_stages_declare_the_task_protocol_once():
    from nemo_curator.stages.base import CompositeStage
    from nemo_curator.stages.file_partitioning import FilePartitioningStage

    from nemo_twvlm.curation.stages.base import CurationStage

    stages = _stage_classes()
    outside = [cls.__name__ for cls in stages
               if not issubclass(cls, (CurationStage, CompositeStage, FilePartitioningStage))]
    assert outside == []
    own_protocol = [cls.__name__ for cls in stages if cls is not CurationStage
                    and {"inputs", "outputs"} & vars(cls).keys()]
    assert sorted(own_protocol) == ["CheckpointStage", "ReaderStage"]  # + rejected


def _imports(path: Path, package: str) -> set[str]:
    """Every nemo_twvlm module `path` imports, at the top or inside a function."""
    modules = _modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("nemo_twvlm")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nemo_twvlm"):
            for alias in node.names:  # `from package import module` depends on the module, not the package
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found - {package}


def _circles(graph: dict[str, set[str]]) -> list[str]:
    circles, done = [], set()

    def visit(name: str, trail: list[str]) -> None:
        for nxt in sorted(graph.get(name, ())):
            if nxt in trail:
                circles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in done:
                visit(nxt, trail + [nxt])
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    return circles


def _unit(module: str) -> str:
    """The module's top-level part of the package: `stages` for every stage, else the module."""
    parts = module.split(".")
    return ".".join(parts[:3]) if len(parts) > 3 else module


@pytest.mark.parametrize("by", ["module", "package part"])
def test_no_import_circles_lazy_ones_included(by):
    """By module, and by part of the package (the stages as one): shard_writer -> report -> the
    decoder stage was a circle between `stages` and `report`, hidden in a lazy import."""
    modules = _modules()
    group = (lambda m: m) if by == "module" else _unit
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph.setdefault(group(name), set()).update(
            group(m) for m in _imports(path, name) if m in modules and group(m) != group(name))
    assert _circles(graph) == []


def test_curation_imports_only_lower_layers():
    upper = ("nemo_twvlm.launch", "nemo_twvlm.training", "nemo_twvlm.evaluation", "nemo_twvlm.conversion",
             "nemo_twvlm.inference", "recipes")
    wrong = sorted(f"{name} -> {m}" for name, path in _modules().items()
                   for m in _imports(path, name) if m.startswith(upper))
    assert wrong == []


def test_no_function_is_longer_than_a_screen():
    long = [f"{path.relative_to(PACKAGE)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in PACKAGE.rglob("*.py") for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []
