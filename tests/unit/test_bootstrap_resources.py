"""Resources open in the declared order and close in reverse, also when one fails."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dependency_injector import containers, providers

from agent_executor.bootstrap import RESOURCE_ORDER, Container, open_resources

# Declared order on purpose unlike the attribute-name order dependency-injector uses.
ORDER = ("zeta", "alpha", "mid")


class Journal:
    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.entries: list[str] = []

    async def resource(self, name: str) -> AsyncIterator[str]:
        if name == self.fail_on:
            raise ConnectionError(f"{name} cannot connect")
        self.entries.append(f"open {name}")
        try:
            yield name
        finally:
            self.entries.append(f"close {name}")


def container_of(journal: Journal) -> containers.DeclarativeContainer:
    class Fakes(containers.DeclarativeContainer):
        alpha = providers.Resource(journal.resource, "alpha")
        mid = providers.Resource(journal.resource, "mid")
        zeta = providers.Resource(journal.resource, "zeta")
    return Fakes()


async def test_open_in_declared_order_close_in_reverse() -> None:
    journal = Journal()
    container = container_of(journal)
    async with open_resources(container, ORDER):
        assert journal.entries == ["open zeta", "open alpha", "open mid"]
        assert await container.alpha() == "alpha"  # type: ignore[attr-defined]
    assert journal.entries[3:] == ["close mid", "close alpha", "close zeta"]


async def test_a_failing_open_closes_what_was_opened_in_reverse() -> None:
    journal = Journal(fail_on="mid")
    with pytest.raises(ConnectionError, match="mid cannot connect"):
        async with open_resources(container_of(journal), ORDER):
            raise AssertionError("never reached")
    assert journal.entries == ["open zeta", "open alpha", "close alpha", "close zeta"]


async def test_an_error_while_serving_still_closes_everything_in_reverse() -> None:
    journal = Journal()
    with pytest.raises(RuntimeError, match="boom"):
        async with open_resources(container_of(journal), ORDER):
            raise RuntimeError("boom")
    assert journal.entries[3:] == ["close mid", "close alpha", "close zeta"]


async def test_an_unlisted_resource_is_refused_before_anything_opens() -> None:
    journal = Journal()
    with pytest.raises(RuntimeError, match="RESOURCE_ORDER"):
        async with open_resources(container_of(journal), ("zeta", "alpha")):
            pass
    assert journal.entries == []


def test_the_container_lists_every_resource_once() -> None:
    declared = {name for name, provider in Container.providers.items()
                if isinstance(provider, providers.Resource)}
    assert sorted(RESOURCE_ORDER) == sorted(declared)
    assert len(set(RESOURCE_ORDER)) == len(RESOURCE_ORDER)
    # The stores open before NATS, so no job is fetched before they are there.
    assert RESOURCE_ORDER.index("nats") > RESOURCE_ORDER.index("ledger")
