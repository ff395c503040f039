"""Imports inside ``specsim`` go one way: no module imports itself back through others.

The graph is read from the source with ``ast`` (nothing is imported), counting every
import statement of a module, at module level or inside a function, so a cycle cannot
hide behind a deferred import; in a module that calls ``importlib.import_module``, every
string constant naming a specsim module (``"._sweep_cli"``, ``"specsim.plot"``) counts
too, so a registry of lazily imported modules is seen. A submodule's implicit import of
its parent package is not counted (every module would then sit in a cycle with
``specsim/__init__.py``).
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "specsim"

# Cycles tolerated for now, each as the set of modules that import one another in a circle
# (a strongly connected component of the import graph). The four of issue 10 are gone and
# the list must stay empty: whoever removes a cycle deletes its entry (the test fails until
# they do), and no entry is ever added.
KNOWN_CYCLES = []


def _module_names():
    """Dotted name of each module of the package, mapped to its file."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_graph():
    """``{module: set of specsim modules it imports}``, from every import statement."""
    modules = _module_names()
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        targets, strings, dynamic = set(), set(), False
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
            elif isinstance(node, (ast.Attribute, ast.Name, ast.alias)):
                dynamic |= "import_module" in (
                    getattr(node, "attr", None),
                    getattr(node, "id", None),
                    getattr(node, "name", None),
                )
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets.add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module
                for alias in node.names:
                    # `from pkg import sub` imports the submodule, `from pkg import name` pkg.
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        if dynamic:
            targets |= {package + s if s.startswith(".") else s for s in strings}
        # `import specsim.a.b` imports the module itself; a name outside specsim is skipped.
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def strongly_connected(graph):
    """The components of more than one module (Tarjan's algorithm), as sets."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _one_cycle(graph, component):
    """A readable path a -> b -> ... -> a inside a component."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        step = min(w for w in graph[path[-1]] if w in component)
        if step in seen:
            return " -> ".join([*path[path.index(step) :], step])
        path.append(step)
        seen.add(step)


def test_graph_reader_sees_relative_and_deferred_imports():
    graph = import_graph()
    # Relative `from ._x import y` at module level.
    assert "specsim._throughput" in graph["specsim"]
    # `from . import sub` resolves to the submodule, not to the package.
    assert "specsim.hardware" in graph["specsim"]
    assert "specsim.theory" in graph["specsim"]
    assert "specsim" not in graph["specsim.theory"]


def test_no_new_import_cycles():
    graph = import_graph()
    found = strongly_connected(graph)
    new = [c for c in found if c not in KNOWN_CYCLES]
    gone = [c for c in KNOWN_CYCLES if c not in found]
    assert not new, "new import cycle(s) inside specsim: " + "; ".join(
        _one_cycle(graph, c) for c in new
    )
    assert not gone, f"cycle(s) {gone} no longer exist: delete them from KNOWN_CYCLES in {__file__}"


def test_tarjan_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert strongly_connected(graph) == [{"a", "b", "c"}]
    assert _one_cycle(graph, {"a", "b", "c"}) == "a -> b -> c -> a"


def test_import_specsim_does_not_import_matplotlib():
    code = "import sys, specsim; print('matplotlib' in sys.modules)"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    assert out.stdout.strip() == "False"


