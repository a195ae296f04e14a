"""The wake-up debounce: one wake-up per burst of commits, never a lost one."""

from __future__ import annotations

import logging
import time

import fakeredis
import pytest
import redis

from readmodels.wake import WAKE_KEY, WakeDebouncer


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_the_first_claim_of_a_burst_wins_and_the_rest_lose(fake: fakeredis.FakeRedis) -> None:
    debouncer = WakeDebouncer(fake)

    claims = [debouncer.claim() for _ in range(20)]

    assert claims == [True] + [False] * 19
    assert fake.get(WAKE_KEY) == b"1"


def test_claims_from_separate_debouncers_share_the_key(fake: fakeredis.FakeRedis) -> None:
    """Every command worker has its own debouncer; the key is what they share."""
    workers = [WakeDebouncer(fake) for _ in range(5)]

    assert [worker.claim() for worker in workers] == [True, False, False, False, False]


def test_after_release_the_next_claim_wins_again(fake: fakeredis.FakeRedis) -> None:
    sender, wake_up = WakeDebouncer(fake), WakeDebouncer(fake)
    assert sender.claim() is True
    assert sender.claim() is False

    wake_up.release()

    assert fake.exists(WAKE_KEY) == 0
    assert sender.claim() is True
    assert sender.claim() is False


def test_release_without_a_pending_claim_is_harmless(fake: fakeredis.FakeRedis) -> None:
    debouncer = WakeDebouncer(fake)

    debouncer.release()
    debouncer.release()

    assert debouncer.claim() is True


def test_the_key_expires_on_its_own(fake: fakeredis.FakeRedis) -> None:
    """A lost wake-up cannot silence later ones for longer than the expiry."""
    debouncer = WakeDebouncer(fake, expiry_ms=100)
    assert debouncer.claim() is True
    assert 0 < fake.pttl(WAKE_KEY) <= 100
    assert debouncer.claim() is False

    deadline = time.monotonic() + 5
    while fake.exists(WAKE_KEY) and time.monotonic() < deadline:
        time.sleep(0.02)

    assert fake.exists(WAKE_KEY) == 0
    assert debouncer.claim() is True


def test_a_losing_claim_does_not_extend_the_expiry(fake: fakeredis.FakeRedis) -> None:
    debouncer = WakeDebouncer(fake, expiry_ms=2_000)
    assert debouncer.claim() is True
    time.sleep(0.2)
    before = fake.pttl(WAKE_KEY)

    assert debouncer.claim() is False

    assert fake.pttl(WAKE_KEY) <= before


def test_without_redis_every_claim_wins() -> None:
    debouncer = WakeDebouncer(None)

    assert [debouncer.claim() for _ in range(5)] == [True] * 5
    debouncer.release()  # nothing to release, nothing raised
    assert debouncer.claim() is True


class BrokenRedis:
    """A Redis whose every call fails, as when the server is down."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def set(self, name: str, value: str, *, nx: bool, px: int) -> object:
        self.calls.append("set")
        raise redis.ConnectionError("Connection refused")

    def delete(self, *names: str) -> object:
        self.calls.append("delete")
        raise redis.TimeoutError("Timeout reading from socket")


def test_a_redis_error_on_claim_sends_the_wake_up_anyway(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = BrokenRedis()
    debouncer = WakeDebouncer(broken)

    with caplog.at_level(logging.WARNING, logger="readmodels.wake"):
        assert debouncer.claim() is True
        assert debouncer.claim() is True

    assert broken.calls == ["set", "set"]
    assert "sending anyway" in caplog.text


def test_a_redis_error_on_release_is_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    broken = BrokenRedis()
    debouncer = WakeDebouncer(broken)

    with caplog.at_level(logging.WARNING, logger="readmodels.wake"):
        debouncer.release()

    assert broken.calls == ["delete"]
    assert "expires on its own" in caplog.text


def test_a_disconnected_fake_server_behaves_like_an_outage() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    debouncer = WakeDebouncer(client)
    assert debouncer.claim() is True

    server.connected = False
    assert debouncer.claim() is True  # pending or not, it cannot tell: send
    debouncer.release()  # swallowed

    server.connected = True
    assert debouncer.claim() is False  # the first claim's key is still there
    debouncer.release()
    assert debouncer.claim() is True
