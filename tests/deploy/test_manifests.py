"""The image and the GitOps manifests, checked without a cluster or a Docker engine.

Claims validate against the platform's published XRD schemas (PLATFORM_SCHEMAS_DIR,
default <repo>/../shared/platform; missing schemas fail the run), every secret the
service mounts is produced in the folder, the variables those secrets provide are the
ones the config adapter reads, and the NATS definitions equal the service's defaults.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agent_executor.adapters import config

REPO = Path(__file__).resolve().parents[2]
CLAIMS = REPO / "deploy" / "claims" / "intelligence-deepagents"
AWS = REPO / "deploy" / "aws"
NAMESPACE = "intelligence-deepagents"
WAVE = "argocd.argoproj.io/sync-wave"
NANOS = 1_000_000_000

# Fields Crossplane adds to every claim's spec, beside the XRD's own.
CLAIM_FIELDS = {
    "writeConnectionSecretToRef",
    "compositionRef",
    "compositionSelector",
    "compositionRevisionRef",
    "compositionRevisionSelector",
    "compositionUpdatePolicy",
    "compositeDeletePolicy",
    "publishConnectionDetailsTo",
    "resourceRef",
}
# EventDrivenService env from spec.nats (platform README).
SERVICE_NATS_ENV = {
    "NATS_URL": "url",
    "NATS_STREAM_NAME": "stream",
    "NATS_CONSUMER_GROUP": "consumer",
}

Doc = dict[str, Any]


# --- loading -------------------------------------------------------------------------


def yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def manifests() -> list[Doc]:
    return [d for p in yaml_files(CLAIMS) if p.name != "kustomization.yaml" for d in load_docs(p)]


def of_kind(kind: str) -> list[Doc]:
    return [d for d in manifests() if d.get("kind") == kind]


def one(kind: str) -> Doc:
    found = of_kind(kind)
    assert len(found) == 1, f"expected one {kind} in {CLAIMS}, found {len(found)}"
    return found[0]


def service_claim() -> Doc:
    return one("EventDrivenService")


def platform_dir() -> Path:
    default = REPO.parent / "shared" / "platform"
    return Path(os.environ.get("PLATFORM_SCHEMAS_DIR", default))


def platform_xrds() -> dict[str, Doc]:
    """Claim kind -> XRD, from the platform's published schemas; fails if absent."""
    folder = platform_dir()
    if not folder.is_dir():
        pytest.fail(
            f"platform schemas not found at {folder}: set PLATFORM_SCHEMAS_DIR to "
            "the folder holding the platform's XRD yaml files",
            pytrace=False,
        )
    xrds = {}
    for path in yaml_files(folder):
        for doc in load_docs(path):
            if doc.get("kind") == "CompositeResourceDefinition":
                xrds[doc["spec"]["claimNames"]["kind"]] = doc
    for kind in ("EventDrivenService", "PostgresInstance", "DragonflyInstance"):
        if kind not in xrds:
            pytest.fail(f"no XRD with claim kind {kind} in {folder}", pytrace=False)
    return xrds


def platform_readme() -> str:
    path = platform_dir() / "README.md"
    if not path.is_file():
        pytest.fail(f"platform README not found at {path} (PLATFORM_SCHEMAS_DIR)", pytrace=False)
    return path.read_text()


def readme_bullet(text: str, kind: str) -> str:
    """The README bullet (continuation lines joined) that starts with `kind`."""
    bullets = re.split(r"\n- ", text)
    for bullet in bullets:
        if bullet.startswith(f"`{kind}`"):
            return " ".join(bullet.split())
    pytest.fail(f"platform README has no bullet for {kind}", pytrace=False)


def conn_secret_keys(kind: str) -> set[str]:
    """Keys of the `N-conn` secret the platform creates for a claim of this kind."""
    bullet = readme_bullet(platform_readme(), kind)
    match = re.search(r"creates secret `N-conn` with keys (.*)", bullet)
    assert match, f"platform README does not list the connection keys of {kind}"
    keys = set(re.findall(r"`([A-Z0-9_]+)`", match.group(1)))
    assert keys, f"no keys parsed for {kind}"
    return keys


def wave(doc: Doc) -> int:
    annotations = doc.get("metadata", {}).get("annotations", {})
    assert WAVE in annotations, f"{doc['kind']} {doc['metadata']['name']} has no sync wave"
    return int(annotations[WAVE])