# The layers of docs/design.md, lowest first. A module may import its own layer and the
# layers below it, never one above. A module matches the longest prefix listed; a new
# module must be placed here (the test says so) rather than fall through.
LAYERS = (
    (
        "foundation",
        (
            "specsim._numerics",
            "specsim._registry",
            "specsim._schema",
            "specsim._errors",
            "specsim._limits",
            "specsim._atomic",
            "specsim._progress",
            "specsim._executable_cache",
            "specsim._compilation_cache",
            "specsim._scaling",
            "specsim._lambertw",
            "specsim._dataflow",
            "specsim._inline",
            "specsim._fast_jit",
            "specsim._reduce",
            "specsim.limits",
            "specsim.messages",
            "specsim.outputs",
        ),
    ),
    ("catalogues", ("specsim.hardware", "specsim.models", "specsim.runtime", "specsim.theory")),
    (
        "physics",
        (
            "specsim._cost",
            "specsim._quadrature",
            "specsim._workload",
            "specsim._acceptance",
            "specsim._tree",
            "specsim._measured_acceptance",
            "specsim._plausibility",
        ),
    ),
    (
        "deployment",
        (
            "specsim._deployment",
            "specsim._feasibility",
            "specsim.feasibility",
            "specsim.speculators",
        ),
    ),
    ("prediction", ("specsim._throughput", "specsim._evaluator", "specsim._saturation")),
    (
        "search and batches",
        (
            "specsim._draft",
            "specsim._optimize",
            "specsim._tree_search",
            "specsim._sweep_kernel",
            "specsim._sweep_result",
            "specsim._sweep",
            "specsim._method_sweep",
            "specsim._schedule",
            "specsim.engines",
            "specsim.serving",
        ),
    ),
    (
        "reality checks",
        ("specsim.measure", "specsim._calibrate", "specsim._local_calibration", "specsim.validate"),
    ),
    ("shells", ("specsim.cli", "specsim.plot")),
)


def _layer(module):
    """Index in `LAYERS` of a module, by its longest matching prefix (None: unplaced)."""
    best, found = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (
                module == prefix
                or module.startswith(prefix + ".")
                or (module.startswith(prefix + "_") and prefix.rpartition(".")[2].startswith("_"))
            ) and len(prefix) > best:
                best, found = len(prefix), index
    return found


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in import_graph() if m != "specsim" and _layer(m) is None)
    assert not unplaced, f"place {unplaced} in LAYERS of {__file__} (and docs/design.md)"


def test_imports_flow_down_the_layers():
    graph = import_graph()
    upward = []
    for module, targets in graph.items():
        if module == "specsim":  # the package re-exports every layer
            continue
        for target in targets - {"specsim"}:
            low, high = _layer(module), _layer(target)
            if None not in (low, high) and high > low:
                upward.append(f"{module} ({LAYERS[low][0]}) imports {target} ({LAYERS[high][0]})")
    assert not upward, "imports going up a layer: " + "; ".join(sorted(upward))


def _private_names(module: str, is_package: bool, source: str, package: str) -> list[str]:
    """The private specsim names one module's source imports (see `private_imports`)."""
    here = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            pairs = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            pairs = [(base, alias.name) for alias in node.names]
        else:
            continue
        for base, name in pairs:
            if base != "specsim" and not base.startswith("specsim."):
                continue  # another library
            if base == package or base.startswith(package + "."):
                continue  # the package's own modules are its business
            what = base if name is None else f"{base}.{name}"
            if any(part.startswith("_") for part in what.split(".")):
                found.append(what)
    return found


def private_imports(package: str = "specsim.cli") -> list[tuple[str, str]]:
    """``(module, name)`` for each private specsim name that ``package``'s modules import.

    Private: a module of ``specsim`` outside ``package`` with a component starting with
    ``_`` (``specsim._sweep``, ``specsim.engines._plan``), or a name starting with ``_``
    imported from one (``from specsim import _atomic``), at module level or inside a
    function. A package's own private modules (``specsim.cli._args``) are its business.
    """
    found = []
    for name, path in _module_names().items():
        if name == package or name.startswith(package + "."):
            for what in _private_names(name, path.name == "__init__.py", path.read_text(), package):
                found.append((name, what))
    return found


def test_private_import_reader_sees_every_form():
    source = """
import specsim._sweep
from specsim import _atomic, sweep
from specsim.engines._plan import placeholder
from .._errors import relabel
from ._args import load_target
from specsim.hardware import get
import numpy._core

def f():
    from specsim._limits import MAX_BATCH
"""
    found = _private_names("specsim.cli.sweep", False, source, "specsim.cli")
    assert sorted(found) == [
        "specsim._atomic",
        "specsim._errors.relabel",
        "specsim._limits.MAX_BATCH",
        "specsim._sweep",
        "specsim.engines._plan.placeholder",
    ]


def test_cli_uses_only_the_public_api():
    """The command line is a shell over the public API (docs/design.md): it imports no
    private module or name of specsim outside ``specsim.cli``."""
    found = private_imports("specsim.cli")
    assert not found, "specsim.cli imports private names: " + "; ".join(
        f"{module} imports {what}" for module, what in sorted(set(found))
    )
