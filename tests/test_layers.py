"""The package's layers point one way, read from the source's imports (every ``import``, also
those inside functions: a deferred import is still a dependency).

Layers, earliest first; a module may import its own layer and earlier ones only:

    foundation (schema, fsio, engine, arrays, names, musicrec/__init__)
    -> ingest -> store -> preprocess -> features -> models -> evaluate -> train -> bundle
    -> serve -> pipeline -> cli

and no two modules import each other, directly or round a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "musicrec"
LAYERS = ["foundation", "ingest", "store", "preprocess", "features", "models", "evaluate", "train", "bundle",
          "serve", "pipeline", "cli"]
FOUNDATION = {"musicrec", "schema", "fsio", "engine", "arrays", "names"}


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ("musicrec", *path.relative_to(SRC).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, known: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import sub` imports the submodule when there is one, else a name of pkg
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        else:
            continue
        found.update(n for n in names if n in known)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "musicrec"
    if top not in LAYERS and top not in FOUNDATION:
        raise AssertionError(f"{module}: place its package in LAYERS or FOUNDATION of {__file__}")
    return "foundation" if top in FOUNDATION else top


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(p, set(mods)) - {m} for m, p in mods.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return out


def test_no_module_imports_a_later_layer():
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = [f"{m} ({layer(m)}) imports {t} ({layer(t)})"
           for m, targets in sorted(graph().items()) for t in sorted(targets) if rank[layer(t)] > rank[layer(m)]]
    assert not bad, "back-edges:\n" + "\n".join(bad)


def test_no_import_circles():
    found = circles(graph())
    assert not found, "circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checks_can_fail():
    # a circle and a back-edge planted in a copy of the real graph are found
    edges = {m: set(t) for m, t in graph().items()}
    edges["musicrec.models.base"].add("musicrec.features.tags")
    edges["musicrec.features.tags"].add("musicrec.models.base")
    assert ["musicrec.features.tags", "musicrec.models.base"] in circles(edges)
    rank = {name: i for i, name in enumerate(LAYERS)}
    assert rank[layer("musicrec.models.base")] > rank[layer("musicrec.features.tags")]
