from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_executor.adapters.config import ConfigError, check_workers, load_settings
from tests.integration.service import free_port


def test_defaults_are_the_contracts() -> None:
    s = load_settings({})
    assert (s.profile, s.host, s.port) == ("local", "0.0.0.0", 8080)
    assert (s.postgres, s.dragonfly, s.nats) == (None, None, None)
    assert (s.max_concurrent_jobs, s.job_timeout_seconds, s.max_event_bytes) == (8, 3600, 1048576)
    assert s.execute_type == "dev.my-platform.agent.execute"
    assert s.data_dir == Path(".agent-executor")


def test_production_reads_every_service() -> None:
    s = load_settings({
        "AGENT_EXECUTOR_PROFILE": "production", "POSTGRES_HOST": "db", "POSTGRES_DB": "agents",
        "POSTGRES_USER": "u", "POSTGRES_PASSWORD": "p w'd", "POSTGRES_SCHEMA": "exec",
        "DRAGONFLY_HOST": "cache", "DRAGONFLY_PASSWORD": "x", "NATS_URL": "nats://n:4222"})
    assert s.postgres is not None and s.postgres.schema == "exec"
    assert "password='p w\\'d'" in s.postgres.dsn()
    assert s.dragonfly is not None and s.dragonfly.port == 6379
    assert s.nats is not None and s.nats.consumer_group == "agent-executor-workers"
    assert s.nats.subject == "agent.execute.*" and s.nats.status_subject_prefix == "agent.status"
    assert "p w" not in repr(s) and "'x'" not in repr(s)  # secrets never in reprs


def test_production_with_nothing_names_every_missing_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"AGENT_EXECUTOR_PROFILE": "production"})
    message = str(caught.value)
    for name in ("POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD",
                 "DRAGONFLY_HOST", "NATS_URL"):
        assert name in message


@pytest.mark.parametrize(("env", "needle"), [
    ({"PORT": "abc"}, "PORT='abc'"),
    ({"PORT": "70000"}, "PORT='70000'"),
    ({"MAX_CONCURRENT_JOBS": "-1"}, "MAX_CONCURRENT_JOBS"),
    ({"MAX_CONCURRENT_JOBS": "0"}, "MAX_CONCURRENT_JOBS"),
    ({"JOB_TIMEOUT_SECONDS": "soon"}, "JOB_TIMEOUT_SECONDS"),
    ({"JOB_TIMEOUT_SECONDS": "-5"}, "JOB_TIMEOUT_SECONDS"),
    ({"MAX_EVENT_BYTES": "1e6"}, "MAX_EVENT_BYTES"),
    ({"AGENT_EXECUTOR_PROFILE": "prod"}, "AGENT_EXECUTOR_PROFILE"),
    ({"NATS_URL": "localhost:4222"}, "NATS_URL"),
    ({"POSTGRES_HOST": "db"}, "POSTGRES_DB"),
    ({"DRAGONFLY_PORT": "x"}, "DRAGONFLY_PORT"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
])
def test_invalid_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert needle in str(caught.value)


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"PORT": "abc", "MAX_CONCURRENT_JOBS": "many"})
    assert len(caught.value.problems) == 2


def test_secret_values_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"POSTGRES_HOST": "db", "POSTGRES_PORT": "hunter2"})
    assert "POSTGRES_PORT" in str(caught.value)


@pytest.mark.parametrize(("env", "names"), [
    ({"AGENT_EXECUTOR_PROFILE": "production"}, ["POSTGRES_HOST", "DRAGONFLY_HOST", "NATS_URL"]),
    ({"PORT": "abc"}, ["PORT"]),
])
def test_the_cli_exits_non_zero_naming_the_variables_without_traceback(
        env: dict[str, str], names: list[str]) -> None:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("POSTGRES_", "DRAGONFLY_", "NATS_", "AGENT_EXECUTOR_"))}
    done = subprocess.run([sys.executable, "-m", "agent_executor", "serve"],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    for name in names:
        assert name in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 4


def test_cors_origins_and_api_tokens_are_read_as_lists() -> None:
    s = load_settings({"CORS_ALLOW_ORIGINS": " https://a.example, http://localhost:3000 ,",
                       "API_TOKENS": "tok-1, tok+2/x=="})
    assert s.cors_allow_origins == ("https://a.example", "http://localhost:3000")
    assert s.api_tokens == ("tok-1", "tok+2/x==")
    assert "tok-1" not in repr(s)
    unset = load_settings({})
    assert (unset.cors_allow_origins, unset.api_tokens) == ((), ())
    assert load_settings({"CORS_ALLOW_ORIGINS": "*"}).cors_allow_origins == ("*",)


@pytest.mark.parametrize("origins", ["https://a.example/", "a.example", "https://a.example/ui",
                                     "*, https://a.example", "ftp://a.example"])
def test_a_bad_cors_origin_is_named(origins: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"CORS_ALLOW_ORIGINS": origins})
    assert str(caught.value).count("CORS_ALLOW_ORIGINS") == 1


