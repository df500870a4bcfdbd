"""The package's layers import downward only, and no module imports itself round a cycle.

Every import counts, also one inside a function: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

PACKAGE = Path(__file__).resolve().parent.parent / "openai_s2s"

# lowest first; a module may import its own layer and those below it
LAYERS: List[Tuple[str, ...]] = [
    ("native", "log"),
    ("process", "threads"),
    ("media",),
    ("realtime",),
    ("call",),
    ("control",),
    ("switch",),
    ("tools", "localserver"),
]
# what nothing in the switch may import: only these, and the command line, use them
OFF_LINE = ("tools", "localserver")


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE) -> Set[str]:
    """The package modules ``path`` imports, anywhere in it, as dotted names."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == root.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root.name:
                continue
            for alias in node.names:   # `from . import x` names a module x when there is one
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate, root) else target)
    found.discard(name)
    return found


def _exists(dotted: str, root: Path) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (root / rel).with_suffix(".py").exists() or (root / rel / "__init__.py").exists()


def layer_of(dotted: str) -> Optional[int]:
    """The layer of a package module; None for the package's own entry files."""
    parts = dotted.split(".")
    if len(parts) < 2 or parts[1] == "__main__":
        return None
    for rank, names in enumerate(LAYERS):
        if parts[1] in names:
            return rank
    raise AssertionError(f"{dotted} is in no layer: add it to LAYERS")


def graph(root: Path = PACKAGE) -> Dict[str, Set[str]]:
    return {module_name(path, root): imports_of(path, root) for path in sorted(root.rglob("*.py"))}


def upward_imports(edges: Dict[str, Set[str]]) -> List[str]:
    bad = []
    for source, targets in edges.items():
        rank = layer_of(source)
        for target in targets:
            target_rank = layer_of(target)
            if target_rank is None:
                bad.append(f"{source} imports the entry module {target}")
            elif rank is not None and target_rank > rank:
                bad.append(f"{source} (layer {rank}) imports {target} (layer {target_rank})")
            elif target.split(".")[1] in OFF_LINE and (rank is None or source.split(".")[1] not in OFF_LINE) \
                    and source != "openai_s2s.__main__":
                bad.append(f"{source} imports {target}, which nothing in the switch may use")
    return sorted(bad)


def cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Each import cycle once, as the modules on it (a subpackage's __init__ counts as itself)."""
    found, state = [], {}
    stack: List[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_layers_import_downward_only():
    assert upward_imports(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_only_the_local_server_imports_websockets():
    """websockets is the localserver extra: the switch runs without it."""
    users = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            if any(name.split(".")[0] == "websockets" for name in names):
                users.append(module_name(path))
    assert users and all(name.startswith("openai_s2s.localserver") for name in users), users


def test_the_guard_sees_an_upward_import_a_cycle_and_a_lazy_import(tmp_path):
    root = tmp_path / "openai_s2s"
    for sub in ("media", "switch", "tools"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "log.py").write_text("")
    (root / "media" / "playout.py").write_text("def f():\n    from ..switch import bug\n")   # lazy, upward
    (root / "switch" / "bug.py").write_text("from ..media import playout\nfrom . import unicast\n")
    (root / "switch" / "unicast.py").write_text("from .bug import x\nimport openai_s2s.tools.install\n")
    (root / "tools" / "install.py").write_text("from ..log import log\n")
    edges = graph(root)
    assert edges["openai_s2s.media.playout"] == {"openai_s2s.switch.bug"}
    assert upward_imports(edges) == [
        "openai_s2s.media.playout (layer 2) imports openai_s2s.switch.bug (layer 6)",
        "openai_s2s.switch.unicast (layer 6) imports openai_s2s.tools.install (layer 7)"]
    assert sorted(map(tuple, cycles(edges))) == sorted([
        ("openai_s2s.media.playout", "openai_s2s.switch.bug", "openai_s2s.media.playout"),
        ("openai_s2s.switch.bug", "openai_s2s.switch.unicast", "openai_s2s.switch.bug")])
