"""The benchmark never touches production: a Redis database and PostgreSQL databases of
its own, and workers that see nothing of the configured ones.

Redis. The bench's workers and producer use a Redis database of its own on the
configured broker's server: one that is empty when the bench claims it (a claim key set
in the same atomic step as the check, a Lua script), never the configured broker's or
result backend's, and emptied at the end. A Celery worker declares its queues in its
database when it starts (kombu's ``_kombu.binding.*`` keys), so no worker listens on an
empty database: nothing the bench enqueues can reach a production worker, and the
bench's own wake-up keys and results stay apart from production's. The queue names stay
the system's own, so the workers measured are exactly the deployed ones.

PostgreSQL. The scratch databases are ``<database>_bench``, ``<database>_bench_rebuild``
(``benchmarks/scratch.py``; any ``<database>_bench_<word>``), marked as the bench's when
created. The bench refuses to run against a configured database whose name is itself of
that form, and refuses to drop a database of a scratch name that it did not make.

Processes. The workers and the API server the bench starts get every setting that names
a place pointed at the bench's own (the read database, the metrics port and directory
dropped), whatever the bench's own environment holds.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import click
import redis

from commands.transport import redacted

CLAIM = "orders:bench-run"
"""The key that says a bench is using this Redis database (value: the bench's token)."""
SCRATCH_MARK = "orders:bench-scratch"
"""Kept for good in a database a bench used: one whose bench was killed before it could
empty it (and whose claim has expired) is taken again."""
CLAIM_SECONDS = 24 * 3600
DATABASES = range(1, 16)
"""Database 0 is every Redis client's default: never a scratch one."""

SCRATCH_NAME = re.compile(r"_bench(_\w*)?$")
"""How every scratch database's name ends: ``_bench``, ``_bench_rebuild``, ``_bench_...``."""

DROPPED = (
    # The read models' queries would go to the production database (or its replica).
    "ORDERS_READ_DATABASE_URL",
    "ORDERS_READ_DATABASE_PASSWORD",
    # A worker or server with metrics would take production's port, and empty
    # production's multiprocess directory as it starts (bootstrap/metrics.py).
    "ORDERS_METRICS_PORT",
    "PROMETHEUS_MULTIPROC_DIR",
    # The bench's own API server answers the bench's clients, which carry no token.
    "ORDERS_API_TOKEN",
)

# Claim the database only if it is empty, or a bench's leftover with no live claim: the
# check and the claim in one step, so two benches (or a bench and anything else) never
# both take it.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('DBSIZE') ~= 0 and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('FLUSHDB')
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], '1')
return 1
"""

# Empty it at the end, only while the claim is still this bench's.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('FLUSHDB')
return 1
"""


class IsolationError(click.ClickException):
    """The bench cannot keep apart from what it is configured against: it does not run."""


def redis_database(url: str) -> int:
    """The database number a ``redis://`` URL names (``/N`` or ``?db=N``; 0 if neither)."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path:
        return int(path)
    query = dict(parse_qsl(parts.query))
    return int(query.get("db", 0))


def with_database(url: str, number: int) -> str:
    """The same server, credentials and options, database ``number``."""
    parts = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "db"])
    return urlunsplit(parts._replace(path=f"/{number}", query=query))


def _server(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "localhost").lower(), parts.port or 6379


@contextmanager
def scratch_redis(broker_url: str, result_backend: str | None = None) -> Iterator[str]:
    """A Redis database of the bench's own on the broker's server, claimed while the
    block runs and emptied at the end: its URL."""
    taken = {redis_database(broker_url)}
    if result_backend and result_backend.startswith(("redis://", "rediss://")):
        # Another server's database of that number is not ours to worry about, but
        # sparing it costs nothing, and "localhost" and "127.0.0.1" are one server.
        taken.add(redis_database(result_backend))
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    chosen: str | None = None
    refused: list[str] = []
    for number in DATABASES:
        if number in taken:
            continue
        url = with_database(broker_url, number)
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        try:
            claimed = client.eval(_CLAIM, 2, CLAIM, SCRATCH_MARK, token, CLAIM_SECONDS)
        except redis.ResponseError as error:
            client.close()
            if "out of range" in str(error).lower():
                break  # the server has no more databases
            refused.append(f"{number}: {error}")
            continue
        except redis.RedisError as error:
            client.close()
            raise IsolationError(f"orders bench cannot reach the broker's Redis: {error}") from None
        client.close()
        if claimed:
            chosen = url
            break
    if chosen is None:
        detail = f" ({'; '.join(refused)})" if refused else ""
        raise IsolationError(
            "orders bench needs an empty Redis database of its own on the broker's server "
            f"(1 to 15, not the configured {sorted(taken)}), and found none{detail}"
        )
    if redis_database(chosen) in taken or _server(chosen) != _server(broker_url):
        raise IsolationError(
            f"the bench's Redis database would be the configured one: {redacted(chosen)}"
        )
    try:
        yield chosen
    finally:
        # A connection of its own: the bench may have run for many minutes.
        client = redis.Redis.from_url(chosen, socket_connect_timeout=5, socket_timeout=10)
        try:
            client.eval(_RELEASE, 1, CLAIM, token)
        finally:
            client.close()


def check_database_name(name: str | None) -> None:
    """Refuse a configured database that is itself a scratch name: the bench would make
    ``<it>_bench`` beside it, and a bench configured with the database it was made for
    would drop it."""
    if not name:
        raise IsolationError("orders bench needs ORDERS_DATABASE_URL to name a database")
    found = SCRATCH_NAME.search(name)
    if found:
        raise IsolationError(
            f"the configured database {name!r} ends in {found.group()!r}: that is the name "
            "of a benchmark's scratch database, which the benchmark drops. Point "
            "ORDERS_DATABASE_URL at the real database (the bench works beside it)."
        )


def child_environment(overlay: Mapping[str, str]) -> dict[str, str]:
    """The environment for a process the bench starts: this one's, minus every setting
    that would lead it to production, plus ``overlay`` (the bench's URLs)."""
    base = {key: value for key, value in os.environ.items() if key not in DROPPED}
    return {**base, **overlay}
