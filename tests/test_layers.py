"""The package's layers: a lower layer never imports a higher one (DESIGN.md, "data flows one way").

Every import of a robustal module, at the top of a file or inside a function, is checked; a new
top-level module or package must be given its layer here.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "robustal"
# lowest first; modules on one line are one layer and may import each other
LAYERS = [
    ("robustal", "errors"),
    ("seeding", "outputs", "rundir"),
    ("runtime",),
    ("accel",),  # execution settings and speed code: below everything that computes
    ("data",),
    ("models",),
    ("attacks",),
    ("training", "evaluation", "autoattack"),
    ("acquisition",),
    ("config", "presets"),
    ("loop",),
    ("retraining",),
    ("experiments", "label"),
    ("report",),
    ("cli", "__main__"),
]
LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def part_of(module: str) -> str:
    """The top-level module or package of a dotted robustal module name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "robustal"


def module_name(path: Path) -> str:
    """The dotted name of the module in `path` (a package's ``__init__.py``: the package)."""
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def robustal_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every robustal module `path` imports, relative imports resolved."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "robustal"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.append((node.lineno, f"{base}.{node.module}" if node.module else base))
            elif node.module and node.module.split(".")[0] == "robustal":
                found.append((node.lineno, node.module))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_the_package_has_a_layer():
    parts = {part_of(module_name(path)) for path in MODULES}
    assert parts - LAYER.keys() == set(), "give these modules a layer in tests/test_layers.py"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_reaches_a_higher_layer(path):
    importer = part_of(module_name(path))
    upward = [
        f"line {line}: {module} (layer {LAYER[part_of(module)]} > {LAYER[importer]})"
        for line, module in robustal_imports(path)
        if LAYER.get(part_of(module), -1) > LAYER[importer]
    ]
    assert not upward, f"{importer} imports a higher layer: " + "; ".join(upward)


def test_the_check_sees_an_upward_import(monkeypatch):
    # the checker itself: a data module importing the loop is caught
    fake = PACKAGE / "data" / "registry.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "from robustal.loop import run_active_learning\n")
    with pytest.raises(AssertionError, match=r"data imports a higher layer: line 1: robustal.loop"):
        test_no_import_reaches_a_higher_layer(fake)
