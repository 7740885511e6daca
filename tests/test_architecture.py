"""The package's architecture, checked on its import graph (parsed with ``ast``; nothing is imported).

* every import goes to the importer's own layer or below (:data:`LAYERS`, the table of docs/ARCHITECTURE.md);
* no import cycle between modules, and none between the top-level packages;
* the top level of ``marker_excite/`` holds only the entry points and the shared basics;
* every package's ``__init__`` docstring says what it may import, and docs/ARCHITECTURE.md shows :data:`LAYERS`.

Every ``import marker_excite...`` / ``from marker_excite... import ...`` counts, at module level and inside
functions alike (a deferred import is still a dependency). Imports of a package's own ``__init__``
(``from marker_excite.data import store`` imports the module ``data.store``; ``from marker_excite import
__version__`` imports the root ``__init__``) are resolved to the module that provides the name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = "marker_excite"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / ROOT

#: The layers, bottom -> top: a module may import only modules of its own layer or of a layer below.
#: Entries are the names directly under marker_excite/ (a package, or a top-level module without .py).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "progress", "atomic", "config", "tf_quiet", "presets"),  # the shared basics
    ("contract", "__init__"),  # what a model is; the package root (__version__, MarkerPanel) sits on it
    ("data", "layers", "models", "analysis"),
    ("runs",),
    ("sharing",),
    ("inference",),
    ("training",),
    ("experiments",),
    ("commands", "cli", "demo", "__main__"),  # the entry points
)
#: The only top-level modules: the entry points and the shared basics.
TOP_LEVEL_MODULES: frozenset[str] = frozenset({"__init__", "__main__", "cli", "demo", *LAYERS[0]})


@dataclass(frozen=True)
class Import:
    """One import of a package module by another: ``source`` (file ``path``, line ``line``) -> ``target``."""

    source: str
    target: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.source} -> {self.target}"


def module_name(path: Path, package_dir: Path) -> str:
    """``marker_excite/data/store.py`` -> ``marker_excite.data.store``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def component(module: str) -> str:
    """The top-level name a module belongs to (``data`` for ``marker_excite.data.phantom.cells``;
    ``__init__`` for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_graph(package_dir: Path = PACKAGE_DIR) -> tuple[set[str], list[Import]]:
    """The package's modules and every import between them (module level and function-local)."""
    files = {module_name(p, package_dir): p for p in sorted(package_dir.rglob("*.py"))}
    root = package_dir.name
    imports: list[Import] = []
    for source, path in files.items():
        shown = str(path.relative_to(package_dir.parent))
        is_package = path.name == "__init__.py"
        nodes = [n for n in ast.walk(ast.parse(path.read_text(), filename=shown)) if isinstance(n, ast.stmt)]
        for node in sorted(nodes, key=lambda n: n.lineno):
            for target in _targets(node, source, is_package, set(files)):
                if target == root or target.startswith(root + "."):
                    imports.append(Import(source, target, shown, node.lineno))
    return set(files), imports


def _targets(node: ast.AST, source: str, is_package: bool, modules: set[str]) -> Iterable[str]:
    """The modules an ``import`` / ``from ... import`` node loads names from."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield _providing(alias.name, modules)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the importer's package
            package = source.split(".") if is_package else source.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([base] if base else [])])
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            yield submodule if submodule in modules else _providing(base, modules)


def _providing(dotted: str, modules: set[str]) -> str:
    """The longest prefix of ``dotted`` that is a module (``a.b.c`` where ``a.b`` is a module -> ``a.b``)."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return dotted


def layer_of(name: str, layers: Sequence[Sequence[str]] = LAYERS) -> int:
    """The index of the layer holding top-level name ``name``; KeyError for a name in no layer."""
    for i, names in enumerate(layers):
        if name in names:
            return i
    raise KeyError(name)


