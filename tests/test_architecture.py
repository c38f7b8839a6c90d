"""The code's shape, read from the source with `ast` (nothing is imported or run):

(a) no import cycle among our modules (function-level imports included);
(b) the floor rules: which floor may import which, as data;
(c) no function over 80 lines and no module over 500 (ours, the benchmarks' and the tests');
(d) no schema written twice (one dataclass per field set; SafetyConfig's fields only there).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ppo_robot", "envs", "export", "firmware_bridge")

# ---------------------------------------------------------------- floors, as data

FLOORS: dict[str, tuple[str, ...]] = {
    # floor: module prefixes (the longest matching prefix decides)
    "base": ("ppo_robot.errors", "ppo_robot.paths", "ppo_robot.cli"),
    "envs": ("envs",),
    "algo": ("ppo_robot",),  # PPO, networks, runner, checkpoint, the train/eval schemas
    "export": ("export",),  # the graph, the onnxruntime policy, the export schema
    "bridge": ("firmware_bridge",),  # the package itself (a docstring)
    "wire": ("firmware_bridge.wire",),
    "logs": ("firmware_bridge.logs",),
    "host": ("firmware_bridge.host",),
    "sim": ("firmware_bridge.sim",),
    "analysis": ("firmware_bridge.analysis",),
    "tools": ("firmware_bridge.tools",),
    "firmware": ("firmware_bridge.firmware",),  # the C firmware's generators (scripts)
    "entry": (
        "ppo_robot.train",
        "ppo_robot.evaluate",
        "export.onnx",
        "firmware_bridge.deploy",
        "firmware_bridge.replay",
        "firmware_bridge.sim_robot",
        "firmware_bridge.faultproxy",
        "firmware_bridge.calibrate",
    ),
}

MAY_IMPORT: dict[str, set[str]] = {
    # floor: the other floors it may import (every floor may import its own and "base")
    "base": set(),
    "envs": set(),
    "algo": {"envs"},
    "export": {"envs", "algo"},
    "bridge": set(),
    "wire": set(),
    "logs": {"wire"},
    "host": {"wire", "logs", "envs", "export"},
    "sim": {"wire", "logs", "envs", "algo"},
    "analysis": {"wire", "logs", "host", "sim", "envs", "export", "algo"},
    "tools": {"wire"},
    "firmware": {"wire", "envs"},
    "entry": set(FLOORS),
}

# ---------------------------------------------------------------- long functions

MAX_LINES = 80
MAX_MODULE_LINES = 500
# Functions over MAX_LINES that may stay; empty: none may.
LONG_FUNCTIONS_ALLOWED: set[str] = set()

# ---------------------------------------------------------------- schemas

SAME_FIELDS_ALLOWED: set[frozenset[str]] = set()
"""Sets of dataclass names that may share one field set; empty: none may. Where two schemas
need the same fields, generate one from the other (`make_dataclass` over `fields()`, as the
fault proxy's per-direction section is built from its `Rates`), so the names are written
once; a generated dataclass is not a class statement, so this test does not see it."""


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            rel = p.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = p
    return out


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _target(name: str, mods: dict[str, Path]) -> str | None:
    """The module of ours that an imported dotted name lands in, if any."""
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports anywhere in its file."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = _tree(path)
        skip = _type_only(tree)
        for node in ast.walk(tree):
            names: list[str] = []
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                t = _target(n, mods)
                if t is not None and t != mod:
                    graph[mod].add(t)
    return graph


def _type_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under `if TYPE_CHECKING:` (annotations only, never run)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            out.update(id(n) for b in node.body for n in ast.walk(b))
    return out


def floor_of(module: str) -> str:
    best, best_len = None, -1
    for floor, prefixes in FLOORS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = floor, len(p)
    assert best is not None, f"{module} is on no floor: add it to FLOORS"
    return best


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_function_level_imports():
    g = import_graph()
    # firmware_bridge.host.deploy (and deploy_steps) import these only inside functions
    assert "firmware_bridge.wire.session" in g["firmware_bridge.host.deploy"]
    assert "envs.robots" in g["firmware_bridge.host.deploy_steps"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_floor_rules():
    bad = []
    for mod, deps in sorted(import_graph().items()):
        f = floor_of(mod)
        for d in sorted(deps):
            g = floor_of(d)
            if g not in {f, "base"} | MAY_IMPORT[f]:
                bad.append(f"{mod} ({f}) imports {d} ({g})")
    assert bad == []


def test_base_imports_nothing_above_it():
    g = import_graph()
    for m in FLOORS["base"]:
        assert all(floor_of(d) == "base" for d in g[m]), (m, g[m])
    assert g["ppo_robot.errors"] == set()


def _all_sources() -> list[Path]:
    """Our packages' modules, the benchmarks and the tests."""
    extra = [p for d in ("benchmarks", "tests") for p in sorted((ROOT / d).rglob("*.py"))]
    return sorted(_modules().values()) + extra


def test_no_long_modules():
    long = []
    for path in _all_sources():
        n = len(path.read_text().splitlines())
        if n > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(ROOT).as_posix()} ({n} lines)")
    assert long == []


