"""The unit tests' `FakeLedger` passes the same contract as the real ledgers: a fake
that behaves otherwise would let the use case's tests pass against a lie."""

from __future__ import annotations

import pytest

from tests.ledger_contract import LedgerContract
from tests.unit.fakes import FakeLedger


class TestFakeLedgerContract(LedgerContract):
    @pytest.fixture
    async def ledger(self) -> FakeLedger:
        return FakeLedger()
