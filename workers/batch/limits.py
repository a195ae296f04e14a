"""A batch's time limit, and what becomes of a batch that runs past it.

``ORDERS_COMMAND_TIME_LIMIT`` bounds each batch as a whole, as it bounds one command in
the default mode: a batch is one pool job and one transaction, and Redis redelivers a
message not acknowledged within ``ORDERS_VISIBILITY_TIMEOUT``, which the settings keep
above that limit. A limit scaled by the batch's size would outgrow the visibility
timeout (50 commands x 30 s), and a batch still running would be delivered twice.

A batch of several commands past its soft limit is rolled back, and each of its commands
is sent again at once with ``ALONE_HEADER``: the consumer hands such a message to the
pool in a batch of its own, under the whole limit. Only a command slow on its own is
then past the limit, and it is recorded failed as the default path records one.
"""

from __future__ import annotations

from dataclasses import dataclass

from bootstrap import Settings

ALONE_HEADER = "orders_batch_alone"
"""Set on a command sent again because its batch ran out of time: decide it alone."""
SOFT_MARGIN = 10
"""Seconds between the soft limit (an exception in the job) and the hard one (the pool
process killed), as for every task (workers/celery_config.py)."""


@dataclass(frozen=True)
class BatchLimits:
    soft: int
    """Seconds after which ``SoftTimeLimitExceeded`` is raised in the batch's job."""
    hard: int
    """Seconds after which the pool process is killed and the batch requeued."""


def batch_limits(settings: Settings) -> BatchLimits:
    """The limits of one batch, whatever its size (see the module)."""
    hard = settings.command_time_limit
    return BatchLimits(soft=max(1, hard - SOFT_MARGIN), hard=hard)
