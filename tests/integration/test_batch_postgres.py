"""What only PostgreSQL can show of a batch: another writer's uncommitted row on the same
version makes the batch's insert wait, then fail on the unique constraint once it
commits; only that write is rolled back (to its savepoint), the batch goes on."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine

from domain.errors import VersionConflict
from store import open_event_store
from tests.support.commands import ORDER
from tests.support.contract import accepted
from tests.support.events import created, item_added
from tests.support.ids import new_id


def test_a_racing_commit_fails_only_its_write_and_the_batch_commits_the_rest(pg: Engine) -> None:
    store = open_event_store(pg)
    store.append(ORDER, 0, [created(ORDER)])
    rival = pg.connect()
    rival_tx = rival.begin()
    store._append_on(rival, ORDER, 1, [item_added(ORDER, 2, item_id="rival")], None, None, None)
    threading.Timer(0.3, rival_tx.commit).start()  # while the batch waits on its row
    lost, kept = new_id(), new_id()

    started = time.monotonic()
    with store.write_batch() as batch:
        try:
            batch.append(ORDER, 1, [item_added(ORDER, 2)], outcome=accepted(lost, 2, "ItemAdded"))
        except VersionConflict as conflict:
            assert (conflict.expected, conflict.actual) == (1, 2)
        else:
            raise AssertionError("the batch's write did not lose the race")
        assert time.monotonic() - started >= 0.2  # it waited for the rival's commit
        batch.append("order-002", 0, [created("order-002")], outcome=accepted(kept, 1))
    rival.close()

    assert [e.data().get("item_id") for e in store.load(ORDER)][1:] == ["rival"]
    assert store.find_outcome(lost) is None
    assert store.find_outcome(kept) == accepted(kept, 1)