def test_a_bad_api_token_is_named_never_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"API_TOKENS": "good-one, bad token\u00e9"})
    message = str(caught.value)
    assert "API_TOKENS=<hidden>" in message and "1 of 2" in message
    assert "bad" not in message and "good" not in message


def test_production_without_api_tokens_warns_at_start(caplog: pytest.LogCaptureFixture) -> None:
    from agent_executor.adapters import process
    settings = load_settings({
        "AGENT_EXECUTOR_PROFILE": "production", "POSTGRES_HOST": "db", "POSTGRES_DB": "a",
        "POSTGRES_USER": "u", "POSTGRES_PASSWORD": "p", "DRAGONFLY_HOST": "c",
        "NATS_URL": "nats://n:4222"})
    with caplog.at_level("WARNING"):
        process._announce(settings)
    assert [r.getMessage() for r in caplog.records if "API_TOKENS" in r.getMessage()]
    caplog.clear()
    with caplog.at_level("WARNING"):
        process._announce(dataclasses.replace(settings, api_tokens=("t",)))
        process._announce(load_settings({}))
    assert not [r for r in caplog.records if "API_TOKENS" in r.getMessage()]


def test_workers_defaults_to_one_and_reads_a_positive_integer() -> None:
    assert load_settings({}).workers == 1
    assert load_settings({"WORKERS": " 4 "}).workers == 4


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", "257"])
def test_a_bad_workers_value_is_one_line_naming_it(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"WORKERS": value})
    assert caught.value.problems == [
        f"WORKERS={value!r}: must be a whole number from 1 to 256"]


@pytest.mark.parametrize(("env", "missing"), [
    ({}, "set POSTGRES_HOST and DRAGONFLY_HOST, or WORKERS=1"),
    ({"POSTGRES_HOST": "db", "POSTGRES_DB": "a", "POSTGRES_USER": "u"},
     "set DRAGONFLY_HOST, or WORKERS=1"),
    ({"DRAGONFLY_HOST": "cache"}, "set POSTGRES_HOST, or WORKERS=1"),
])
def test_several_workers_refuse_the_embedded_stores(env: dict[str, str], missing: str) -> None:
    settings = load_settings({**env, "WORKERS": "2"})
    with pytest.raises(ConfigError) as caught:
        check_workers(settings)
    [problem] = caught.value.problems
    assert problem.startswith("WORKERS=2: more than one worker needs PostgreSQL and Dragonfly")
    assert problem.endswith(missing)


def test_several_workers_on_postgres_and_dragonfly_pass_and_one_needs_nothing() -> None:
    check_workers(load_settings({"WORKERS": "2", "POSTGRES_HOST": "db", "POSTGRES_DB": "a",
                                 "POSTGRES_USER": "u", "DRAGONFLY_HOST": "cache"}))
    check_workers(load_settings({"WORKERS": "1"}))  # embedded is fine in one process


def test_the_cli_refuses_several_embedded_workers_with_exit_2(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("POSTGRES_", "DRAGONFLY_", "NATS_", "AGENT_EXECUTOR_"))}
    done = subprocess.run([sys.executable, "-m", "agent_executor", "serve"],
                          env={**clean, "WORKERS": "2", "AGENT_EXECUTOR_DATA_DIR": str(tmp_path),
                               "PORT": str(free_port())},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "agent-executor: invalid configuration:",
        "  WORKERS=2: more than one worker needs PostgreSQL and Dragonfly (the embedded "
        "ledger, event stream and cancel broadcast live in one process); set POSTGRES_HOST "
        "and DRAGONFLY_HOST, or WORKERS=1"]
    assert not any(tmp_path.iterdir())  # refused before anything was opened
