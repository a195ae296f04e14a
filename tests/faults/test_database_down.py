"""The database goes away while a worker handles commands, and comes back.

A TCP proxy in this process stands between the worker and PostgreSQL. ``cut()`` closes
its listener and every connection through it, so the worker sees both its pooled
connections die and new ones refused, as when the database host goes down; ``resume()``
listens on the same port again.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from commands import AddItem, CreateOrder
from commands.client import CommandClient
from store import SqlEventStore
from store.schema import command_log, events
from tests.support.workers import WorkerProcess

POSTGRES = ("127.0.0.1", 5432)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; can be cut and resumed on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.resume()

    def resume(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and drop every open one, on both sides."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        with self._lock:
            doomed, self._sockets = self._sockets, set()
        for sock in doomed:
            _close(sock)

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _close(client)
                    _close(upstream)
                    return
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
            with self._lock:
                self._sockets.difference_update((source, sink))


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other side
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    through = TcpProxy(POSTGRES)
    yield through
    through.close()


def _events_of_command(pg: Engine, command_id: str) -> int:
    query = select(func.count()).where(events.c.metadata["command_id"].as_string() == command_id)
    with pg.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _logged(pg: Engine, command_id: str) -> bool:
    query = select(command_log.c.command_id).where(command_log.c.command_id == command_id)
    with pg.connect() as conn:
        return conn.execute(query).first() is not None


def test_a_command_fails_cleanly_while_the_database_is_down_and_the_worker_recovers(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    postgres_url: str,
    proxy: TcpProxy,
) -> None:
    through_proxy = make_url(postgres_url).set(host="127.0.0.1", port=proxy.port)
    worker = start_worker(
        {
            "ORDERS_DATABASE_URL": through_proxy.render_as_string(hide_password=False),
            "ORDERS_DB_RETRIES": "3",
            "ORDERS_DB_RETRY_DELAY": "0.2",
        },
        # One pool process: B and C meet the very connection A left in its pool.
        concurrency=1,
    )
    store = SqlEventStore(pg)

    # A: the path through the proxy works.
    a = CreateOrder("order-db-down", "customer-1")
    outcome_a = client.send(a).wait(timeout=30)
    assert outcome_a.status == "accepted", outcome_a
    assert outcome_a.version == 1

    # B: the database is gone (pooled connections dropped, new ones refused).
    proxy.cut()
    b = AddItem("order-db-down", "apple", 1, Decimal("1.50"))
    started = time.monotonic()
    outcome_b = client.send(b).wait(timeout=60)
    took = time.monotonic() - started

    assert outcome_b.status == "failed", outcome_b
    assert outcome_b.error == "DatabaseUnavailable"
    assert outcome_b.command_id == b.command_id
    assert "3 retries" in (outcome_b.message or ""), outcome_b.message
    # 3 retries at 0.2 s doubling with jitter: well under a second of countdowns, plus
    # the connection attempts (refused at once); a generous bound, not a benchmark.
    assert took < 30, f"the failure took {took:.1f} s"

    # B wrote nothing: PostgreSQL itself, read directly, not through the proxy.
    assert _events_of_command(pg, b.command_id) == 0
    assert not _logged(pg, b.command_id)
    assert store.latest_version("order-db-down") == 1

    # The worker really retried B, three times, with Celery's countdown.
    log = "\n".join(worker.lines)
    retries = re.findall(rf"\[{re.escape(b.command_id)}\] retry: Retry in ", log)
    assert len(retries) == 3, log[-5000:]
    assert len(re.findall(r"database unreachable, retry \d in ", log)) == 3
    assert "database unreachable after 3 retries, command fails" in log

    # The database comes back on the same address: stale pooled connections are
    # replaced (pool_pre_ping) and the worker takes commands again.
    proxy.resume()
    c = AddItem("order-db-down", "banana", 2, Decimal("0.75"))
    outcome_c = client.send(c).wait(timeout=30)

    assert outcome_c.status == "accepted", outcome_c
    assert outcome_c.version == 2
    assert store.latest_version("order-db-down") == 2
    assert _events_of_command(pg, c.command_id) == 1
    # B stays failed: it was not redelivered behind the producer's back.
    assert _events_of_command(pg, b.command_id) == 0
    assert not _logged(pg, b.command_id)
    assert worker.process.poll() is None, "the worker died"
