"""Package layout: a stage package does not import another stage package's modules.

What two stages share lives in a module of ``corpus`` itself (``corpus.arxiv_ids``,
``corpus.pages``, ``corpus.repetition``...), so a stage can change its internals freely.
"""

from __future__ import annotations

import ast
from pathlib import Path

import corpus

STAGE_PACKAGES = ("ingest", "extract", "curate")
KNOWN: set[tuple[str, str]] = set()  # crossings allowed: none


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_stage_packages_do_not_import_each_other():
    root = Path(corpus.__file__).parent
    crossings = []
    for package in STAGE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for module in imported_modules(path):
                parts = module.split(".")
                if len(parts) > 1 and parts[0] == "corpus" and parts[1] in STAGE_PACKAGES and parts[1] != package:
                    if (package, module) not in KNOWN:
                        crossings.append(f"{path.relative_to(root)} imports {module}")
    assert crossings == []
