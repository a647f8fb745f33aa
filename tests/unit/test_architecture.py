"""The walls of the hexagon (STYLE.md): enforced, not hoped for."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "agent_executor"
FRAMEWORKS = {"starlette", "hypercorn", "nats", "redis", "asyncpg", "psycopg", "psycopg_pool",
              "aiosqlite", "sqlite3", "langgraph", "langchain", "langchain_core", "deepagents",
              "dependency_injector", "cloudevents", "prometheus_client", "httpx"}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(*parts: str) -> list[Path]:
    return sorted((PACKAGE.joinpath(*parts)).rglob("*.py"))


def test_domain_and_ports_import_no_framework_driver_or_adapter() -> None:
    offenders = {}
    for path in modules("domain") + modules("ports"):
        bad = {name for name in imports(path)
               if name.split(".")[0] in FRAMEWORKS
               or name.startswith(("agent_executor.adapters", "agent_executor.bootstrap"))}
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert offenders == {}


def test_only_bootstrap_imports_adapters_from_outside_them() -> None:
    outside = [p for p in PACKAGE.rglob("*.py") if "adapters" not in p.relative_to(PACKAGE).parts]
    offenders = sorted(str(p.relative_to(PACKAGE)) for p in outside
                       if p.name != "bootstrap.py"
                       and any(n.startswith("agent_executor.adapters") for n in imports(p)))
    assert offenders == []


def test_ports_are_protocols() -> None:
    for path in modules("ports"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                assert "Protocol" in bases, f"{path.name}:{node.name} is not a Protocol"
                assert ast.get_docstring(node), f"{path.name}:{node.name} has no contract"


def test_the_wall_check_would_catch_a_breach(tmp_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("import asyncpg\nfrom agent_executor.adapters.config import Settings\n")
    assert imports(sneaky) == {"asyncpg", "agent_executor.adapters.config"}
