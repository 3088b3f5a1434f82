"""The package's shape, measured: files over 500 lines, functions over 60 lines, import cycles
among its modules (module-level and function-level imports alike), and imports that go up the
layers (a module may import its own layer's and lower layers' modules only):

    0  errors, limits, registry, fileio   what every layer uses
    1  proto/      Caffe's schema and its wire and text formats
    2  graph/      the graph in the middle: Net, shapes, placeholders
    3  layers/     Caffe's layer types, one module per family
    4  caffe/, build/, view/   front ends (Caffe files, specs) and pictures; not each other
    5  backends/   PyTorch, ONNX, the passes they run, verification
    6  cli/        the command line

    python tools/architecture.py [--max-file 500] [--max-function 60]

Generated code (caffe_pb2.py) is left out. Exit status 1 when any limit is broken.
"""
import argparse
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "prototxt_gen"
GENERATED = {"caffe_pb2.py"}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in GENERATED:
            continue
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from . import caffe_pb2` imports that module; `from . import __version__`
            # reads the package's own namespace.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


LAYERS = {"errors": 0, "limits": 0, "registry": 0, "fileio": 0, "proto": 1, "graph": 2,
          "layers": 3, "caffe": 4, "build": 4, "view": 4, "importers": 4, "backends": 5,
          "cli": 6}


def layer_of(name: str) -> tuple[str, int] | None:
    """(part, rank) of a module; None for the package itself (and __main__), which sits on top."""
    part = name.split(".")[1] if "." in name else None
    return (part, LAYERS[part]) if part in LAYERS else None


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of a higher layer, or of a peer part of the same rank (caffe/ and view/...)."""
    bad = []
    for name, targets in graph.items():
        here = layer_of(name)
        if here is None:
            continue
        for t in sorted(targets - {PACKAGE.name}):  # the package itself: its __version__
            there = layer_of(t)
            if there is None or there[1] > here[1] or (
                    there[1] == here[1] and there[0] != here[0] and here[1] > 0):
                bad.append((name, t))
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def long_functions(path: Path, limit: int):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                yield node.name, node.lineno, length


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-file", type=int, default=500)
    p.add_argument("--max-function", type=int, default=60)
    args = p.parse_args(argv)
    mods = modules()
    root = PACKAGE.parent
    big = [(str(path.relative_to(root)), n) for path in mods.values()
           if (n := len(path.read_text().splitlines())) > args.max_file]
    longs = [(str(path.relative_to(root)), *f) for path in mods.values()
             for f in long_functions(path, args.max_function)]
    known = set(mods) | {f"{PACKAGE.name}.{g[:-3]}" for g in GENERATED}
    graph = {name: imports(name, path, known) & set(mods) for name, path in mods.items()}
    loops = cycles(graph)
    up = upward(graph)
    print(f"{len(mods)} modules; {len(big)} over {args.max_file} lines, {len(longs)} functions "
          f"over {args.max_function} lines, {len(loops)} import cycle(s), {len(up)} import(s) "
          "up the layers")
    for f, n in sorted(big, key=lambda x: -x[1]):
        print(f"  file {f}: {n} lines")
    for f, name, line, n in sorted(longs, key=lambda x: -x[3]):
        print(f"  function {f}:{line} {name}: {n} lines")
    for loop in loops:
        print(f"  cycle: {' <-> '.join(loop)}")
    for a, b in up:
        print(f"  upward: {a} imports {b}")
    return 1 if big or longs or loops or up else 0


if __name__ == "__main__":
    sys.exit(main())
