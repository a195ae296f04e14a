"""The benchmark never touches production: it refuses names that collide with the
configured ones, and takes a Redis database of its own (benchmarks/isolation.py). The
whole bench run beside a production worker is in test_bench.py (one ``--quick`` run
serves both)."""

from __future__ import annotations

import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.isolation import CLAIM, redis_database, scratch_redis, with_database
from tests.support.cli import orders


def test_the_bench_refuses_a_configured_database_with_a_scratch_name(
    postgres_url: str, redis_url: str, pg: Engine
) -> None:
    for suffix in ("_bench", "_bench_rebuild"):
        named = make_url(postgres_url).set(database=f"{make_url(postgres_url).database}{suffix}")
        env = {
            "ORDERS_DATABASE_URL": named.render_as_string(hide_password=False),
            "ORDERS_BROKER_URL": redis_url,
        }

        result = orders("bench", "--quick", env=env, timeout=60)

        assert result.returncode != 0, result.stdout
        assert "scratch database" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr


def test_the_bench_refuses_to_drop_a_database_of_its_scratch_name_it_did_not_make(
    postgres_url: str, redis_url: str, pg: Engine
) -> None:
    parsed = make_url(postgres_url)
    name = f"{parsed.database}_bench"
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    someones = parsed.set(database=name).render_as_string(hide_password=False)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        data = create_engine(someones)
        with data.begin() as conn:
            conn.execute(text("CREATE TABLE precious (value text)"))
            conn.execute(text("INSERT INTO precious VALUES ('kept')"))
        data.dispose()
        env = {"ORDERS_DATABASE_URL": postgres_url, "ORDERS_BROKER_URL": redis_url}

        result = orders("bench", "--quick", env=env, timeout=60)

        assert result.returncode != 0, result.stdout
        assert "is not a benchmark's scratch database" in result.stderr, result.stderr
        data = create_engine(someones)
        with data.connect() as conn:
            assert conn.execute(text("SELECT value FROM precious")).scalar_one() == "kept"
        data.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_bench_claims_an_empty_redis_database_and_never_the_configured_one(
    redis_url: str, broker: redis.Redis
) -> None:
    configured = redis_database(redis_url)
    with scratch_redis(redis_url) as first, scratch_redis(redis_url) as second:
        taken = {redis_database(first), redis_database(second)}
        assert len(taken) == 2 and configured not in taken  # two benches, two databases
        for url in (first, second):
            client = redis.Redis.from_url(url)
            assert client.get(CLAIM) is not None  # claimed while the bench runs
            client.rpush("orders.commands", "a bench message")
            client.close()
    for url in (first, second):
        client = redis.Redis.from_url(url)
        assert client.dbsize() == 0, url  # emptied at the end
        client.close()
    # Even when the configured database is empty, and as the broker or the result
    # backend, it is never the bench's.
    empty = redis_database(first)
    with scratch_redis(with_database(redis_url, empty)) as url:
        assert redis_database(url) != empty
    with scratch_redis(redis_url, with_database(redis_url, empty)) as url:
        assert redis_database(url) not in (empty, configured)
