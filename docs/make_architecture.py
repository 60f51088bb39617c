"""Draw derainzoo's module graph from the code: which module imports which.

    python docs/make_architecture.py          # rewrites docs/assets/architecture.mmd

The diagram (Mermaid) is included by ``docs/architecture.md``; ``tests/test_architecture.py``
checks that it is current and that the graph has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "derainzoo"
DIAGRAM = Path(__file__).resolve().parent / "assets" / "architecture.mmd"
# Subpackages drawn as one box each: their insides are one concern (building blocks, data, training).
GROUPED = ("derainzoo.layers", "derainzoo.data", "derainzoo.training")


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name of every module of the package under ``root``."""
    return {
        ".".join(("derainzoo", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): path
        for path in sorted(root.rglob("*.py"))
    }


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, from every import statement (module level
    and inside functions). ``from package import submodule`` counts as importing the submodule."""
    modules = module_files(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            imported |= {target for target in targets if target in modules and target != name}
        graph[name] = imported
    return graph


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """Modules that can reach themselves through imports. A package importing its own
    submodules to re-export them (``derainzoo`` -> ``derainzoo.models``) is not counted."""

    def reachable(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for target in graph[stack.pop()]:
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        return seen

    return sorted(
        name
        for name in graph
        if name in reachable(name) and not any(other.startswith(name + ".") for other in graph[name])
    )


def _box(name: str) -> str:
    return next((group for group in GROUPED if name == group or name.startswith(group + ".")), name)


def mermaid(graph: dict[str, set[str]]) -> str:
    """The graph as a Mermaid flowchart, subpackages of ``GROUPED`` drawn as one box, the
    package's own ``__init__`` (which only re-exports) left out."""
    edges = sorted(
        {
            (_box(source), _box(target))
            for source, targets in graph.items()
            for target in targets
            if source != "derainzoo" and _box(source) != _box(target)
        }
    )
    lines = ["flowchart LR"]
    lines += [f"    {a.replace('.', '_')}[{a}] --> {b.replace('.', '_')}[{b}]" for a, b in edges]
    return "\n".join(lines) + "\n"


def main() -> None:
    DIAGRAM.write_text(mermaid(import_graph()))
    print(f"wrote {DIAGRAM}")


if __name__ == "__main__":
    main()
