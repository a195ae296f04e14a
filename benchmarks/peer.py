"""The same work with the ``eventsourcing`` library on PostgreSQL: one new aggregate,
one event, saved per command."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from benchmarks.measure import median_of, rate


def peer_cps(url: str, threads: int, per_thread: int, repeats: int) -> float:
    try:
        from benchmarks.peer_app import PeerOrders
    except ImportError as missing:
        raise SystemExit("the peer needs the bench extra: pip install -e '.[bench]'") from missing

    parsed = make_url(url)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parsed.database or "",
        "POSTGRES_HOST": parsed.host or "127.0.0.1",
        "POSTGRES_PORT": str(parsed.port or 5432),
        "POSTGRES_USER": parsed.username or "postgres",
        "POSTGRES_PASSWORD": parsed.password or "",
        "POSTGRES_POOL_SIZE": str(threads + 2),
        "POSTGRES_MAX_OVERFLOW": "4",
        "CREATE_TABLE": "y",
    }
    app = PeerOrders(env=env)
    try:
        app.create("warm-up")
        return median_of(
            repeats, lambda: rate(lambda _: app.create("customer-1"), per_thread, threads)
        )
    finally:
        app.close()
