"""The import graph of hf_memmit: no circle between modules, and no import from a lower layer into a higher one.

Layers, highest first (docs/architecture.md): interface (cli) > workflows (tinymem, own_model, hub, bench) >
methods (tuners, unlearning, trainers) > metrics > models > data > utils/compat. Every import counts, also the
ones inside functions. The top-level `hf_memmit/__init__.py` (the public face) is exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "hf_memmit"
LAYERS = {
    "cli": 6,
    "tinymem": 5, "own_model": 5, "hub": 5, "bench": 5,
    "tuners": 4, "unlearning": 4, "trainers": 4,
    "metrics": 3,
    "models": 2,
    "data": 1,
    "utils": 0, "compat": 0,
}
EXEMPT = {"hf_memmit"}


def module_names() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ("hf_memmit", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The hf_memmit modules `name` imports (a `from package import sub` names the submodule `sub`)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules]
            targets = subs if subs and len(subs) == len(node.names) else [target, *subs]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target.startswith("hf_memmit") and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer(name: str) -> int:
    parts = name.split(".")
    if len(parts) < 2 or parts[1] not in LAYERS:
        raise ValueError(f"{name} is in no layer; add its package to LAYERS here and to docs/architecture.md")
    return LAYERS[parts[1]]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    for name in graph():
        if name not in EXEMPT:
            layer(name)


def test_no_upward_import():
    upward = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
              for a, targets in graph().items() if a not in EXEMPT
              for b in sorted(targets) if b not in EXEMPT and layer(b) > layer(a)]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    edges = {a: {b for b in targets if b not in EXEMPT} for a, targets in graph().items() if a not in EXEMPT}
    assert not cycles(edges), cycles(edges)


def test_the_checker_sees_relative_and_lazy_imports(tmp_path):
    modules = {"hf_memmit.a": tmp_path / "a.py", "hf_memmit.a.b": tmp_path / "b.py", "hf_memmit.c": tmp_path / "c.py"}
    (tmp_path / "b.py").write_text("from .. import c\n\ndef f():\n    from . import thing\n    import hf_memmit.c.x\n")
    assert imports_of("hf_memmit.a.b", tmp_path / "b.py", modules) == {"hf_memmit.c", "hf_memmit.a"}
    assert cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]
