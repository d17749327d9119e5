"""The import rules of the house, read from the source: the top-level folders depend one
way (infra -> sipagent, projections -> domain), and inside infra/ each sub-package may
import only those below it. A new import that runs back up fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STDLIB_ONLY = {"domain": {"domain", "eventsourcing"}}
# Third-party libraries are allowed everywhere but in domain/; first-party ones are ruled.
FIRST_PARTY = {"domain", "projections", "sipagent", "infra", "tests", "bench"}
TOP = {
    "domain": {"domain"},
    "projections": {"projections", "domain"},
    "sipagent": {"sipagent", "domain"},
    "infra": {"infra", "sipagent", "projections", "domain"},
}
# infra's sub-packages, lowest first: each may import itself and what stands before it.
INFRA = ["config", "security", "ledger", "store", "backup", "messaging", "grpc_api", "ops",
         "notify", "web", "app", "cli"]


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def allowed_infra(importer: str, imported: str) -> bool:
    if importer not in INFRA or imported not in INFRA:
        return importer == imported
    return INFRA.index(imported) <= INFRA.index(importer)


@pytest.mark.parametrize("folder", sorted(TOP))
def test_top_level_folders_depend_one_way(folder: str) -> None:
    wrong = []
    for path in sources(folder):
        for name in imports(path):
            top = name.split(".")[0]
            if top in FIRST_PARTY and top not in TOP[folder]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_domain_imports_only_the_standard_library_and_eventsourcing() -> None:
    import sys

    wrong = []
    for path in sources("domain"):
        for name in imports(path):
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in STDLIB_ONLY["domain"]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_infra_sub_packages_import_only_those_below_them() -> None:
    wrong = []
    for path in sources("infra"):
        parts = path.relative_to(ROOT / "infra").parts
        if len(parts) < 2:
            continue  # infra/__init__.py
        importer = parts[0]
        for name in imports(path):
            segments = name.split(".")
            if segments[0] == "infra" and len(segments) > 1 and not allowed_infra(
                    importer, segments[1]):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_infra_has_no_loose_modules() -> None:
    """Everything in infra/ lives in a sub-package named for its role."""
    loose = [p.name for p in (ROOT / "infra").glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    packages = {p.name for p in (ROOT / "infra").iterdir() if (p / "__init__.py").exists()}
    unplaced = packages - set(INFRA)
    assert unplaced == set(), f"a new infra sub-package must take a place in INFRA: {unplaced}"
