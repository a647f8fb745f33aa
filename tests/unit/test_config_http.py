"""The HTTP server's time limits (HTTP_IDLE_TIMEOUT_SECONDS, HTTP_BODY_TIMEOUT_SECONDS)."""

from __future__ import annotations

import pytest

from agent_executor.adapters.config import ENV_VARS, ConfigError, load_settings


def test_http_timeouts_default_and_read() -> None:
    defaults = load_settings({})
    assert (defaults.http_idle_timeout_seconds, defaults.http_body_timeout_seconds) == (75, 30)
    s = load_settings({"HTTP_IDLE_TIMEOUT_SECONDS": "5", "HTTP_BODY_TIMEOUT_SECONDS": "2.5"})
    assert (s.http_idle_timeout_seconds, s.http_body_timeout_seconds) == (5, 2.5)
    assert {"HTTP_IDLE_TIMEOUT_SECONDS", "HTTP_BODY_TIMEOUT_SECONDS"} <= set(ENV_VARS)


@pytest.mark.parametrize("name", ["HTTP_IDLE_TIMEOUT_SECONDS", "HTTP_BODY_TIMEOUT_SECONDS"])
@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_bad_http_timeouts_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})
