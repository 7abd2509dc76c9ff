"""The tree keeps the shape the README describes: no service imports another, and `shared/` imports no service."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def crossings(folder: Path, allowed_prefix: str | None) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for module in imported_modules(path):
            if module.split(".")[0] != "services" or module == "services":
                continue
            if allowed_prefix is None or not (module == allowed_prefix or module.startswith(allowed_prefix + ".")):
                found.append(f"{path.relative_to(folder.parent)} imports {module}")
    return found


def test_no_service_imports_another_service() -> None:
    services = [p for p in (ROOT / "services").iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    assert {p.name for p in services} >= {"ingest", "correlator", "enricher", "reporter", "web"}
    found = [line for service in services for line in crossings(service, f"services.{service.name}")]
    assert found == [], "\n".join(found)


def test_shared_and_examples_import_no_service() -> None:
    found = crossings(ROOT / "shared", None) + crossings(ROOT / "examples", None)
    assert found == [], "\n".join(found)


def test_the_check_sees_a_crossing(tmp_path: Path) -> None:
    # The walks above must be able to fail: a module of `web` importing the reporter is reported, its own is not.
    web = tmp_path / "web"
    web.mkdir()
    (web / "bad.py").write_text("from services.reporter import consumer\nimport services.web.api\n")
    assert crossings(web, "services.web") == [
        "web/bad.py imports services.reporter",
        "web/bad.py imports services.reporter.consumer",
    ]
