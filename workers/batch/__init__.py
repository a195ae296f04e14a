"""Batch mode: ``orders worker --batch N`` decides commands N at a time, one commit each.

Commands stay one Celery message each: producers and the wire contract do not change.
Only the worker does. Its ``orders.handle_command`` task gets a strategy of its own
(the consumer's per-task hook): a received message is not handed to the pool alone but
buffered, and the buffer goes to a pool process as one job when it holds N messages, or
as soon as a pool process is free (``FLUSH_AFTER`` seconds after, so that messages read
together go together): a lone command waits for nothing, and under load the commands
that arrive while every process is busy make the next batch (group commit).

In the pool process (``run_batch``) each message is validated as the default path does
it (``commands.envelope.decode``; ``workers/poison.py`` for what is not a command), the
valid commands are decided by ``CommandHandler.handle_many`` (their streams read in one
round trip, their writes in one transaction with a savepoint each, one commit), every
outcome is stored in the result backend under its task id (and its command id) in one
pipeline, and the read models get one wake-up. Only then are the messages acknowledged,
by the consumer, when the job returns.

What can go wrong, and what happens then:

- a lost race, a redelivery, a rejection: that command only (``handle_many``);
- a message that is not a command: rejected and recorded (command log or dead letters)
  alone, by the default path; the batch's commands go on;
- the database unreachable: nothing of the batch was committed, and every command not
  yet answered is sent again with a countdown and its retry count raised, as the default
  path's ``task.retry`` does; past ``ORDERS_DB_RETRIES`` each is recorded failed once the
  database is back. Never a permanent ``failed`` for an outage;
- a bug in the batch path (anything else raised by ``handle_many``, say stored events
  it cannot read): its transaction is rolled back and each command is decided alone, by
  the default path, which fails only the command that meets the bug;
- the time limit: ``ORDERS_COMMAND_TIME_LIMIT`` bounds a batch as a whole, as it bounds
  one command in the default mode (it must stay below the visibility timeout, whatever
  the batch's size). A batch of several past its soft limit is rolled back and each of
  its commands sent again at once to be decided in a batch of its own; only a command
  past the limit alone is recorded failed, as the default path records it
  (``limits.py``);
- the result backend away: the outcomes' writes are retried under the backend's retry
  policy, as the default path's are; past it the job fails, and its messages are
  requeued unacknowledged: their redelivery is answered from the command log and stores
  the outcomes;
- the pool process killed, or the batch past its hard time limit: the messages are
  rejected and requeued (``task_reject_on_worker_lost``); the whole worker killed: they
  are unacknowledged and Redis redelivers them after the visibility timeout. Either way
  the command log answers whatever had been committed, and nothing is written twice;
- a warm shutdown (SIGTERM): the batches in the pool are finished and acknowledged; the
  messages still buffered in the main process were never started, and go back to the
  queue when the worker closes its channel (kombu restores what a channel holds
  unacknowledged), for the next worker.

The worker's side (``consumer.py``: buffer, flush, acknowledge) runs in the worker's main
process; the pool's side (``pool.py``: decide, commit, answer) in a pool process.
``install(app)`` adds the ``--batch`` option to ``celery worker``; ``workers.app`` has it,
so ``celery -A workers.app worker --batch N`` and ``orders worker --batch N`` are the same.
"""

from __future__ import annotations

from workers.batch.consumer import MAX_BATCH, install

__all__ = ["MAX_BATCH", "install"]
