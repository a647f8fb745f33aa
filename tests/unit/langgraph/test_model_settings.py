"""MODEL_TIMEOUT_SECONDS, MODEL_MAX_RETRIES and MODEL_ALLOWED_BASE_URLS (CONTRACT section 1)."""

from __future__ import annotations

import pytest

from agent_executor.adapters.config import ENV_VARS, ConfigError, load_settings


def test_the_defaults_are_the_contracts() -> None:
    settings = load_settings({})
    assert settings.model_timeout_seconds == 120
    assert settings.model_max_retries == 2
    assert settings.model_allowed_base_urls == ()
    assert {"MODEL_TIMEOUT_SECONDS", "MODEL_MAX_RETRIES", "MODEL_ALLOWED_BASE_URLS"} <= set(
        ENV_VARS)


def test_the_values_are_read() -> None:
    settings = load_settings({"MODEL_TIMEOUT_SECONDS": "2.5", "MODEL_MAX_RETRIES": "0",
                              "MODEL_ALLOWED_BASE_URLS": " http://vllm:8000/v1 , https://llm/ "})
    assert settings.model_timeout_seconds == 2.5
    assert settings.model_max_retries == 0
    assert settings.model_allowed_base_urls == ("http://vllm:8000/v1", "https://llm/")


@pytest.mark.parametrize(("name", "value"), [
    ("MODEL_TIMEOUT_SECONDS", "0"), ("MODEL_TIMEOUT_SECONDS", "soon"),
    ("MODEL_MAX_RETRIES", "-1"), ("MODEL_MAX_RETRIES", "1.5"),
    ("MODEL_ALLOWED_BASE_URLS", "vllm:8000"), ("MODEL_ALLOWED_BASE_URLS", "http://ok,ftp://x"),
    ("MODEL_ALLOWED_BASE_URLS", "http://")])
def test_an_invalid_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    assert any(p.startswith(f"{name}=") for p in caught.value.problems)
