"""Is the system healthy? One answer for ``orders health``, the API's ``/api/ready`` and
the compose file's healthchecks.

Each check says ``ok``, ``degraded`` (it serves, but someone should look) or ``down``
(it cannot serve). The whole is as bad as its worst check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select

from bootstrap.schema import schema_problem
from bootstrap.services import Services
from commands.transport import redacted
from readmodels.freshness import replica_lag
from readmodels.maintenance import status as projection_status
from readmodels.projections import PROJECTIONS
from store.errors import is_unreachable
from store.schema import dead_letters

State = Literal["ok", "degraded", "down"]
SEVERITY: dict[State, int] = {"ok": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True)
class Check:
    name: str
    state: State
    detail: str


@dataclass(frozen=True)
class Health:
    checks: list[Check]

    @property
    def state(self) -> State:
        return max((check.state for check in self.checks), key=SEVERITY.__getitem__, default="ok")

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 degraded, 2 down: what ``orders health`` exits with."""
        return SEVERITY[self.state]

    def to_dict(self, *, details: bool = True) -> dict[str, object]:
        """``details`` False: each check's name and state only (its detail can name
        hosts, users and errors)."""
        checks = [asdict(check) for check in self.checks]
        if not details:
            checks = [{"name": c["name"], "state": c["state"]} for c in checks]
        return {"status": self.state, "checks": checks}


def check(services: Services, *, projections: bool = True) -> Health:
    """Every check; ``projections=False`` leaves out the read models' lag and the dead
    letters (what a server needs to answer at all)."""
    checks = [_database(services), _broker(services)]
    if projections and checks[0].state == "ok":
        checks += _projections(services)
        if services.read_engine is not services.engine:
            checks.append(_read_replica(services))
        checks.append(_dead_letters(services))
    return Health(checks)


def _database(services: Services) -> Check:
    where = redacted(services.settings.database_url)
    try:
        problem = schema_problem(services.engine)
    except Exception as error:
        if not is_unreachable(error):
            raise
        reason = " ".join(str(getattr(error, "orig", error)).split())
        return Check("database", "down", f"cannot reach {where}: {reason}"[:300])
    if problem is not None:
        return Check("database", "down", problem)
    return Check("database", "ok", f"reachable, at the newest migration ({where})")


def _broker(services: Services) -> Check:
    url = services.settings.broker_url
    if services.settings.embedded:
        return Check("broker", "ok", "embedded: Celery's in-memory transport")
    client = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except RedisError as error:
        return Check("broker", "down", f"cannot reach {redacted(url)}: {error}"[:300])
    finally:
        client.close()
    return Check("broker", "ok", f"answers ({redacted(url)})")


def _projections(services: Services) -> list[Check]:
    limit = services.settings.max_lag_seconds
    found = []
    for entry in projection_status(services.engine, services.reader, PROJECTIONS.values()):
        name = f"projection {entry.name}"
        if entry.stuck:
            detail = f"stuck on a parked event ({entry.parked} parked): {entry.error}"
            found.append(Check(name, "degraded", detail[:300]))
        elif entry.lag_seconds > limit:
            detail = (
                f"{entry.lag_events} events behind, {entry.lag_seconds:.0f} s (limit {limit:g})"
            )
            found.append(Check(name, "degraded", detail))
        else:
            found.append(Check(name, "ok", f"{entry.lag_events} events behind"))
    return found


def _read_replica(services: Services) -> Check:
    """The read database (``ORDERS_READ_DATABASE_URL``): the dashboards see each read
    model this much later again. Degraded, not down: commands are decided without it."""
    name, limit = "read database", services.settings.max_lag_seconds
    where = redacted(services.settings.read_database_url or "")
    try:
        with services.read_engine.connect() as conn:
            lag = replica_lag(conn)
    except Exception as error:
        if not is_unreachable(error):
            raise
        reason = " ".join(str(getattr(error, "orig", error)).split())
        return Check(name, "degraded", f"cannot reach {where}: {reason}"[:300])
    if lag is None:
        return Check(name, "ok", f"reachable, not a replica ({where})")
    detail = f"replica {lag.seconds:.0f} s and {lag.bytes} bytes of WAL behind"
    if lag.seconds > limit:
        return Check(name, "degraded", f"{detail} (limit {limit:g})")
    return Check(name, "ok", detail)


def _dead_letters(services: Services) -> Check:
    since = datetime.now(UTC) - timedelta(hours=1)
    query = select(func.count()).where(dead_letters.c.recorded_at >= since)
    with services.engine.connect() as conn:
        count = int(conn.execute(query).scalar_one())
    if count:
        return Check("dead letters", "degraded", f"{count} in the last hour (orders dead-letters)")
    return Check("dead letters", "ok", "none in the last hour")
