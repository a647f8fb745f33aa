"""The deploy folder as the platform runs it: what ArgoCD syncs (kubectl kustomize), and
what the platform's Compositions make of each claim (tests/deploy/render.py), checked
against what the service needs (CONTRACT section 10)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from agent_executor.adapters import config
from agent_executor.adapters.cli.args import build_parser
from agent_executor.adapters.postgres.prune import parse_duration
from tests.deploy import render
from tests.deploy.render import (
    HOOK,
    SERVICE_IMAGE,
    Doc,
    compose,
    dockerfile_env,
    image_uid,
    named,
    of_kind,
    synced,
    wave,
)

MIGRATIONS_SCRIPT = render.REPO / "scripts" / "ci" / "run-migrations.sh"
# Kubernetes' terminationGracePeriodSeconds when a pod spec sets none.
KUBERNETES_DEFAULT_GRACE = 30
# After SHUTDOWN_GRACE_SECONDS the service still naks what is left, drains NATS and exits.
DRAIN_MARGIN_SECONDS = 5


def service_claim() -> Doc:
    (claim,) = of_kind("EventDrivenService")
    return claim


def deployment() -> Doc:
    (found,) = render.composed_of_kind("Deployment", [service_claim()])
    return found


def pod_spec(workload: Doc) -> Doc:
    template = workload["spec"].get("jobTemplate", workload)["spec"]["template"]
    spec: Doc = template["spec"]
    return spec


def image_workloads() -> list[Doc]:
    """Every Job and CronJob that runs the service image."""
    return [w for w in of_kind("Job") + of_kind("CronJob")
            if any(c["image"].startswith(SERVICE_IMAGE + ":")
                   for c in pod_spec(w)["containers"])]


def migrations_jobs() -> list[Doc]:
    return [j for j in of_kind("Job")
            if any("run-migrations.sh" in " ".join(c.get("command", []) + c.get("args", []))
                   for c in pod_spec(j)["containers"])]


def postgres_conn_secret() -> str:
    (claim,) = of_kind("PostgresInstance")
    (secret,) = render.composed_of_kind("Secret", [claim])
    name: str = secret["metadata"]["name"]
    return name


# --- what ArgoCD syncs ---------------------------------------------------------------


def test_kustomize_renders_every_file_of_the_folder() -> None:
    kustomization = yaml.safe_load((render.CLAIMS / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    present = {str(p.relative_to(render.CLAIMS)) for p in render.CLAIMS.rglob("*")
               if p.is_file()} - {"kustomization.yaml"}
    assert len(listed) == len(set(listed)), "a file is listed twice"
    assert set(listed) == present, "every file in the folder is a kustomization resource"
    rendered = render.kustomize()
    assert len(rendered) == sum(
        len([d for d in yaml.safe_load_all((render.CLAIMS / f).read_text()) if d])
        for f in listed)


def test_the_namespace_is_a_platform_tenant() -> None:
    (namespace,) = of_kind("Namespace")
    assert namespace["metadata"]["labels"]["zerotouch.io/tenant"] == "agent-executor"
    options = namespace["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
    assert {"Prune=false", "Delete=false"} <= set(options.split(","))


# --- claims become Ready ---------------------------------------------------------------


def test_every_claim_composes_and_becomes_ready() -> None:
    """A claim whose writeConnectionSecretToRef names a secret its Composition writes is
    refused by Crossplane ("refusing to modify uncontrolled secret"): never Ready."""
    claims = render.claims()
    assert {c["kind"] for c in claims} == {
        "EventDrivenService", "PostgresInstance", "DragonflyInstance"}
    for claim in claims:
        composed = compose(claim)  # raises RenderError on a required field left unset
        written = {c.manifest["metadata"]["name"] for c in composed
                   if c.manifest["kind"] == "Secret"}
        ref = claim["spec"].get("writeConnectionSecretToRef", {}).get("name")
        assert ref not in written, (
            f"{claim['kind']} {claim['metadata']['name']} asks Crossplane to write {ref}, "
            "which its Composition writes itself: the claim would never become Ready")


def test_no_workload_mounts_a_claim_connection_copy() -> None:
    """The Compositions publish no connection details: writeConnectionSecretToRef's secret
    stays empty, so nothing may read it."""
    copies = {c["spec"]["writeConnectionSecretToRef"]["name"] for c in render.claims()
              if "writeConnectionSecretToRef" in c["spec"]}
    for workload in [deployment(), *image_workloads()]:
        for container in pod_spec(workload)["containers"]:
            mounted = {e["secretRef"]["name"] for e in container.get("envFrom", [])}
            assert not mounted & copies, workload["metadata"]["name"]


# --- migrations before the service takes jobs -------------------------------------------


def test_migrations_run_as_a_sync_hook_between_the_database_and_the_service() -> None:
    (job,) = migrations_jobs()
    annotations = job["metadata"]["annotations"]
    assert annotations[HOOK] == "Sync"
    (postgres,) = of_kind("PostgresInstance")
    assert wave(postgres) < wave(job) < wave(service_claim())
    spec = job["spec"]
    assert spec["backoffLimit"] >= 1 and spec["ttlSecondsAfterFinished"] > 0
    (container,) = pod_spec(job)["containers"]
    assert container["image"] == service_claim()["spec"]["image"]
    assert [e["secretRef"]["name"] for e in container["envFrom"]] == [postgres_conn_secret()]
    assert not container["envFrom"][0]["secretRef"].get("optional", False), (
        "an optional secret would let the script start without credentials")


def test_migrations_wait_long_enough_for_a_database_being_created() -> None:
    (job,) = migrations_jobs()
    (container,) = pod_spec(job)["containers"]
    (variable,) = re.findall(r"\$\{(MIGRATIONS_WAIT_\w+):-", MIGRATIONS_SCRIPT.read_text())
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    wait = int(env[variable])
    assert wait >= 600, "a new CNPG cluster takes minutes before it accepts connections"
    assert job["spec"]["activeDeadlineSeconds"] > wait


def test_the_service_relies_on_no_init_container() -> None:
    assert "initContainer" not in service_claim()["spec"], "the Composition ignores it"
    assert "initContainers" not in pod_spec(deployment())


# --- what the service's pod gets --------------------------------------------------------


def claim_chosen_secrets() -> list[str]:
    spec = service_claim()["spec"]
    return [spec[f"secret{i}Name"] for i in range(1, 6) if f"secret{i}Name" in spec]


def pod_environment(container: Doc) -> dict[str, str]:
    """What the container sees: the image's ENV, its env, and its envFrom secrets' keys."""
    env = dict(dockerfile_env())
    produced = render.produced_secrets()
    for source in container.get("envFrom", []):
        name = source["secretRef"]["name"]
        if name in produced:
            for key in produced[name][1]:
                env[key] = "5432" if key.endswith("_PORT") else "placeholder"
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def test_every_env_from_secret_exists_with_keys_the_config_reads() -> None:
    produced = render.produced_secrets()
    (container,) = pod_spec(deployment())["containers"]
    for source in container["envFrom"]:
        name = source["secretRef"]["name"]
        if name in claim_chosen_secrets():
            assert name in produced, f"{name} is mounted but nothing creates it"
            assert produced[name][1] <= set(config.ENV_VARS), (
                f"{name} has keys the service never reads: "
                f"{sorted(produced[name][1] - set(config.ENV_VARS))}")
        else:
            assert source["secretRef"].get("optional") is True, f"unused slot {name}"
    settings = config.load_settings(pod_environment(container))  # ConfigError if incomplete
    assert settings.profile == "production"
    assert settings.postgres and settings.dragonfly and settings.nats
    assert settings.openai_api_key and settings.anthropic_api_key


def test_jobs_mount_secrets_that_exist() -> None:
    produced = render.produced_secrets()
    for workload in image_workloads():
        for container in pod_spec(workload)["containers"]:
            for source in container.get("envFrom", []):
                assert source["secretRef"]["name"] in produced, workload["metadata"]["name"]
    prune = [w for w in image_workloads() if w["kind"] == "CronJob"]
    for workload in [*migrations_jobs(), *prune]:
        (container,) = pod_spec(workload)["containers"]
        env = pod_environment(container)
        assert {"POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER"} <= set(env)


def test_image_pull_secret_is_present_and_made_by_an_external_secret() -> None:
    by_external_secret = {
        es["spec"]["target"]["name"]: es["spec"]["target"].get("template", {}).get("type")
        for es in of_kind("ExternalSecret")}
    pulls = pod_spec(deployment()).get("imagePullSecrets", [])
    assert pulls, "the image is private: the Deployment needs a pull secret"
    for pull in pulls:
        assert by_external_secret.get(pull["name"]) == "kubernetes.io/dockerconfigjson"
    for workload in image_workloads():
        assert pod_spec(workload).get("imagePullSecrets") == pulls, workload["metadata"]["name"]


def test_probes_use_the_service_paths_and_port() -> None:
    (container,) = pod_spec(deployment())["containers"]
    port = config.load_settings({}).port
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port}
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert pod_environment(container)["PORT"] == str(port)


def test_pods_run_as_the_image_user() -> None:
    for workload in [deployment(), *image_workloads()]:
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsUser"] == image_uid(), workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True


def test_shutdown_grace_fits_in_the_pod_termination_grace() -> None:
    spec = pod_spec(deployment())
    grace = spec.get("terminationGracePeriodSeconds", KUBERNETES_DEFAULT_GRACE)
    (container,) = spec["containers"]
    settings = config.load_settings(pod_environment(container))
    assert settings.shutdown_grace_seconds + DRAIN_MARGIN_SECONDS <= grace, (
        f"SHUTDOWN_GRACE_SECONDS={settings.shutdown_grace_seconds:g} leaves less than "
        f"{DRAIN_MARGIN_SECONDS}s of the pod's {grace}s to nak, drain and exit")


def test_keda_scales_the_deployment_on_the_consumer_the_stream_job_makes() -> None:
    (scaled,) = render.composed_of_kind("ScaledObject", [service_claim()])
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment()["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    configmap = named("ConfigMap", "agent-executor-nats-streams")["data"]
    consumer = yaml.safe_load(configmap["agent-executor-workers.consumer.json"])
    stream = yaml.safe_load(configmap["agent-execution.stream.json"])
    assert trigger["type"] == "nats-jetstream"
    assert (trigger["metadata"]["stream"], trigger["metadata"]["consumer"]) == (
        stream["name"], consumer["durable_name"])
    env = pod_environment(pod_spec(deployment())["containers"][0])
    nats = config.load_settings(env).nats
    assert nats is not None
    assert (nats.stream_name, nats.consumer_group) == (stream["name"], consumer["durable_name"])


def platform_sizes() -> dict[str, Doc]:
    """size -> {requests, limits} as the EventDrivenService Composition maps it."""
    composition = render.composition_for("XEventDrivenService")
    (deploy,) = [r for r in composition["spec"]["resources"] if r["name"] == "deployment"]
    sizes: dict[str, Doc] = {}
    for patch in deploy["patches"]:
        if patch.get("fromFieldPath") == "spec.size":
            *_, kind, resource = patch["toFieldPath"].split(".")
            for size, value in patch["transforms"][0]["map"].items():
                sizes.setdefault(size, {}).setdefault(kind, {})[resource] = value
    assert set(sizes) == {"micro", "small", "medium", "large"}
    return sizes


def test_jobs_request_resources_of_a_platform_size() -> None:
    sizes = list(platform_sizes().values())
    for workload in image_workloads():
        for container in pod_spec(workload)["containers"]:
            assert container["resources"] in sizes, workload["metadata"]["name"]
    (container,) = pod_spec(deployment())["containers"]
    assert container["resources"] == platform_sizes()[service_claim()["spec"]["size"]]


def test_every_workload_runs_the_same_image_tag() -> None:
    text = "\n".join(yaml.safe_dump(d) for d in synced())
    tags = set(re.findall(re.escape(SERVICE_IMAGE) + r":([A-Za-z0-9_.-]+)", text))
    assert len(tags) == 1, f"the service, its Jobs and CronJob must run one tag: {tags}"
    assert len(image_workloads()) == 3, "migrations, streams and prune run the service image"


def test_prune_cronjob_runs_a_valid_prune_command() -> None:
    (cronjob,) = of_kind("CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert HOOK not in cronjob["metadata"].get("annotations", {})
    assert wave(cronjob) > wave(service_claim())
    (container,) = pod_spec(cronjob)["containers"]
    command = container["command"]
    assert command[0] == "agent-executor"
    args = build_parser().parse_args(command[1:])
    assert args.command == "prune"
    assert parse_duration(args.older_than).days >= 7, "keep jobs longer than NATS keeps them"
    settings = config.load_settings(pod_environment(container))
    assert settings.postgres is not None


def test_stream_job_runs_before_the_service_with_its_nats_url() -> None:
    job = named("Job", "agent-executor-nats-streams")
    assert job["metadata"]["annotations"][HOOK] == "Sync"
    configmap = named("ConfigMap", "agent-executor-nats-streams")
    assert wave(configmap) < wave(job) < wave(service_claim())
    (container,) = pod_spec(job)["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["NATS_URL"] == service_claim()["spec"]["nats"]["url"]
    assert container["command"] == ["python", f"{env['STREAMS_CONFIG_DIR']}/ensure_streams.py"]


@pytest.mark.parametrize("path", sorted(Path(render.CLAIMS).rglob("*.yaml")),
                         ids=lambda p: str(p.relative_to(render.CLAIMS)))
def test_every_synced_resource_has_a_sync_wave(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] != "Kustomization":
            assert render.WAVE in doc["metadata"].get("annotations", {}), path.name
