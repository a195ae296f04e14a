"""What the tests share. ``fixtures`` is loaded as a pytest plugin by tests/conftest.py;
the rest are plain modules, each named by what it holds:

- ``services``: the shared PostgreSQL and Redis servers, this run's ``RUN_ID``, and
  what happens when a server cannot be reached (``unavailable``);
- ``fixtures``: ``postgres_url``, ``postgres_engine``, ``pg``, ``sqlite``, ``engine``,
  ``redis_url``, ``broker``, ``worker_env``, ``start_worker``, ``client``;
- ``ids``, ``commands``, ``events``, ``walkthrough``: builders, and the README's
  walkthrough with what each layer shows after it;
- ``fakes``: the in-memory event store; ``contract``: the suite every event store passes,
  that one included;
- ``store``: an SQL store's rows, and what the workers left in it;
- ``readmodels``: the write side and read side wired together, a shop's evening of
  commands, table snapshots; ``readmodel_fold``: the read models recomputed independently
  from the raw events;
- ``broker``, ``worker_logs``, ``waiting``: raw publishing and unacked messages, what a
  worker logged, waiting for the system;
- ``burst``, ``servers``, ``proxy``, ``workers``, ``cli``, ``proc``, ``lifetime``: a
  producer's burst, private servers, a cuttable TCP proxy, worker processes, the
  ``orders`` console script, process memory, children that die with the run.
"""
