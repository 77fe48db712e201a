"""The package's layering, read from the source (every import statement, module level or inside a function):
``models`` builds on ``physkernels``; inside ``physkernels`` the ops and layers build on the MPO, Taylor and physics
utilities, never the reverse (docs/ARCHITECTURE.md)."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "physkernels")

# package -> packages it must never import (directly or from inside a function)
FORBIDDEN = {
    "physkernels.mpo": ("physkernels.ops", "physkernels.nn", "physkernels.benchmarks", "models"),
    "physkernels.taylor": ("physkernels.ops", "physkernels.nn", "physkernels.benchmarks", "models"),
    "physkernels.physics": ("physkernels.ops", "physkernels.nn", "physkernels.benchmarks", "models"),
    "physkernels.data": ("physkernels.ops", "physkernels.nn", "physkernels.benchmarks", "models"),
    "physkernels.ops": ("physkernels.nn", "physkernels.benchmarks", "models"),
    "physkernels": ("models",),
}


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _import_statements(path: str):
    """``(source, names)`` for every import statement of ``path``, function-level ones included: ``import X`` gives
    ``(X, [])``; ``from X import a, b`` gives ``(X, [a, b])`` with X resolved to an absolute name."""
    name = _module_name(path)
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            yield source, [alias.name for alias in node.names]


def _imports(path: str) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    found = set()
    for source, names in _import_statements(path):
        found.add(source)
        found |= {f"{source}.{n}" for n in names}
    return found


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(folder, f)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_import_runs_back_up(layer):
    bad = []
    for path in _modules():
        name = _module_name(path)
        if name != layer and not name.startswith(layer + "."):
            continue
        for target in _imports(path):
            if any(target == f or target.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{name} imports {target}")
    assert not bad, bad


def test_the_resolver_sees_relative_imports():
    """The checker itself: relative imports are found and resolved to absolute module names."""
    found = _imports(os.path.join(PACKAGE, "mpo", "tensor_train.py"))
    assert "physkernels.mpo.cores" in found and "physkernels.mpo.factorization" in found
    assert _imports(os.path.join(PACKAGE, "nn", "compress.py")) >= {"physkernels.nn.mpo",
                                                                    "physkernels.mpo.factorization"}


def _module_paths() -> dict[str, str]:
    return {_module_name(path): path for path in _modules()}


def _edges(modules: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the package modules it imports: ``from X import a`` depends on X.a when that is a module, else on
    X (whose ``__init__`` defines a); ``import X.Y`` on X.Y."""
    edges = {}
    for name, path in modules.items():
        targets = set()
        for source, names in _import_statements(path):
            targets |= {f"{source}.{n}" if f"{source}.{n}" in modules else source for n in names} or {source}
        edges[name] = {t for t in targets if t in modules and t != name}
    return edges


def test_no_import_cycle():
    """No chain of imports (function-level ones included) leads from a module back to itself."""
    edges = _edges(_module_paths())
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_checker_sees_a_cycle(tmp_path, monkeypatch):
    """The checker itself: two modules importing each other (one inside a function) form a cycle."""
    package = tmp_path / "physkernels"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .a import g\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", str(tmp_path))
    monkeypatch.setattr(__import__(__name__), "PACKAGE", str(package))
    with pytest.raises(AssertionError, match="physkernels.a -> physkernels.b -> physkernels.a"):
        test_no_import_cycle()


def test_the_import_graph_has_the_known_edges():
    edges = _edges(_module_paths())
    assert "physkernels.ops._builder" in edges["physkernels.ops.cg2d"]
    assert "physkernels.ops.cg2d.reference" in edges["physkernels.ops.cg2d.cpp_backend"]
    assert "physkernels._extensions" in edges["physkernels.ops.cg2d.cpp_backend"]
    assert "physkernels.physics.ising.triton_kernels" in edges["physkernels.physics.ising.engines"]
