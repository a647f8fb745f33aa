"""`GET /openapi.json`: OpenAPI 3.1 of the HTTP API, built from the package's JSON
Schemas (`agent_executor/schemas/*.json`, the same files as docs/schemas/).

Each schema file becomes a component named by its title, each of its `$defs` a
component `Title.Def`, and every `$ref` is rewritten to point at them, so the
document is self-contained. The paths are listed here, next to the routes of
app.py; a test keeps both equal.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from agent_executor.adapters.http.openapi_paths import PATHS, component_schemas

SCHEMA_FILES: tuple[str, ...] = ("job.json", "agent_definition.json", "result.json",
                                 "stream_event.json", "job_record.json")
_REF = "#/components/schemas/"


def package_schemas() -> dict[str, dict[str, Any]]:
    """Every package schema by file name, as published under docs/schemas/."""
    folder = resources.files("agent_executor").joinpath("schemas")
    return {name: json.loads(folder.joinpath(name).read_text(encoding="utf-8"))
            for name in SCHEMA_FILES}


@functools.cache
def openapi_document() -> bytes:
    return json.dumps(openapi_spec(), separators=(",", ":")).encode()


def openapi_spec() -> dict[str, Any]:
    schemas = package_schemas()
    titles = {name: schema["title"] for name, schema in schemas.items()}
    components: dict[str, Any] = {}
    for name, schema in schemas.items():
        title = titles[name]
        body = {k: v for k, v in schema.items() if k not in ("$schema", "$id", "$defs")}
        components[title] = _rewrite(body, name, titles)
        for def_name, definition in schema.get("$defs", {}).items():
            components[f"{title}.{def_name}"] = _rewrite(definition, name, titles)
    components.update(component_schemas())
    return {
        "openapi": "3.1.0",
        "info": {"title": "agent-executor", "version": _version(),
                 "description": "Runs LangGraph deep agents as durable jobs from CloudEvents "
                                "over HTTP and NATS JetStream. The contract: docs/api.md; the "
                                "NATS side: docs/asyncapi.yaml."},
        "paths": PATHS,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "Required on every route but /health, /ready and /metrics "
                               "when API_TOKENS is set."}},
        },
        "security": [{"bearer": []}],
    }


def _rewrite(node: Any, here: str, titles: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (_target(v, here, titles) if k == "$ref" and isinstance(v, str)
                    else _rewrite(v, here, titles)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(item, here, titles) for item in node]
    return node


def _target(ref: str, here: str, titles: dict[str, str]) -> str:
    """`#/$defs/X`, `other.json` or `other.json#/$defs/X` to its component."""
    file, _, pointer = ref.partition("#")
    title = titles[file or here]
    if not pointer:
        return _REF + title
    if not pointer.startswith("/$defs/") or pointer.count("/") != 2:
        raise ValueError(f"{here}: unsupported $ref {ref!r}")
    return f"{_REF}{title}.{pointer.removeprefix('/$defs/')}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("agent-executor")
    except PackageNotFoundError:
        return "0"
