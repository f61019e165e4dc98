"""Dependencies point one way: models, data, losses at the bottom; the engine above them;
schemes and algorithms above the engine; the CLI and kdrun-table on top.

The engine finds schemes and algorithms through registries they fill when imported
(kdrun/engine/plugins.py), never by importing them. Every import in kdrun/ is read from
the source (function-level imports too) and checked against the layer of its module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kdrun

ROOT = Path(kdrun.__file__).parent

# (module prefix, layer); the longest matching prefix wins. Schemas of a group
# (`*.config`) are leaves any layer may read.
LAYERS = [
    ("kdrun.config.errors", 0), ("kdrun.config.bounds", 0),
    ("kdrun.models", 1), ("kdrun.data", 1), ("kdrun.losses", 1), ("kdrun.tracking", 1),
    ("kdrun.engine.config", 1),
    ("kdrun.cache", 2),
    ("kdrun.engine", 3), ("kdrun.tasks", 3), ("kdrun.config", 3),
    ("kdrun.schemes", 4), ("kdrun.algorithms", 4),
    ("kdrun.plugins", 5), ("kdrun.cli", 5), ("kdrun.report", 5), ("kdrun.__main__", 5),
    ("kdrun", 0),
]


def layer(module: str) -> int:
    matches = [(len(prefix), rank) for prefix, rank in LAYERS
               if module == prefix or module.startswith(prefix + ".")]
    return max(matches)[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every kdrun module `path` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name == "kdrun" or name.startswith("kdrun.")}


def sources() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_import_points_down_or_sideways():
    upward = []
    for path in sources():
        own = module_name(path)
        for target in imports(path):
            if layer(target) > layer(own):
                upward.append(f"{own} (layer {layer(own)}) imports {target} (layer {layer(target)})")
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def test_lower_packages_never_import_schemes_or_algorithms():
    lower = ("kdrun.engine", "kdrun.models", "kdrun.data", "kdrun.losses", "kdrun.config",
             "kdrun.cache", "kdrun.tracking", "kdrun.tasks")
    found = [f"{module_name(p)} imports {t}" for p in sources()
             if module_name(p).startswith(lower)
             for t in imports(p) if t.startswith(("kdrun.schemes", "kdrun.algorithms"))]
    assert not found, "\n".join(found)


def test_schemes_and_algorithms_do_not_import_each_other():
    found = [f"{module_name(p)} imports {t}" for p in sources()
             for own, other in (("kdrun.schemes", "kdrun.algorithms"),
                                ("kdrun.algorithms", "kdrun.schemes"))
             if module_name(p).startswith(own) for t in imports(p) if t.startswith(other)]
    assert not found, "\n".join(found)


def test_the_layer_table_catches_an_upward_import(tmp_path):
    """The check itself can fail: an engine module importing an algorithm is flagged."""
    assert layer("kdrun.engine.cell") < layer("kdrun.algorithms.multi_teacher")
    assert layer("kdrun.models.registry") < layer("kdrun.engine.loop")
    fake = tmp_path / "cell.py"
    fake.write_text("def f():\n    from kdrun.algorithms.nas import NAS\n")
    assert imports(fake) == {"kdrun.algorithms.nas"}


def test_models_data_losses_never_import_the_engine():
    bottom = ("kdrun.models", "kdrun.data", "kdrun.losses", "kdrun.tracking")
    found = [f"{module_name(p)} imports {t}" for p in sources()
             if module_name(p).startswith(bottom)
             for t in imports(p) if t.startswith(("kdrun.engine", "kdrun.cache"))]
    assert not found, "\n".join(found)
