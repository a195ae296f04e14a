"""The wake-up debounce: one wake-up per burst of commits, never a lost one; its window,
and the wake-up task's looks again."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
import redis

from commands.transport import PROJECTIONS_QUEUE, WAKE_PROJECTIONS
from readmodels.runner import RunResult
from readmodels.wake import FRESHNESS_BUDGET, WAKE_KEY, WAKE_WINDOW, WakeDebouncer
from workers import tasks


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


# -- the window, and the wake-up's look again ---------------------------------------------


def test_a_wake_up_waits_its_window_only_where_commits_can_join_it(
    fake: fakeredis.FakeRedis,
) -> None:
    assert WakeDebouncer(fake).window == WAKE_WINDOW
    assert 0 < WAKE_WINDOW < FRESHNESS_BUDGET / 2  # the queue's wait and the run need the rest
    assert WakeDebouncer(fake, window=0.02).window == 0.02
    assert WakeDebouncer(None).window == 0.0  # embedded: every commit sends its own


@dataclass
class FakeRunner:
    states: list[Any]
    during: Any = None  # what happens while the run runs

    def run_all(self) -> list[RunResult]:
        if self.during is not None:
            self.during()
        return [RunResult(f"p{n}", 1, state) for n, state in enumerate(self.states)]


@dataclass
class FakeApp:
    sent: list[dict[str, Any]] = field(default_factory=list)

    def send_task(self, name: str, **options: Any) -> None:
        self.sent.append({"name": name, **options})


def wake_up(
    fake: fakeredis.FakeRedis, states: list[str], looks: int = 0, pending: bool = False
) -> list[dict[str, Any]]:
    """Run the wake-up task on fakes; what it sent. ``pending``: another wake-up was
    claimed while this one ran."""
    debouncer = WakeDebouncer(fake)
    counted: list[tuple[str, int]] = []
    services = SimpleNamespace(
        debouncer=debouncer,
        runner=FakeRunner(states, debouncer.claim if pending else None),
        metrics=SimpleNamespace(projection_events=lambda name, n: counted.append((name, n))),
    )
    app = FakeApp()
    tasks.wake_projections(SimpleNamespace(services=services, app=app), looks=looks)  # type: ignore[arg-type]
    assert counted == [(f"p{n}", 1) for n in range(len(states))]
    return app.sent


def test_a_wake_up_that_caught_up_sends_nothing(fake: fakeredis.FakeRedis) -> None:
    assert wake_up(fake, ["caught_up", "caught_up", "stuck"]) == []


def test_a_wake_up_that_found_the_runs_busy_looks_again_after_the_window(
    fake: fakeredis.FakeRedis,
) -> None:
    """The run holding the lock may have read the log before the commits that sent this
    wake-up: another look, unless a wake-up is pending already."""
    [sent] = wake_up(fake, ["busy", "busy"])

    assert sent["name"] == WAKE_PROJECTIONS
    assert (sent["countdown"], sent["kwargs"]) == (WAKE_WINDOW, {"looks": 1})
    assert wake_up(fake, ["busy"], pending=True) == []
    fake.delete(WAKE_KEY)
    enough = round(tasks.LOOKING_FOR / WAKE_WINDOW)
    assert wake_up(fake, ["busy"], looks=enough - 1) != []
    fake.delete(WAKE_KEY)
    assert wake_up(fake, ["busy"], looks=enough) == []  # the sweep, from now on


def test_a_wake_up_that_found_events_held_back_looks_again_later(
    fake: fakeredis.FakeRedis,
) -> None:
    """Behind a command's transaction, which commits in a moment and whose own wake-up
    this look is: half a window."""
    [sent] = wake_up(fake, ["held_back", "busy"], looks=3)

    assert (sent["countdown"], sent["kwargs"]) == (WAKE_WINDOW / 2, {"looks": 4})


def test_a_commit_sends_its_wake_up_to_run_after_the_window(fake: fakeredis.FakeRedis) -> None:
    services = SimpleNamespace(debouncer=WakeDebouncer(fake))
    app = FakeApp()

    for _ in range(3):  # a burst: one wake-up, the others join it
        tasks.send_wake_up(app, services)  # type: ignore[arg-type]

    [sent] = app.sent
    assert (sent["name"], sent["queue"], sent["countdown"]) == (
        WAKE_PROJECTIONS,
        PROJECTIONS_QUEUE,
        WAKE_WINDOW,
    )
    embedded = FakeApp()
    tasks.send_wake_up(embedded, SimpleNamespace(debouncer=WakeDebouncer(None)))  # type: ignore[arg-type]
    assert embedded.sent[0]["countdown"] is None
