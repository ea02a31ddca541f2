"""Only `pipeline/kafka/` touches the Kafka clients' private names (the house rule, checked).

Outside that package no module may import a private name of faust, mode, aiokafka or
kafka-python, read or write another object's private attribute (`x._y`, `getattr(x, "_y")`,
`super()._y()`), or override a private method of a class it subclasses from those libraries.
A module's own private attributes (those it assigns on `self`/`cls` or defines in a class) are
its business. ruff's TID251 bans the known private imports too; this test is the general rule.
"""

from __future__ import annotations

import ast
import gc
import importlib
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipeline"
CLIENT_LIBRARIES = ("faust", "mode", "aiokafka", "kafka")
STDLIB_PRIVATE_OK = {("os", "_exit")}  # documented API despite the underscore


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_private_names(tree: ast.AST) -> set[str]:
    """Private attributes the module itself defines: `self._x = …`, `cls._x`, class members."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                own.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    own.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    own.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    own.update(t.id for t in item.targets if isinstance(t, ast.Name))
    return own


def _library_names(tree: ast.AST) -> dict[str, tuple[str, ...]]:
    """Names bound to client-library objects: `from faust.x import Y` → {"Y": ("faust.x", "Y")},
    `import faust` → {"faust": ("faust",)}."""
    names: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.split(".")[0] in CLIENT_LIBRARIES
        ):
            for alias in node.names:
                names[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in CLIENT_LIBRARIES:
                    names[alias.asname or alias.name.split(".")[0]] = (alias.name.split(".")[0],)
    return names


def _dotted(node: ast.expr) -> list[str] | None:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else [*head, node.attr]
    return None


def _library_base(node: ast.expr, names: dict[str, tuple[str, ...]]) -> object | None:
    """The library class a base-class expression names (None: not a client-library class)."""
    parts = _dotted(node)
    if not parts or parts[0] not in names:
        return None
    module, *attrs = names[parts[0]]
    try:
        obj: object = importlib.import_module(module)
        for attr in [*attrs, *parts[1:]]:
            if not hasattr(obj, attr) and isinstance(obj, types.ModuleType):
                importlib.import_module(f"{obj.__name__}.{attr}")  # a submodule
            obj = getattr(obj, attr)
    except (ImportError, AttributeError):
        return object  # unknown: treated as having every attribute
    return obj


def _base_has(base: object, name: str) -> bool:
    """Whether the library class has attribute `name` (True when it could not be resolved)."""
    return base is object or hasattr(base, name)


def parse(path: Path) -> ast.Module:
    """`ast.parse` with the garbage collector held off: on CPython 3.11.7 a finalizer run by a
    collection during the parse (an earlier test's faust app, a weakref callback) can fail it
    with "SystemError: AST constructor recursion depth mismatch" (seen running tests/agents
    then this file). The earlier tests' garbage is collected once per module (below), not per
    file: a full collection after the agents' tests took ~0.6 s, 100 s over the 167 files."""
    gc.disable()
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    finally:
        gc.enable()


@pytest.fixture(scope="module", autouse=True)
def _collected_once() -> None:
    gc.collect()


def violations(path: Path, root: Path = ROOT) -> list[str]:
    """Every place in `path` that touches a private name it does not own."""
    tree = parse(path)
    own = _own_private_names(tree)
    library_names = _library_names(tree)
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in CLIENT_LIBRARIES:
                if any(_private(part) for part in node.module.split(".")):
                    report(node, f"imports private module {node.module}")
                for alias in node.names:
                    if _private(alias.name):
                        report(node, f"imports private name {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in CLIENT_LIBRARIES and any(_private(p) for p in parts):
                    report(node, f"imports private module {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls") and node.attr in own:
                continue
            if isinstance(base, ast.Name) and (base.id, node.attr) in STDLIB_PRIVATE_OK:
                continue
            is_super = (
                isinstance(base, ast.Call)
                and isinstance(base.func, ast.Name)
                and base.func.id == "super"
            )
            if not is_super and node.attr in own:
                continue  # another instance of the module's own class (e.g. `other._counts`)
            report(node, f"touches private attribute .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and node.args[1].value not in own
        ):
            report(node, f"{node.func.id}(…, {node.args[1].value!r})")
        elif isinstance(node, ast.ClassDef):
            bases = [
                base for b in node.bases if (base := _library_base(b, library_names)) is not None
            ]
            for item in node.body:
                if (
                    isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                    and _private(item.name)
                    and any(_base_has(base, item.name) for base in bases)
                ):
                    report(item, f"overrides private method {node.name}.{item.name}")
    return found


def _modules_outside_the_boundary() -> list[Path]:
    return sorted(p for p in PIPELINE.rglob("*.py") if "kafka" not in p.relative_to(PIPELINE).parts)


@pytest.mark.parametrize(
    "path", _modules_outside_the_boundary(), ids=lambda p: str(p.relative_to(PIPELINE))
)
def test_no_private_client_name_outside_pipeline_kafka(path: Path) -> None:
    assert violations(path) == []


def test_the_rule_catches_each_kind_of_touch(tmp_path: Path) -> None:
    """The checker is not vacuous: each forbidden pattern is reported."""
    bad = tmp_path / "pipeline" / "agents" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "from faust.streams import _current_event\n"
        "import aiokafka._private\n"
        "from faust.transport.drivers.aiokafka import Consumer\n"
        "class C(Consumer):\n"
        "    async def _getmany(self):\n"
        "        return await super()._getmany()\n"
        "def f(consumer):\n"
        "    consumer._client.force_metadata_update()\n"
        "    return getattr(consumer, '_committed_offset', {})\n",
        encoding="utf-8",
    )
    kinds = "\n".join(violations(bad, tmp_path))
    assert "private name faust.streams._current_event" in kinds
    assert "private module aiokafka._private" in kinds
    assert "overrides private method C._getmany" in kinds
    assert "private attribute ._getmany" in kinds  # super()._getmany()
    assert "private attribute ._client" in kinds
    assert "getattr(…, '_committed_offset')" in kinds
