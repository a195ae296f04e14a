"""The configuration and the composition root: the one place that builds engines,
stores, handlers and Redis clients, for every entry point (the Celery workers, the
``orders`` command line). Called per process, never at import."""

from bootstrap.config import ConfigError, Settings
from bootstrap.schema import MIGRATIONS, migrate, schema_problem
from bootstrap.services import Services, bootstrap, order_history

__all__ = [
    "MIGRATIONS",
    "ConfigError",
    "Services",
    "Settings",
    "bootstrap",
    "migrate",
    "order_history",
    "schema_problem",
]