def upward_imports(imports: Iterable[Import], layers: Sequence[Sequence[str]] = LAYERS) -> list[str]:
    """One line per import that goes to a higher layer (or from/to a name that is in no layer)."""
    problems = []
    for imp in imports:
        source, target = component(imp.source), component(imp.target)
        try:
            if layer_of(target, layers) > layer_of(source, layers):
                problems.append(
                    f"{imp}: layer {layer_of(source, layers)} ({source}) imports layer "
                    f"{layer_of(target, layers)} ({target}), above it"
                )
        except KeyError as missing:
            problems.append(f"{imp}: {missing} is in no layer of LAYERS")
    return problems


def cycles(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """The strongly connected components with more than one node (or a self-loop), Tarjan's algorithm;
    each as its nodes, sorted. ``edges[a][b]`` is the import a -> b."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, {})):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component_nodes = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component_nodes.append(top)
                if top == node:
                    break
            if len(component_nodes) > 1 or node in edges.get(node, {}):
                found.append(sorted(component_nodes))

    nodes = sorted(set(edges) | {b for targets in edges.values() for b in targets})
    for node in nodes:
        if node not in index:
            visit(node)
    return found


def cycle_path(members: Sequence[str], edges: dict[str, dict[str, Import]]) -> list[str]:
    """One closed path through a strongly connected component, as the imports (``file:line a -> b``)."""
    inside = set(members)
    start = members[0]
    # breadth-first from start back to start, inside the component
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier and start not in previous:
        following = []
        for node in frontier:
            for nxt in sorted(edges.get(node, {})):
                if nxt in inside and nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    path = [start]
    while len(path) == 1 or path[-1] != start:
        path.append(previous[path[-1]])
    path.reverse()
    return [str(edges[a][b]) for a, b in zip(path, path[1:])]


def module_edges(imports: Iterable[Import]) -> dict[str, dict[str, Import]]:
    """``{source: {target: first import}}`` between distinct modules."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if imp.source != imp.target:
            edges.setdefault(imp.source, {}).setdefault(imp.target, imp)
    return edges


def package_edges(imports: Iterable[Import]) -> dict[str, dict[str, Import]]:
    """``{source component: {target component: first import}}`` between distinct top-level names."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        source, target = component(imp.source), component(imp.target)
        if source != target:
            edges.setdefault(source, {}).setdefault(target, imp)
    return edges


def cycle_report(edges: dict[str, dict[str, Import]]) -> list[str]:
    """One paragraph per cycle: its members and one closed path of imports."""
    return [
        f"cycle {' <-> '.join(members)}:\n  " + "\n  ".join(cycle_path(members, edges)) for members in cycles(edges)
    ]


# -- the package --------------------------------------------------------------------------------------------

MODULES, IMPORTS = import_graph()


def test_the_graph_is_read():
    assert "marker_excite.training.trainer" in MODULES and "marker_excite.runs.directory" in MODULES
    # a name of the package root, and an import inside a function (deferred TensorFlow), are both edges
    assert any(i.source == "marker_excite.cli" and i.target == "marker_excite" for i in IMPORTS)
    assert any(
        i.source == "marker_excite.inference.evaluation" and i.target == "marker_excite.models.metrics" for i in IMPORTS
    )
    assert len(IMPORTS) > 200


def test_every_import_goes_to_its_own_layer_or_below():
    problems = upward_imports(IMPORTS)
    assert not problems, "imports going up a layer (see LAYERS in this file and docs/ARCHITECTURE.md):\n" + "\n".join(
        problems
    )


def test_no_import_cycle_between_modules():
    problems = cycle_report(module_edges(IMPORTS))
    assert not problems, "import cycles:\n" + "\n".join(problems)


def test_no_import_cycle_between_packages():
    # two packages of one layer could import each other's modules without a module cycle; they may not
    problems = cycle_report(package_edges(IMPORTS))
    assert not problems, "import cycles between packages:\n" + "\n".join(problems)


def test_the_docs_show_the_same_layers():
    doc = (PACKAGE_DIR.parent / "docs" / "ARCHITECTURE.md").read_text()
    rows = [line.split("|")[1:3] for line in doc.splitlines() if re.match(r"\| \d+ \|", line)]
    shown = [tuple(n.rstrip("/") for n in re.findall(r"`([^`]+)`", names.split("(")[0])) for _, names in rows]
    assert shown == list(LAYERS), "docs/ARCHITECTURE.md's layer table differs from LAYERS"


def test_top_level_holds_only_entry_points_and_basics():
    top = {p.stem for p in PACKAGE_DIR.glob("*.py")}
    assert top <= TOP_LEVEL_MODULES, (
        f"top-level modules outside the entry points and basics: {sorted(top - TOP_LEVEL_MODULES)}"
    )
    packages = {p.parent.name for p in PACKAGE_DIR.glob("*/__init__.py")}
    in_layers = {name for names in LAYERS for name in names}
    assert packages <= in_layers, f"packages in no layer of LAYERS: {sorted(packages - in_layers)}"
    folders = {p.name for p in PACKAGE_DIR.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == packages, f"folders without __init__.py: {sorted(folders - packages)}"


def test_every_package_says_what_it_owns_and_may_import():
    for init in sorted(PACKAGE_DIR.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc, f"{init.relative_to(PACKAGE_DIR.parent)}: the docstring says what it may import"


# -- the checks themselves, on tiny made-up graphs ----------------------------------------------------------


def _imp(source: str, target: str, line: int = 1) -> Import:
    return Import(f"{ROOT}.{source}", f"{ROOT}.{target}", source.replace(".", "/") + ".py", line)


def test_an_upward_import_is_named_with_file_and_line():
    imports = [_imp("data.store", "contract.markers"), _imp("data.store", "training.trainer", line=7)]
    assert upward_imports(imports) == [
        "data/store.py:7 marker_excite.data.store -> marker_excite.training.trainer: "
        "layer 2 (data) imports layer 6 (training), above it"
    ]
    assert upward_imports([_imp("commands.train", "training.trainer"), _imp("runs.run", "models.zoo")]) == []
    assert "in no layer" in upward_imports([_imp("data.store", "newplace.x")])[0]


def test_a_cycle_is_found_and_shown_as_its_imports():
    imports = [_imp("a.x", "a.y", 3), _imp("a.y", "a.z", 4), _imp("a.z", "a.x", 5), _imp("a.z", "b.w", 6)]
    assert cycles(module_edges(imports)) == [[f"{ROOT}.a.x", f"{ROOT}.a.y", f"{ROOT}.a.z"]]
    (report,) = cycle_report(module_edges(imports))
    assert "a/x.py:3 " in report and "a/y.py:4 " in report and "a/z.py:5 " in report and "b/w" not in report
    assert cycles(module_edges([_imp("a.x", "a.y"), _imp("a.y", "b.z")])) == []
    # packages: data -> models -> data is a cycle between packages although no module cycle
    two = [_imp("data.store", "models.zoo"), _imp("models.unet", "data.tiling")]
    assert cycles(module_edges(two)) == [] and cycles(package_edges(two)) == [["data", "models"]]


def test_imports_are_read_everywhere_in_a_module(tmp_path):
    pkg = tmp_path / ROOT
    (pkg / "data").mkdir(parents=True)
    (pkg / "training").mkdir()
    for f in ("__init__.py", "data/__init__.py", "data/store.py", "training/__init__.py", "training/fit.py"):
        (pkg / f).write_text("")
    (pkg / "data" / "store.py").write_text(
        "import os\n"
        "from marker_excite import __version__\n"
        "def read():\n"
        "    from marker_excite.training import fit\n"
        "    import marker_excite.training.fit as f\n"
        "    from marker_excite.data import helper_name\n"
        "    from . import store\n"
    )
    modules, imports = import_graph(pkg)
    assert modules == {ROOT, f"{ROOT}.data", f"{ROOT}.data.store", f"{ROOT}.training", f"{ROOT}.training.fit"}
    assert [(i.target, i.line) for i in imports] == [
        (ROOT, 2),
        (f"{ROOT}.training.fit", 4),
        (f"{ROOT}.training.fit", 5),
        (f"{ROOT}.data", 6),
        (f"{ROOT}.data.store", 7),
    ]
    assert [p.split(":")[0] for p in upward_imports(imports)] == ["marker_excite/data/store.py"] * 2
