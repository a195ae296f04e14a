"""The whole suite's fixtures come from one plugin, ``tests.support.fixtures`` (real
PostgreSQL, SQLite, Redis and worker processes, each run with databases of its own);
the helpers the tests share live beside it in ``tests/support/``."""

pytest_plugins = ["tests.support.fixtures"]