def test_no_long_functions():
    long = []
    for path in _all_sources():
        rel = path.relative_to(ROOT).as_posix()
        for name, node in _functions(_tree(path)):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_LINES and f"{rel}:{name}" not in LONG_FUNCTIONS_ALLOWED:
                long.append(f"{rel}:{name} ({n} lines)")
    assert long == []


def _functions(tree: ast.Module, prefix: str = ""):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + node.name, node
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")


def _dataclass_fields() -> dict[str, tuple[str, frozenset[str]]]:
    """Every dataclass of ours: name -> (file, its annotated field names)."""
    out = {}
    for path in _modules().values():
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.ClassDef):
                continue
            decos = [ast.unparse(d) for d in node.decorator_list]
            if not any(d.startswith(("dataclass", "dataclasses.dataclass")) for d in decos):
                continue
            names = frozenset(
                s.target.id
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            )
            key = node.name
            assert key not in out, f"two dataclasses named {key}"
            out[key] = (path.relative_to(ROOT).as_posix(), names)
    return out


def test_safety_config_is_the_only_safety_schema():
    classes = _dataclass_fields()
    _, safety = classes["SafetyConfig"]
    assert len(safety) >= 4
    others = [n for n, (_, f) in classes.items() if n != "SafetyConfig" and safety <= f]
    assert others == []


def test_no_field_set_written_twice():
    seen: dict[frozenset[str], list[str]] = {}
    for name, (_, f) in _dataclass_fields().items():
        if len(f) >= 3:
            seen.setdefault(f, []).append(name)
    twice = [sorted(v) for v in seen.values() if len(v) > 1]
    assert [t for t in twice if frozenset(t) not in SAME_FIELDS_ALLOWED] == []


def test_every_entry_schema_is_registered_by_its_entry_point():
    """Each configs/<name>.yaml starts its defaults with <name>_schema, and the module
    that runs it passes the schema it owns to run_app (or register_schema)."""
    entry = {
        "train": "ppo_robot/train.py",
        "evaluate": "ppo_robot/evaluate.py",
        "export": "export/onnx.py",
        "deploy": "firmware_bridge/host/deploy.py",
        "replay": "firmware_bridge/analysis/replay.py",
        "faultproxy": "firmware_bridge/tools/faultproxy.py",
        "sim_robot": "firmware_bridge/sim/robot.py",
        "calibrate": "firmware_bridge/host/calibrate.py",
    }
    for name, path in entry.items():
        text = (ROOT / "configs" / f"{name}.yaml").read_text()
        assert f"- {name}_schema" in text, name
        calls = [
            ast.unparse(n)
            for n in ast.walk(_tree(ROOT / path))
            if isinstance(n, ast.Call)
            and len(n.args) >= {"run_app": 3, "register_schema": 2}.get(ast.unparse(n.func), 99)
            and ast.unparse(n.args[0]) == repr(name)
        ]
        assert calls, f"{path} registers no schema for '{name}'"


def _run_app_tasks() -> list[tuple[str, str, ast.FunctionDef | None, str]]:
    """Every `run_app(name, task, Schema, ...)` call of ours: (file, config name, the task's
    FunctionDef in that module or None, the schema's name)."""
    out = []
    for path in _modules().values():
        tree = _tree(path)
        defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and ast.unparse(n.func) == "run_app" and len(n.args) >= 3:
                rel = path.relative_to(ROOT).as_posix()
                task = ast.unparse(n.args[1])
                out.append((rel, ast.unparse(n.args[0]), defs.get(task), ast.unparse(n.args[2])))
    return out


def test_every_entry_point_converts_its_config_with_typed_config():
    """Each run_app task turns the composed DictConfig into its schema's typed object with
    `typed_config(<its parameter>, <the schema run_app registers>)`, bound to a name it
    reads, so the schema's `validate()` runs and nothing checks the DictConfig by hand."""
    tasks = _run_app_tasks()
    assert {name for _, name, _, _ in tasks} >= {
        "'train'", "'evaluate'", "'export'", "'deploy'", "'replay'", "'faultproxy'",
        "'sim_robot'", "'calibrate'",
    }  # fmt: skip
    bad = []
    for rel, name, task, schema in tasks:
        if task is None:
            bad.append(f"{rel}: run_app({name}, ...)'s task is not a function of that module")
            continue
        param = task.args.args[0].arg
        bound = [
            s
            for s in ast.walk(task)
            if isinstance(s, ast.Assign | ast.AnnAssign)
            and isinstance(s.value, ast.Call)
            and ast.unparse(s.value.func) == "typed_config"
            and [ast.unparse(a) for a in s.value.args] == [param, schema]
        ]
        if not bound:
            bad.append(f"{rel}: {task.name}() binds no typed_config({param}, {schema})")
    assert bad == []