def nats_defaults() -> config.NatsSettings:
    settings = config.load_settings({"NATS_URL": "nats://localhost:4222"})
    assert settings.nats is not None
    return settings.nats


def nats_files() -> dict[str, Doc]:
    data = one("ConfigMap")["data"]
    return {name: json.loads(text) for name, text in data.items() if name.endswith(".json")}


# --- every manifest ------------------------------------------------------------------


def test_every_yaml_file_parses_into_named_resources() -> None:
    files = yaml_files(REPO / "deploy")
    assert files, "no yaml under deploy/"
    for path in files:
        docs = load_docs(path)
        assert docs, f"{path} holds no document"
        for doc in docs:
            assert isinstance(doc, dict), f"{path}: a document is not a mapping"
            if path.is_relative_to(CLAIMS):
                assert doc.get("apiVersion") and doc.get("kind"), f"{path}: apiVersion/kind"
            if path.is_relative_to(CLAIMS) and doc["kind"] != "Kustomization":
                assert doc.get("metadata", {}).get("name"), f"{path}: metadata.name"


def test_namespace_follows_layer_category_pattern() -> None:
    namespace = one("Namespace")
    labels = namespace["metadata"]["labels"]
    assert namespace["metadata"]["name"] == NAMESPACE
    assert labels["layer"] == "intelligence" and labels["category"] == "deepagents"
    assert NAMESPACE == f"{labels['layer']}-{labels['category']}"


def test_every_namespaced_resource_lives_in_the_tenant_namespace() -> None:
    for doc in manifests():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]


