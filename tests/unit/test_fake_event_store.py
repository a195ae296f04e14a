"""The unit tests' in-memory event store keeps the real stores' contract."""

from __future__ import annotations

import pytest

from tests.support.contract import Counts, EventStoreContract
from tests.support.fakes import FakeEventStore


class TestFakeEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> FakeEventStore:
        return FakeEventStore()

    @pytest.fixture
    def stored_counts(self, store: FakeEventStore) -> Counts:
        return store.stored_counts
