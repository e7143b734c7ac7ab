"""Reprioritize: the priority of a job rises while it waits, so old jobs are not starved.

On the leader, every `check_interval` seconds, each rule raises by its `increase` the priority
of the jobs of its queue (every queue when `queue` is None) that have been due for longer than
its `older_than` seconds, up to its `maximum` (if any)::

    from chancy.plugins.reprioritize import Reprioritize

    Reprioritize(
        rules=[Reprioritize.Rule(queue="mail", older_than=600, increase=1, maximum=10)],
        check_interval=300,
    )

Only waiting jobs (pending or retrying, whose `scheduled_at` has come) are touched, never a
running one, and rows another transaction holds (a claim) are skipped. A pass walks the
matching jobs once in id order, in transactions of at most `batch_size` jobs, so each job rises
at most once per pass and no pass holds many locks. A workflow step waiting for its
dependencies is not due, so it is not touched either.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import anyio

from chancy.plugin import Plugin, check_seconds, emit, leader_passes

if TYPE_CHECKING:
    from psycopg import sql

    from chancy._sql import Tables
    from chancy.app import Chancy
    from chancy.worker import Worker

_INT32 = 2**31 - 1
_FIRST = "00000000-0000-0000-0000-000000000000"


def _integer(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _INT32:
        raise ValueError(f"{name}: expected an integer from {low} to {_INT32}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class AgeRule:
    """Raise by `increase` the priority of jobs of `queue` (None: every queue) due for longer
    than `older_than` seconds, never above `maximum` (None: no cap)."""

    older_than: float
    queue: str | None = None
    increase: int = 1
    maximum: int | None = None

    def __post_init__(self) -> None:
        check_seconds("older_than", self.older_than, allow_zero=True)
        if self.queue is not None and (not isinstance(self.queue, str) or not self.queue):
            raise ValueError(f"queue: expected a queue name or None, got {self.queue!r}")
        _integer("increase", self.increase, 1)
        if self.maximum is not None and (
            isinstance(self.maximum, bool) or not isinstance(self.maximum, int)
        ):
            raise ValueError(f"maximum: expected an integer or None, got {self.maximum!r}")


def reprioritize_query(tables: Tables) -> sql.Composed:
    """Raise the priority of up to %(limit)s waiting jobs matching one rule, after id
    %(after)s in id order; returns their ids (text) in id order."""
    return tables.q(
        """
        WITH picked AS (
            SELECT id FROM {jobs}
            WHERE state IN ('pending', 'retrying')
              AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
              AND scheduled_at <= now() - make_interval(secs => %(older_than)s)
              AND (%(maximum)s::integer IS NULL OR priority < %(maximum)s::integer)
              AND id > %(after)s::uuid
            ORDER BY id
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {jobs} AS j SET priority = least(
            j.priority::bigint + %(increase)s,
            coalesce(%(maximum)s::integer, 2147483647))::integer
        FROM picked
        WHERE j.id = picked.id AND j.state IN ('pending', 'retrying')
        RETURNING j.id::text
        """
    )


class Reprioritize(Plugin):
    """Raises the priority of jobs that waited too long (see the module's docstring).

    :param rules: the `Reprioritize.Rule` (`AgeRule`) list; upstream's single `rule` is not a
        rules engine here: give ``rules=[Reprioritize.Rule(...)]``.
    :param check_interval: seconds between passes.
    :param priority_increase: the `increase` of rules that do not set their own.
    :param batch_size: most jobs changed in one transaction.
    """

    identifier = "reprioritize"
    dependencies = ("leadership",)
    leader_only = True
    Rule = AgeRule

    def __init__(
        self,
        rules: list[AgeRule] | None = None,
        *,
        check_interval: float = 300,
        priority_increase: int | None = None,
        batch_size: int = 1000,
    ) -> None:
        if not rules or not all(isinstance(rule, AgeRule) for rule in rules):
            raise ValueError("rules: expected a non-empty list of Reprioritize.Rule")
        if priority_increase is not None:
            _integer("priority_increase", priority_increase, 1)
            rules = [
                dataclasses.replace(rule, increase=priority_increase)
                if rule.increase == 1
                else rule
                for rule in rules
            ]
        self.rules = list(rules)
        self.check_interval = check_seconds("check_interval", check_interval)
        self.batch_size = _integer("batch_size", batch_size, 1)
        #: Priority raises made by this plugin instance so far (for tests and metrics).
        self.raised = 0

    async def reprioritize(self, chancy: Chancy) -> int:
        """One pass over every rule; returns the number of priority raises."""
        total = 0
        query = reprioritize_query(chancy.tables)
        for rule in self.rules:
            after = _FIRST
            while True:
                async with chancy.db.connection() as conn:
                    rows = await conn.fetchall(
                        query,
                        {
                            "queue": rule.queue,
                            "older_than": float(rule.older_than),
                            "maximum": rule.maximum,
                            "increase": rule.increase,
                            "after": after,
                            "limit": self.batch_size,
                        },
                    )
                total += len(rows)
                if len(rows) < self.batch_size:
                    break
                after = max(row[0] for row in rows)
        self.raised += total
        return total

    async def run(
        self, worker: Worker, chancy: Chancy, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()

        async def one_pass() -> None:
            try:
                raised = await self.reprioritize(chancy)
            except Exception as exc:
                chancy.log.warning("reprioritize: pass failed (%s); retrying next pass", exc)
                return
            if raised:
                chancy.log.info("reprioritize: raised the priority of %d job(s)", raised)
                emit(worker, "reprioritize.raised", count=raised)

        await leader_passes(worker, self.check_interval, one_pass)


__all__ = ["AgeRule", "Reprioritize", "reprioritize_query"]
