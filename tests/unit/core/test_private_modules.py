"""Parts meet through public modules: no package of stalwart imports a private
name (``_module`` or ``_function``) of another, so each part can change its
insides without breaking a caller that neither the layering contract nor mypy
would name."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src" / "stalwart"


def _imported(tree: ast.AST) -> list[str]:
    """Every absolute dotted name ``tree`` imports (``from a.b import c`` gives a.b.c)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def _private_crossings(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        package = path.relative_to(root).parts[0].removesuffix(".py")
        for name in _imported(ast.parse(path.read_text())):
            parts = name.split(".")
            if parts[0] != "stalwart" or len(parts) < 3 or parts[1] == package:
                continue
            if any(part.startswith("_") and not part.startswith("__") for part in parts[2:]):
                found.append(f"{path.relative_to(root)} imports {name}")
    return found


def test_no_package_imports_another_packages_private_names() -> None:
    assert _private_crossings(SRC) == []


def test_the_check_finds_a_private_import_across_packages(tmp_path: Path) -> None:
    (tmp_path / "chaos").mkdir()
    (tmp_path / "chaos" / "system.py").write_text(
        "from stalwart.ha._schema import leases\nfrom stalwart.chaos._own import x\n"
    )
    (tmp_path / "ha").mkdir()
    (tmp_path / "ha" / "status.py").write_text("from stalwart.store.engine import _cache\n")

    assert _private_crossings(tmp_path) == [
        "chaos/system.py imports stalwart.ha._schema.leases",
        "ha/status.py imports stalwart.store.engine._cache",
    ]