def test_kustomization_lists_every_yaml_file_in_the_folder() -> None:
    kustomization = yaml.safe_load((CLAIMS / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    present = {str(p.relative_to(CLAIMS)) for p in yaml_files(CLAIMS)} - {"kustomization.yaml"}
    assert len(listed) == len(set(listed)), "a file is listed twice"
    assert set(listed) == present


def test_sync_waves_order_namespace_then_backing_services_then_stream_then_service() -> None:
    stages = [
        [one("Namespace")],
        of_kind("PostgresInstance") + of_kind("DragonflyInstance") + of_kind("ExternalSecret"),
        of_kind("Job"),
        [service_claim()],
    ]
    for earlier, later in zip(stages, stages[1:], strict=False):
        assert earlier and later
        assert max(map(wave, earlier)) < min(map(wave, later)), (
            [d["metadata"]["name"] for d in earlier],
            [d["metadata"]["name"] for d in later],
        )
    configmap = one("ConfigMap")
    assert wave(one("Namespace")) < wave(configmap) < wave(stream_job())


def test_no_kubernetes_secret_is_committed() -> None:
    kinds = {d["kind"] for d in manifests()}
    assert "Secret" not in kinds, "secrets come from the platform's claims or ExternalSecrets"


# --- claims against the platform's schemas -------------------------------------------


def apply_defaults(schema: Doc, value: Any) -> Any:
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    result = dict(value)
    for name, sub in schema.get("properties", {}).items():
        if name not in result and "default" in sub:
            result[name] = copy.deepcopy(sub["default"])
        if name in result:
            result[name] = apply_defaults(sub, result[name])
    return result


def unknown_fields(schema: Doc, value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict) and "properties" in schema:
        for name, sub_value in value.items():
            if name not in schema["properties"]:
                yield f"{path}.{name}"
            else:
                yield from unknown_fields(schema["properties"][name], sub_value, f"{path}.{name}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from unknown_fields(schema["items"], item, f"{path}[{i}]")


@pytest.mark.parametrize("kind", ["EventDrivenService", "PostgresInstance", "DragonflyInstance"])
def test_claim_validates_against_the_platform_schema(kind: str) -> None:
    xrd = platform_xrds()[kind]
    claim = one(kind)
    group = xrd["spec"]["group"]
    versions = {v["name"]: v for v in xrd["spec"]["versions"]}
    api_group, _, version = claim["apiVersion"].partition("/")
    assert api_group == group, f"{kind}: apiVersion group {api_group} is not {group}"
    assert version in versions and versions[version].get("served", True), claim["apiVersion"]
    schema = versions[version]["schema"]["openAPIV3Schema"]

    spec_schema = schema["properties"]["spec"]
    spec = {k: v for k, v in claim["spec"].items() if k not in CLAIM_FIELDS}
    jsonschema.validate({"spec": apply_defaults(spec_schema, spec)}, schema)
    assert not list(unknown_fields(spec_schema, spec, "spec")), "fields the XRD does not define"


def test_database_claims_leave_the_conn_secrets_to_their_compositions() -> None:
    """The Compositions write `<claim>-conn` themselves; a claim asking Crossplane to write
    that same secret never becomes Ready (platform README)."""
    assert one("PostgresInstance")["metadata"]["name"] == "agent-executor-db"
    assert one("DragonflyInstance")["metadata"]["name"] == "agent-executor-cache"
    for kind in ("PostgresInstance", "DragonflyInstance"):
        claim = one(kind)
        name = claim["metadata"]["name"]
        ref = claim["spec"].get("writeConnectionSecretToRef", {}).get("name")
        assert ref != f"{name}-conn"
        assert f"{name}-conn" in mounted_secret_names()
        assert ref not in mounted_secret_names(), "that copy is empty: nothing may mount it"


def test_service_claim_shape() -> None:
    spec = service_claim()["spec"]
    assert service_claim()["metadata"]["name"] == "agent-executor"
    image = spec["image"]
    assert image.startswith("ghcr.io/")
    tag = image.rpartition(":")[2] if "@" not in image else image.rpartition("@")[2]
    assert "/" not in tag and tag != "latest", "deploy an immutable tag, so git revert rolls back"
    assert spec["size"] == "medium"
    assert spec["imagePullSecrets"] == [{"name": "ghcr-pull-secret"}]
    assert spec["httpPort"] == config.load_settings({}).port == 8080
    assert spec["healthPath"] == "/health" and spec["readyPath"] == "/ready"
    assert "initContainer" not in spec, "the Composition ignores it: migrations-job.yaml"
    assert [spec.get(f"secret{i}Name") for i in (1, 2, 3)] == [
        "agent-executor-db-conn",
        "agent-executor-cache-conn",
        "agent-executor-llm-keys",
    ]


# --- secrets: who produces them and what they provide ---------------------------------


def produced_secrets() -> dict[str, tuple[str, set[str]]]:
    """Secret name -> (type, keys), for every secret a manifest in the folder produces."""
    secrets: dict[str, tuple[str, set[str]]] = {}
    for kind in ("PostgresInstance", "DragonflyInstance"):
        for claim in of_kind(kind):
            secrets[f"{claim['metadata']['name']}-conn"] = ("Opaque", conn_secret_keys(kind))
    for es in of_kind("ExternalSecret"):
        target = es["spec"]["target"]
        template = target.get("template", {})
        keys = set(template.get("data", {})) or {d["secretKey"] for d in es["spec"]["data"]}
        secrets[target["name"]] = (template.get("type", "Opaque"), keys)
    return secrets


def mounted_secret_names() -> list[str]:
    spec = service_claim()["spec"]
    return [spec[f"secret{i}Name"] for i in range(1, 6) if f"secret{i}Name" in spec]


def test_every_secret_the_service_mounts_is_produced_in_the_folder() -> None:
    produced = produced_secrets()
    for name in mounted_secret_names():
        assert name in produced, f"{name} is mounted but nothing in {CLAIMS} creates it"
    for pull in service_claim()["spec"]["imagePullSecrets"]:
        secret_type, keys = produced.get(pull["name"], ("missing", set()))
        assert secret_type == "kubernetes.io/dockerconfigjson", pull["name"]
        assert keys == {".dockerconfigjson"}


def test_mounted_secrets_provide_only_variables_the_service_reads() -> None:
    produced = produced_secrets()
    provided = set().union(*(produced[n][1] for n in mounted_secret_names()))
    assert provided - set(config.ENV_VARS) == set(), "keys the config adapter never reads"
    assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= provided


def test_platform_sets_the_nats_variables_from_spec_nats() -> None:
    bullet = readme_bullet(platform_readme(), "EventDrivenService")
    for name in SERVICE_NATS_ENV:
        assert f"`{name}`" in bullet, f"platform README no longer says it sets {name}"
        assert name in config.ENV_VARS


def production_environment() -> dict[str, str]:
    """What the container sees: image ENV, the mounted secrets (dummy values) and spec.nats."""
    env = dict(dockerfile_env(final_stage()))
    for name in mounted_secret_names():
        for key in produced_secrets()[name][1]:
            env[key] = "5432" if key.endswith("_PORT") else "placeholder"
    nats = apply_defaults(
        platform_xrds()["EventDrivenService"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
            "properties"
        ]["spec"],
        service_claim()["spec"],
    )["nats"]
    env.update({var: nats[field] for var, field in SERVICE_NATS_ENV.items()})
    return env


def test_the_deployed_environment_satisfies_the_production_profile() -> None:
    settings = config.load_settings(production_environment())  # raises ConfigError if not
    assert settings.profile == "production"
    assert settings.postgres is not None and settings.dragonfly is not None
    assert settings.nats is not None
    assert settings.nats.stream_name == nats_defaults().stream_name
    assert settings.nats.consumer_group == nats_defaults().consumer_group


def test_external_secrets_read_ssm_through_the_cluster_store() -> None:
    for es in of_kind("ExternalSecret"):
        spec = es["spec"]
        assert spec["secretStoreRef"] == {
            "kind": "ClusterSecretStore",
            "name": "aws-parameter-store",
        }
        for item in spec["data"]:
            assert item["remoteRef"]["key"].startswith("/zerotouch/prod/")
        assert all("postgres" not in d["remoteRef"]["key"] for d in spec["data"]), (
            "database credentials come from the platform, never from SSM"
        )


def test_llm_keys_come_from_the_agent_executor_parameters() -> None:
    es = next(
        e
        for e in of_kind("ExternalSecret")
        if e["spec"]["target"]["name"] == "agent-executor-llm-keys"
    )
    assert {d["secretKey"]: d["remoteRef"]["key"] for d in es["spec"]["data"]} == {
        "OPENAI_API_KEY": "/zerotouch/prod/agent-executor/openai_api_key",
        "ANTHROPIC_API_KEY": "/zerotouch/prod/agent-executor/anthropic_api_key",
    }


def test_pull_secret_template_renders_docker_config_json() -> None:
    es = next(
        e for e in of_kind("ExternalSecret") if e["spec"]["target"]["name"] == "ghcr-pull-secret"
    )
    assert {d["remoteRef"]["key"].rpartition("/")[0] for d in es["spec"]["data"]} == {
        "/zerotouch/prod/agent-executor"
    }
    template = es["spec"]["target"]["template"]["data"][".dockerconfigjson"]
    used = set(re.findall(r"\.(\w+)", " ".join(re.findall(r"{{(.*?)}}", template))))
    assert used <= {d["secretKey"] for d in es["spec"]["data"]}
    rendered = json.loads(re.sub(r"{{.*?}}", "x", template))
    assert set(rendered["auths"]["ghcr.io"]) == {"username", "password", "auth"}


# --- NATS -----------------------------------------------------------------------------


def subject_matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    if p[-1] == ">":
        return len(s) >= len(p) and all(a in ("*", b) for a, b in zip(p[:-1], s, strict=False))
    return len(p) == len(s) and all(a in ("*", b) for a, b in zip(p, s, strict=True))


def test_streams_and_consumer_equal_the_service_defaults() -> None:
    defaults = nats_defaults()
    files = nats_files()
    streams = {c["name"]: c for c in files.values() if "subjects" in c}
    consumers = [c for c in files.values() if "durable_name" in c]

    execution = streams[defaults.stream_name]
    assert execution["subjects"] == [defaults.subject]

    status = streams[config.NATS_STATUS_STREAM_NAME]
    for outcome in ("completed", "failed"):
        subject = f"{defaults.status_subject_prefix}.{outcome}"
        assert any(subject_matches(p, subject) for p in status["subjects"]), subject
    assert not any(
        subject_matches(p, defaults.subject.replace("*", "x")) for p in status["subjects"]
    ), "status stream would capture job intake"
    assert status["duplicate_window"] == config.NATS_STATUS_DUPLICATE_WINDOW_SECONDS * NANOS

    assert len(consumers) == 1
    consumer = consumers[0]
    assert consumer["durable_name"] == defaults.consumer_group
    assert consumer["filter_subject"] == defaults.subject
    assert consumer["ack_policy"] == "explicit"
    assert consumer["ack_wait"] == defaults.ack_wait_seconds * NANOS
    assert consumer["ack_wait"] == config.NATS_ACK_WAIT_SECONDS * NANOS
    assert consumer["max_deliver"] == config.NATS_MAX_DELIVER == defaults.max_deliver
    assert "deliver_subject" not in consumer, "a pull consumer has no deliver subject"


def stream_job() -> Doc:
    (job,) = [j for j in of_kind("Job") if j["metadata"]["name"] == "agent-executor-nats-streams"]
    return job


def test_stream_job_applies_every_definition() -> None:
    job = stream_job()
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "Sync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == service_claim()["spec"]["image"], "python and nats-py"
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env["NATS_URL"] == service_claim()["spec"]["nats"]["url"]
    assert pod["securityContext"]["runAsNonRoot"] is True

    configmap = one("ConfigMap")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert any(
        v.get("configMap", {}).get("name") == configmap["metadata"]["name"]
        for v in volumes.values()
    )
    script = configmap["data"]["ensure_streams.py"]
    compile(script, "ensure_streams.py", "exec")
    for name in nats_files():
        assert f'"{name}"' in script, f"{name} is never applied"


def test_service_claim_uses_the_stream_and_consumer_the_job_creates() -> None:
    nats = service_claim()["spec"]["nats"]
    defaults = nats_defaults()
    assert nats["stream"] == defaults.stream_name
    assert nats["consumer"] == defaults.consumer_group


# --- AWS: SSM parameters and the External Secrets policy --------------------------------


def ssm_parameters() -> list[Doc]:
    return yaml.safe_load((AWS / "ssm-parameters.yaml").read_text())["parameters"]


def test_ssm_parameters_are_exactly_what_the_external_secrets_read() -> None:
    names = [p["name"] for p in ssm_parameters()]
    read = {d["remoteRef"]["key"] for es in of_kind("ExternalSecret") for d in es["spec"]["data"]}
    assert len(names) == len(set(names)) and set(names) == read
    for parameter in ssm_parameters():
        assert parameter["type"] == "SecureString"
        assert "value" not in parameter, "values are never committed"


def test_iam_policy_reads_exactly_those_parameters() -> None:
    text = (AWS / "external-secrets-policy.json").read_text()
    placeholders = set(re.findall(r"\$\{(\w+)\}", text))
    assert placeholders == {"AWS_REGION", "AWS_ACCOUNT_ID", "SSM_KMS_KEY_ID"}
    policy = json.loads(re.sub(r"\$\{(\w+)\}", lambda m: m.group(1).lower(), text))
    arns = {f"arn:aws:ssm:aws_region:aws_account_id:parameter{p['name']}" for p in ssm_parameters()}

    def as_list(value: Any) -> list[str]:
        return value if isinstance(value, list) else [value]

    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        statement_actions = set(as_list(statement["Action"]))
        actions |= statement_actions
        resources = as_list(statement["Resource"])
        assert not any("*" in r for r in resources + list(statement_actions))
        if statement_actions <= {"ssm:GetParameter", "ssm:GetParameters"}:
            assert set(resources) == arns
        else:
            assert statement_actions == {"kms:Decrypt"}
            condition = statement["Condition"]["StringEquals"]
            assert condition["kms:ViaService"] == "ssm.aws_region.amazonaws.com"
            assert set(as_list(condition["kms:EncryptionContext:PARAMETER_ARN"])) == arns
    assert actions == {"ssm:GetParameter", "ssm:GetParameters", "kms:Decrypt"}


# --- nothing secret in the repository ---------------------------------------------------

TOKEN_PATTERNS = {
    "OpenAI/Anthropic key": re.compile(r"\bsk-(?:ant-)?[A-Za-z0-9_-]{20,}"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
}
# `password: hunter2` or `"api_key": "..."` in a config file.
LITERAL = re.compile(
    r"""^\s*-?\s*["']?[A-Za-z0-9_.-]*(?:password|passwd|api[_-]?key|access[_-]?key|token)"""
    r"""["']?\s*[:=]\s*(?P<value>.*?)\s*,?\s*$""",
    re.IGNORECASE,
)
HARMLESS = re.compile(
    r"""^(?:["']{2}|null|~|true|false|\d+|[|>][-+]?|["']?(?:\{\{|\$\{|\$\(|<).*)$""", re.IGNORECASE
)
CONFIG_SUFFIXES = {".yaml", ".yml", ".json", ".env", ".ini", ".toml", ".cfg", ".conf"}


def repository_files() -> list[Path]:
    """Tracked files plus untracked ones that are not ignored."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot list the repository's files with git: {exc}", pytrace=False)
    return [REPO / name for name in sorted(set(out.decode().split("\0"))) if name]


def is_test_fixture(path: Path) -> bool:
    """Throwaway credentials of local test servers are not secrets."""
    relative = path.relative_to(REPO)
    return relative.parts[0] == "tests" or "test" in relative.name


def test_no_secret_value_is_committed() -> None:
    findings = []
    for path in repository_files():
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        relative = path.relative_to(REPO)
        for what, pattern in TOKEN_PATTERNS.items():
            if pattern.search(text):
                findings.append(f"{relative}: looks like a {what}")
        is_config = path.suffix in CONFIG_SUFFIXES or path.name.startswith(("Dockerfile", ".env"))
        if is_config and not is_test_fixture(path):
            for number, line in enumerate(text.splitlines(), 1):
                match = LITERAL.match(line)
                if match and match.group("value") and not HARMLESS.match(match.group("value")):
                    findings.append(f"{relative}:{number}: literal credential")
    assert not findings, "\n".join(findings)


# --- the image ----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def test_image_is_multi_stage_on_python_311_slim() -> None:
    args = dict(
        re.findall(
            r"^(\w+)=(\S+)$",
            "\n".join(rest for keyword, rest in dockerfile_instructions() if keyword == "ARG"),
            re.M,
        )
    )
    assert len(stages()) >= 2
    base = final_stage()[0][1].split()[0]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), (
        "an exact Python 3.11 slim tag (or digest), so a rebuild gets the same base")


def test_image_runs_as_non_root_uid_1000() -> None:
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users, "the runtime stage sets no USER (would run as root)"
    assert users[-1].split(":")[0] == "1000"


def test_runtime_stage_sets_production_and_holds_no_dev_tools() -> None:
    stage = final_stage()
    assert dockerfile_env(stage)["AGENT_EXECUTOR_PROFILE"] == "production"
    runtime = " ".join(rest for _, rest in stage)
    assert "pip install" not in runtime, "the runtime stage copies a built venv, installs nothing"
    assert "postgresql-client" in runtime and "rm -rf /var/lib/apt/lists/*" in runtime
    whole = " ".join(rest for _, rest in dockerfile_instructions())
    assert "[dev]" not in whole and "pytest" not in whole
    assert "--no-cache-dir" in whole
    copies = [rest for keyword, rest in stage if keyword in ("COPY", "ADD")]
    assert all(c.startswith("--from=") for c in copies), "runtime copies only from the builder"
    assert ("EXPOSE", "8080") in stage


def test_image_copies_only_package_migrations_and_ci_scripts() -> None:
    allowed = {"requirements.lock", "pyproject.toml", "README.md", "src/", "migrations/",
               "scripts/ci/"}
    for keyword, rest in dockerfile_instructions():
        if keyword in ("COPY", "ADD") and not rest.startswith("--from="):
            sources = rest.split()[:-1]
            assert set(sources) <= allowed, rest
    whole = " ".join(rest for _, rest in dockerfile_instructions())
    assert "migrations/" in whole and "scripts/ci/" in whole


def test_image_starts_the_service_through_run_sh() -> None:
    commands = [rest for keyword, rest in final_stage() if keyword in ("CMD", "ENTRYPOINT")]
    assert commands and "scripts/ci/run.sh" in commands[-1]
    script = (REPO / "scripts" / "ci" / "run.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in script
    last = [ln for ln in script.splitlines() if ln.strip() and not ln.startswith("#")][-1]
    assert last.startswith("exec agent-executor serve"), "exec, so SIGTERM reaches the service"


def dockerignored(path: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins, `!` re-includes."""
    ignored = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, p) for p in prefixes):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("tests/unit/test_config.py", True),
        (".git/HEAD", True),
        (".venv/bin/python", True),
        ("docs/deployment.md", True),
        ("deploy/claims/x.yaml", True),
        ("scripts/test.sh", True),
        ("src/agent_executor/__pycache__/x.cpython-311.pyc", True),
        ("src/agent_executor/__init__.py", False),
        ("pyproject.toml", False),
        ("migrations/0001_job_ledger.sql", False),
        ("scripts/ci/run.sh", False),
        ("requirements.lock", False),
    ],
)
def test_build_context_excludes_tests_and_caches(path: str, ignored: bool) -> None:
    assert dockerignored(path) is ignored


def test_migrations_script_runs_with_what_the_image_holds() -> None:
    script = REPO / "scripts" / "ci" / "run-migrations.sh"
    assert script.exists(), "the migrations Job runs scripts/ci/run-migrations.sh"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") or text.startswith("#!/bin/bash")
    assert "kubectl" not in text and "psql" in text
