"""docs/asyncapi.yaml stays true: AsyncAPI 3, every reference resolves, the subjects
are the configured defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agent_executor.adapters.config import load_settings
from agent_executor.adapters.nats.publisher import REJECTED

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def _resolve(document: Any, pointer: str) -> Any:
    node = document
    for part in pointer.strip("/").split("/"):
        node = node[part]
    return node


def test_asyncapi_is_v3_and_every_reference_resolves() -> None:
    document = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    assert document["asyncapi"].startswith("3.")
    refs = _refs(document)
    assert len(refs) > 10
    for ref in refs:
        file, _, pointer = ref.partition("#")
        if file:
            assert (DOCS / file).is_file(), ref
        else:
            assert _resolve(document, pointer) is not None, ref


def test_asyncapi_subjects_are_the_defaults() -> None:
    document = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    nats = load_settings({"NATS_URL": "nats://n:4222"}).nats
    assert nats is not None
    addresses = {c["address"] for c in document["channels"].values()}
    assert nats.subject.replace("*", "{name}") in addresses
    for status in ("completed", "failed", REJECTED):
        assert f"{nats.status_subject_prefix}.{status}" in addresses
