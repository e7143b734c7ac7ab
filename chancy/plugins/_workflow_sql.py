"""The workflow plugin's SQL, in one place: its tables, the triggers that advance a workflow in
the transaction that finishes a step, and the statements of its API.

How a workflow advances (see docs/workflows.md): every step is a row of the jobs table from the
moment the workflow is pushed. A step that still waits for dependencies is `pending` with
`scheduled_at` in the year 9999 (`WAITING_AT`), so the claim, which reads each priority level
from its first *due* job, never scans it. A row trigger on the jobs table (``AFTER UPDATE OF
state``, with a ``WHEN`` that is false for every job that is not a step) notes each step whose
state changed in an unlogged inbox; a statement trigger then handles the statement's steps as a
set: it locks their workflows in id order (so concurrent writers cannot deadlock on them),
counts down each dependent's unfinished dependencies (O(edges of the finished steps)), makes
those at zero due (copying their dependencies' results into them) and wakes their queues,
cancels the dependents of a failed step, and keeps the workflow's counters and state. Any path
that changes a step's state (the worker's batch write, `cancel_job`, recovery, `retry_jobs`)
goes through it, in its own transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from psycopg import sql

if TYPE_CHECKING:
    from chancy._sql import Tables

#: The `scheduled_at` of a step that waits for its dependencies: never due.
WAITING_AT = datetime(9999, 1, 1, tzinfo=UTC)
WAITING_AT_SQL = "'9999-01-01 00:00:00+00'::timestamptz"

#: Workflow states as stored.
WORKFLOW_STATES = ("pending", "running", "completed", "failed")
#: Step states as stored in the steps table (the step's job has the precise one).
STEP_STATES = ("waiting", "ready", "succeeded", "failed", "cancelled")


def names(t: Tables) -> dict[str, sql.Composable]:
    """The identifiers and constants the statements below are written with."""
    return {
        "workflows": t("workflows"),
        "steps": t("workflow_steps"),
        "inbox": t("workflow_inbox"),
        "row_fn": t("workflow_row_fn"),
        "stmt_fn": t("workflow_stmt_fn"),
        "work_fn": t("workflow_work_fn"),
        "row_trg": t("workflow_row_trg"),
        "stmt_trg": t("workflow_stmt_trg"),
        "row_del_trg": t("workflow_row_del_trg"),
        "stmt_del_trg": t("workflow_stmt_del_trg"),
        "guc": sql.Literal(f"chancy.wf_{t.prefix}"),
        "chan": sql.Literal(t.channel),
        "waiting_at": sql.SQL(WAITING_AT_SQL),
    }


def q(t: Tables, template: str) -> sql.Composed:
    return t.q(template, **names(t))


# -- migrations ----------------------------------------------------------------------------


def v1_up(t: Tables) -> list[sql.Composable]:
    return [
        q(
            t,
            """
            CREATE TABLE {workflows} (
                id uuid PRIMARY KEY,
                name text NOT NULL,
                state text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'completed', 'failed')),
                continue_on_failure boolean NOT NULL DEFAULT false,
                total integer NOT NULL,
                unfinished integer NOT NULL,
                failed integer NOT NULL DEFAULT 0,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now(),
                completed_at timestamptz
            )""",
        ),
        t.q(
            "CREATE INDEX {idx} ON {workflows} (state, id)",
            idx=t("workflows_state_idx"),
            workflows=t("workflows"),
        ),
        q(
            t,
            """
            CREATE TABLE {steps} (
                workflow_id uuid NOT NULL REFERENCES {workflows} (id) ON DELETE CASCADE,
                name text NOT NULL,
                job_id uuid NOT NULL UNIQUE,
                position integer NOT NULL,
                dependencies text[] NOT NULL DEFAULT '{{}}',
                dependents text[] NOT NULL DEFAULT '{{}}',
                inputs jsonb NOT NULL DEFAULT '{{}}',
                remaining integer NOT NULL,
                state text NOT NULL
                    CHECK (state IN ('waiting', 'ready', 'succeeded', 'failed', 'cancelled')),
                run_at timestamptz NOT NULL,
                PRIMARY KEY (workflow_id, name)
            )""",
        ),
        # Steps noted by the row trigger for the statement trigger; a row lives only inside
        # the transaction that wrote it (the statement trigger deletes what it handles).
        q(
            t,
            "CREATE UNLOGGED TABLE {inbox} (workflow_id uuid NOT NULL, job_id uuid NOT NULL,"
            " state text NOT NULL, old_state text NOT NULL)",
        ),
        q(
            t,
            """
            CREATE FUNCTION {row_fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$
            DECLARE
                row_ record := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
                wf text := row_.meta -> 'workflow' ->> 'id';
            BEGIN
                -- A "workflow" key of the user's own in meta is not a step.
                IF wf IS NULL OR wf !~* '^[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}$' THEN
                    RETURN NULL;
                END IF;
                -- A step whose job is deleted unfinished ends as failed.
                INSERT INTO {inbox} (workflow_id, job_id, state, old_state)
                VALUES (wf::uuid, row_.id, CASE WHEN TG_OP = 'DELETE' THEN 'failed'
                        ELSE NEW.state END, OLD.state);
                PERFORM set_config({guc}, 'on', true);
                RETURN NULL;
            END
            $fn$""",
        ),
        q(t, _WORK_FUNCTION),
        # What every UPDATE OF state on the jobs table pays: one call and a setting read.
        q(
            t,
            """
            CREATE FUNCTION {stmt_fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$
            BEGIN
                IF current_setting({guc}, true) = 'on' THEN
                    PERFORM {work_fn}();
                END IF;
                RETURN NULL;
            END
            $fn$""",
        ),
        # Plain jobs pay the WHEN alone (two comparisons and a key lookup in a small jsonb).
        q(
            t,
            """
            CREATE TRIGGER {row_trg} AFTER UPDATE OF state ON {jobs}
            FOR EACH ROW WHEN (
                OLD.state IS DISTINCT FROM NEW.state
                AND (NEW.state IN ('succeeded', 'failed') OR OLD.state IN ('succeeded', 'failed'))
                AND NEW.meta ? 'workflow')
            EXECUTE FUNCTION {row_fn}()""",
        ),
        q(
            t,
            "CREATE TRIGGER {stmt_trg} AFTER UPDATE OF state ON {jobs}"
            " FOR EACH STATEMENT EXECUTE FUNCTION {stmt_fn}()",
        ),
        q(
            t,
            """
            CREATE TRIGGER {row_del_trg} AFTER DELETE ON {jobs}
            FOR EACH ROW WHEN (OLD.state IN ('pending', 'running', 'retrying')
                               AND OLD.meta ? 'workflow')
            EXECUTE FUNCTION {row_fn}()""",
        ),
        q(
            t,
            "CREATE TRIGGER {stmt_del_trg} AFTER DELETE ON {jobs}"
            " FOR EACH STATEMENT EXECUTE FUNCTION {stmt_fn}()",
        ),
    ]


def v1_down(t: Tables) -> list[sql.Composable]:
    return [
        q(t, "DROP TRIGGER IF EXISTS {stmt_del_trg} ON {jobs}"),
        q(t, "DROP TRIGGER IF EXISTS {row_del_trg} ON {jobs}"),
        q(t, "DROP TRIGGER IF EXISTS {stmt_trg} ON {jobs}"),
        q(t, "DROP TRIGGER IF EXISTS {row_trg} ON {jobs}"),
        q(t, "DROP FUNCTION IF EXISTS {stmt_fn}()"),
        q(t, "DROP FUNCTION IF EXISTS {work_fn}()"),
        q(t, "DROP FUNCTION IF EXISTS {row_fn}()"),
        q(t, "DROP TABLE IF EXISTS {inbox}"),
        q(t, "DROP TABLE IF EXISTS {steps}"),
        q(t, "DROP TABLE IF EXISTS {workflows}"),
    ]


# The statement trigger's work. Each SQL statement below sees the effects of the ones before
# it. Its tables are small per workflow but their statistics are rarely fresh (a workflow is
# pushed and run within seconds), so the plans are pinned to index probes and nested loops: the
# work stays proportional to the edges of the steps at hand, never to the workflow's size.
_WORK_FUNCTION = """
CREATE FUNCTION {work_fn}() RETURNS void LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off SET jit = off
AS $fn$
DECLARE
    e_id uuid[]; e_state text[]; e_old text[]; e_wf uuid[];
    f_wf uuid[]; f_name text[]; f_state text[]; f_job uuid[];
    c_wf uuid[];
    r_wf uuid[]; r_name text[]; r_was text[]; r_job uuid[];
    x_wf uuid[];
    v_woken integer;
BEGIN
    PERFORM set_config({guc}, '', true);
    WITH d AS (DELETE FROM {inbox} RETURNING workflow_id, job_id, state, old_state)
    SELECT array_agg(job_id), array_agg(state), array_agg(old_state),
        array_agg(DISTINCT workflow_id)
    INTO e_id, e_state, e_old, e_wf FROM d;
    IF e_id IS NULL THEN
        RETURN;
    END IF;

    -- One writer per workflow at a time, always taken in id order.
    PERFORM 1 FROM {workflows} w WHERE w.id = ANY(e_wf) ORDER BY w.id FOR UPDATE;

    -- Steps that finished (each counted once, whatever the path that finished it).
    WITH fin AS (
        UPDATE {steps} s SET state = e.state
        FROM unnest(e_id, e_state) e(id, state)
        WHERE s.job_id = e.id AND e.state IN ('succeeded', 'failed')
          AND s.state NOT IN ('succeeded', 'failed', 'cancelled')
        RETURNING s.workflow_id, s.name, s.state, s.job_id
    )
    SELECT array_agg(workflow_id), array_agg(name), array_agg(state), array_agg(job_id)
    INTO f_wf, f_name, f_state, f_job FROM fin;

    IF f_wf IS NOT NULL THEN
        -- Count down the dependents; those at zero become due, with their inputs.
        WITH edge AS (
            SELECT x.job_id AS job, count(*)::integer AS n
            FROM unnest(f_wf, f_job, f_state) f(wf, job, state)
            JOIN {workflows} w ON w.id = f.wf
            JOIN {steps} s ON s.job_id = f.job
            CROSS JOIN LATERAL unnest(s.dependents) d(name)
            CROSS JOIN LATERAL (
                SELECT y.job_id FROM {steps} y
                WHERE y.workflow_id = f.wf AND y.name = d.name OFFSET 0) x
            WHERE f.state = 'succeeded' OR w.continue_on_failure
            GROUP BY x.job_id
        ), dec AS (
            UPDATE {steps} s SET remaining = s.remaining - edge.n,
                state = CASE WHEN s.remaining - edge.n <= 0 THEN 'ready' ELSE 'waiting' END
            FROM edge
            WHERE s.job_id = edge.job AND s.state = 'waiting'
            RETURNING s.workflow_id, s.job_id, s.remaining, s.run_at, s.dependencies, s.inputs
        ), rel AS (
            UPDATE {jobs} j SET
                scheduled_at = greatest(dec.run_at, now()),
                meta = jsonb_set(j.meta, '{{workflow}}',
                    coalesce(j.meta -> 'workflow', '{{}}'::jsonb) || info.doc),
                kwargs = j.kwargs || info.args
            FROM dec CROSS JOIN LATERAL (
                SELECT jsonb_build_object(
                    'results', coalesce(jsonb_object_agg(dep.name, dj.result)
                        FILTER (WHERE dep.state = 'succeeded'), '{{}}'::jsonb),
                    'failed', coalesce(jsonb_agg(dep.name ORDER BY dep.position)
                        FILTER (WHERE dep.state <> 'succeeded'), '[]'::jsonb)) AS doc,
                    coalesce((
                        SELECT jsonb_object_agg(i.key, ij.result)
                        FROM jsonb_each_text(dec.inputs) i(key, step)
                        CROSS JOIN LATERAL (
                            SELECT d.job_id FROM {steps} d
                            WHERE d.workflow_id = dec.workflow_id AND d.name = i.step
                              AND d.state = 'succeeded'
                            OFFSET 0) isp
                        JOIN {jobs} ij ON ij.id = isp.job_id), '{{}}'::jsonb) AS args
                FROM unnest(dec.dependencies) dn(name)
                CROSS JOIN LATERAL (
                    SELECT d.name, d.state, d.position, d.job_id FROM {steps} d
                    WHERE d.workflow_id = dec.workflow_id AND d.name = dn.name
                    OFFSET 0) dep
                LEFT JOIN {jobs} dj ON dj.id = dep.job_id
            ) info
            WHERE dec.remaining <= 0 AND j.id = dec.job_id AND j.state = 'pending'
            RETURNING j.queue
        ), woken AS (
            SELECT pg_notify({chan}, json_build_object('t', 'pushed', 'q',
                json_build_array(queue))::text)
            FROM (SELECT DISTINCT queue FROM rel) r
        )
        SELECT count(*) INTO v_woken FROM woken;

        -- The waiting dependents of a failed step (of a workflow that does not continue on
        -- failure), and theirs, are cancelled.
        IF 'failed' = ANY(f_state) THEN
            WITH RECURSIVE down(wf, job, dependents) AS (
                SELECT f.wf, x.job_id, x.dependents
                FROM unnest(f_wf, f_job, f_state) f(wf, job, state)
                JOIN {workflows} w ON w.id = f.wf AND NOT w.continue_on_failure
                JOIN {steps} s ON s.job_id = f.job
                CROSS JOIN LATERAL unnest(s.dependents) d(name)
                CROSS JOIN LATERAL (
                    SELECT y.job_id, y.dependents FROM {steps} y
                    WHERE y.workflow_id = f.wf AND y.name = d.name AND y.state = 'waiting'
                    OFFSET 0) x
                WHERE f.state = 'failed'
                UNION
                SELECT down.wf, x.job_id, x.dependents FROM down
                CROSS JOIN LATERAL unnest(down.dependents) d(name)
                CROSS JOIN LATERAL (
                    SELECT y.job_id, y.dependents FROM {steps} y
                    WHERE y.workflow_id = down.wf AND y.name = d.name AND y.state = 'waiting'
                    OFFSET 0) x
            ), can AS (
                UPDATE {steps} s SET state = 'cancelled'
                FROM (SELECT DISTINCT job FROM down) down
                WHERE s.job_id = down.job AND s.state = 'waiting'
                RETURNING s.workflow_id, s.job_id
            ), cj AS (
                UPDATE {jobs} j SET state = 'failed', completed_at = now(),
                    errors = j.errors || jsonb_build_array(jsonb_build_object(
                        'attempt', j.attempts,
                        'traceback', 'cancelled: a step it depends on failed'))
                FROM can WHERE j.id = can.job_id AND j.state IN ('pending', 'retrying')
                RETURNING j.id
            ), done AS (
                SELECT pg_notify({chan}, json_build_object('t', 'job.done', 'ids',
                    array_agg(id))::text)
                FROM (SELECT id, row_number() OVER () / 150 AS n FROM cj) x GROUP BY n
            )
            SELECT array_agg(can.workflow_id) INTO c_wf
            FROM can CROSS JOIN (SELECT count(*) FROM done) forced;
        END IF;

        WITH counts AS (
            SELECT wf, count(*)::integer AS done,
                count(*) FILTER (WHERE state <> 'succeeded')::integer AS bad
            FROM (SELECT * FROM unnest(f_wf, f_state)
                  UNION ALL SELECT unnest(c_wf), 'cancelled') x(wf, state)
            GROUP BY wf
        ), upd AS (
            UPDATE {workflows} w SET
                unfinished = w.unfinished - c.done,
                failed = w.failed + c.bad,
                state = CASE
                    WHEN w.failed + c.bad > 0
                         AND (NOT w.continue_on_failure OR w.unfinished - c.done <= 0)
                        THEN 'failed'
                    WHEN w.unfinished - c.done <= 0 THEN 'completed'
                    ELSE 'running' END,
                completed_at = CASE
                    WHEN (w.failed + c.bad > 0 AND NOT w.continue_on_failure)
                         OR w.unfinished - c.done <= 0
                        THEN coalesce(w.completed_at, now()) END,
                updated_at = now()
            FROM counts c WHERE w.id = c.wf
            RETURNING w.id, w.state
        )
        SELECT array_agg(id) INTO x_wf FROM upd WHERE state IN ('completed', 'failed');
        IF x_wf IS NOT NULL THEN
            PERFORM pg_notify({chan}, json_build_object('t', 'workflow.done', 'id', id)::text)
            FROM unnest(x_wf) id;
        END IF;
    END IF;

    -- Steps that run again (`retry_jobs`, `retry_workflow`): each waits again for what it
    -- depends on, its cancelled dependents wait again too, and waiting dependents that had
    -- counted it as done count it again.
    WITH e AS (
        SELECT id FROM unnest(e_id, e_state, e_old) e(id, state, old)
        WHERE e.old IN ('succeeded', 'failed') AND e.state IN ('pending', 'retrying')
    ), re AS (
        UPDATE {steps} s SET remaining = r.n,
            state = CASE WHEN r.n > 0 THEN 'waiting' ELSE 'ready' END
        FROM e, {steps} o, {workflows} w, LATERAL (
            SELECT count(*)::integer AS n FROM unnest(o.dependencies) dn(name)
            CROSS JOIN LATERAL (
                SELECT x.state FROM {steps} x
                WHERE x.workflow_id = o.workflow_id AND x.name = dn.name OFFSET 0) ds
            WHERE NOT (ds.state = 'succeeded'
                       OR (w.continue_on_failure AND ds.state IN ('failed', 'cancelled')))
        ) r
        WHERE s.job_id = e.id AND o.job_id = e.id
          AND w.id = s.workflow_id AND o.state IN ('succeeded', 'failed', 'cancelled')
        RETURNING s.workflow_id, s.name, s.job_id, r.n, o.state AS was
    ), hold AS (
        UPDATE {jobs} j SET scheduled_at = {waiting_at}
        FROM re WHERE j.id = re.job_id AND re.n > 0
    )
    SELECT array_agg(workflow_id), array_agg(name), array_agg(was), array_agg(job_id)
    INTO r_wf, r_name, r_was, r_job FROM re;

    IF r_wf IS NOT NULL THEN
        UPDATE {steps} s SET remaining = s.remaining + x.n
        FROM (
            SELECT r.wf, d.name, count(*)::integer AS n
            FROM unnest(r_wf, r_job, r_was) r(wf, job, was)
            JOIN {workflows} w ON w.id = r.wf
            JOIN {steps} st ON st.job_id = r.job
            CROSS JOIN LATERAL unnest(st.dependents) d(name)
            WHERE r.was = 'succeeded' OR w.continue_on_failure
            GROUP BY r.wf, d.name
        ) x
        WHERE s.workflow_id = x.wf AND s.name = x.name AND s.state = 'waiting';

        WITH RECURSIVE down(wf, name) AS (
            SELECT st.workflow_id, d.name
            FROM unnest(r_job) r(job)
            JOIN {steps} st ON st.job_id = r.job
            CROSS JOIN LATERAL unnest(st.dependents) d(name)
            UNION
            SELECT down.wf, d.name FROM down
            CROSS JOIN LATERAL (
                SELECT x.dependents FROM {steps} x
                WHERE x.workflow_id = down.wf AND x.name = down.name AND x.state = 'cancelled'
                OFFSET 0) s
            CROSS JOIN LATERAL unnest(s.dependents) d(name)
        ), res AS (
            UPDATE {steps} s SET remaining = r.n,
                state = CASE WHEN r.n > 0 THEN 'waiting' ELSE 'ready' END
            FROM down CROSS JOIN LATERAL (
                SELECT x.dependencies FROM {steps} x
                WHERE x.workflow_id = down.wf AND x.name = down.name OFFSET 0) o
            CROSS JOIN LATERAL (
                SELECT x.continue_on_failure FROM {workflows} x WHERE x.id = down.wf OFFSET 0) w
            CROSS JOIN LATERAL (
                SELECT count(*)::integer AS n FROM unnest(o.dependencies) dn(name)
                CROSS JOIN LATERAL (
                    SELECT x.state FROM {steps} x
                    WHERE x.workflow_id = down.wf AND x.name = dn.name OFFSET 0) ds
                WHERE NOT (ds.state = 'succeeded'
                           OR (w.continue_on_failure AND ds.state = 'failed'))
            ) r
            WHERE s.workflow_id = down.wf AND s.name = down.name AND s.state = 'cancelled'
            RETURNING s.workflow_id, s.job_id, r.n
        ), rj AS (
            UPDATE {jobs} j SET state = 'pending', attempts = 0, started_at = NULL,
                completed_at = NULL, result = NULL, taken_by = NULL, cancel_requested = false,
                scheduled_at = CASE WHEN res.n > 0 THEN {waiting_at} ELSE now() END
            FROM res WHERE j.id = res.job_id AND j.state IN ('succeeded', 'failed')
        )
        SELECT array_agg(workflow_id) INTO x_wf FROM res;

        WITH counts AS (
            SELECT wf, count(*)::integer AS n,
                count(*) FILTER (WHERE was <> 'succeeded')::integer AS bad
            FROM (SELECT * FROM unnest(r_wf, r_was)
                  UNION ALL SELECT unnest(x_wf), 'cancelled') x(wf, was)
            GROUP BY wf
        )
        UPDATE {workflows} w SET
            unfinished = w.unfinished + c.n,
            failed = greatest(w.failed - c.bad, 0),
            state = CASE
                WHEN greatest(w.failed - c.bad, 0) > 0 AND NOT w.continue_on_failure
                    THEN 'failed'
                ELSE 'running' END,
            completed_at = CASE
                WHEN greatest(w.failed - c.bad, 0) > 0 AND NOT w.continue_on_failure
                    THEN w.completed_at END,
            updated_at = now()
        FROM counts c WHERE w.id = c.wf;
    END IF;
    RETURN;
END
$fn$
"""


# -- the API's statements ------------------------------------------------------------------


def insert_workflow_query(t: Tables) -> sql.Composed:
    """Insert the workflow %(id)s and its steps (%(steps)s: a JSON array of objects with
    name, job_id, position, dependencies, dependents, inputs, remaining, state, run_at)."""
    return q(
        t,
        """
        WITH w AS (
            INSERT INTO {workflows} (id, name, continue_on_failure, total, unfinished)
            VALUES (%(id)s, %(name)s, %(continue_on_failure)s, %(total)s, %(total)s)
            RETURNING id
        )
        INSERT INTO {steps} (workflow_id, name, job_id, position, dependencies, dependents,
                             inputs, remaining, state, run_at)
        SELECT w.id, s.name, s.job_id, s.position,
            ARRAY(SELECT jsonb_array_elements_text(s.dependencies)),
            ARRAY(SELECT jsonb_array_elements_text(s.dependents)),
            s.inputs, s.remaining, s.state, s.run_at
        FROM w, jsonb_to_recordset(%(steps)s::jsonb) AS s(
            name text, job_id uuid, position integer, dependencies jsonb, dependents jsonb,
            inputs jsonb, remaining integer, state text, run_at timestamptz)
        """,
    )


WORKFLOW_COLUMNS = (
    "id::text, name, state, continue_on_failure, total, unfinished, failed, created_at,"
    " updated_at, completed_at"
)


def get_workflow_query(t: Tables) -> sql.Composed:
    return q(t, "SELECT " + WORKFLOW_COLUMNS + " FROM {workflows} WHERE id = %(id)s")


def get_steps_query(t: Tables, columns: sql.Composable) -> sql.Composed:
    """The steps of %(id)s in the order they were added, each with its job's row (NULL when
    the job was deleted)."""
    return t.q(
        """
        SELECT s.name, s.job_id::text, s.dependencies, s.inputs, s.state, s.run_at,
            {columns}
        FROM {steps} s LEFT JOIN {jobs} j ON j.id = s.job_id
        WHERE s.workflow_id = %(id)s ORDER BY s.position
        """,
        columns=columns,
        **names(t),
    )


def list_workflows_query(t: Tables, state: bool, name: bool, after: bool) -> sql.Composed:
    where = ["true"]
    if state:
        where.append("state = %(state)s")
    if name:
        where.append("name = %(name)s")
    if after:
        where.append("id < %(after)s::uuid")
    return q(
        t,
        "SELECT "
        + WORKFLOW_COLUMNS
        + " FROM {workflows} WHERE "
        + " AND ".join(where)
        + " ORDER BY id DESC LIMIT %(limit)s",
    )


def workflow_state_query(t: Tables) -> sql.Composed:
    return q(t, "SELECT state FROM {workflows} WHERE id = %(id)s")


def retry_workflow_query(t: Tables) -> sql.Composed:
    """Run the failed steps of %(id)s again (the trigger makes them, and what they lead to,
    wait for their dependencies again); returns (id, queue) of each."""
    return q(
        t,
        """
        WITH again AS (
            UPDATE {jobs} j SET state = 'pending', attempts = 0, scheduled_at = now(),
                started_at = NULL, completed_at = NULL, result = NULL, taken_by = NULL,
                cancel_requested = false
            FROM {steps} s
            WHERE s.workflow_id = %(id)s AND s.state = 'failed' AND j.id = s.job_id
              AND j.state = 'failed'
            RETURNING j.id, j.queue
        ), notice AS (
            SELECT pg_notify({chan}, json_build_object('t', 'pushed', 'q',
                json_build_array(queue))::text)
            FROM (SELECT DISTINCT queue FROM again) a WHERE %(notify)s
        )
        SELECT id::text, queue FROM again UNION ALL SELECT NULL, NULL FROM notice
        """,
    )


def cancel_workflow_query(t: Tables) -> sql.Composed:
    """Cancel every unfinished step of %(id)s like `Chancy.cancel_job`: waiting ones fail at
    once, running ones are asked to stop; returns (id, state) of each step acted on."""
    return q(
        t,
        """
        WITH target AS (
            SELECT j.id FROM {steps} s JOIN {jobs} j ON j.id = s.job_id
            WHERE s.workflow_id = %(id)s AND s.state IN ('waiting', 'ready')
              AND j.state IN ('pending', 'retrying', 'running')
            ORDER BY j.id FOR UPDATE OF j
        ), acted AS (
            UPDATE {jobs} j SET
                state = CASE WHEN j.state = 'running' THEN j.state ELSE 'failed' END,
                completed_at = CASE WHEN j.state = 'running' THEN NULL ELSE now() END,
                errors = CASE WHEN j.state = 'running' THEN j.errors ELSE j.errors ||
                    jsonb_build_array(jsonb_build_object(
                        'attempt', j.attempts, 'traceback', 'cancelled before it ran'))
                    END,
                cancel_requested = true
            FROM target WHERE j.id = target.id AND j.state IN ('pending', 'retrying', 'running')
            RETURNING j.id, j.state
        ), notice AS (
            SELECT pg_notify({chan}, json_build_object('t', 'job.cancelled', 'id', id)::text)
            FROM acted WHERE state = 'running' AND %(notify)s
        )
        SELECT id::text, state FROM acted UNION ALL SELECT NULL, NULL FROM notice
        """,
    )


def cleanup_query(t: Tables) -> sql.Composed:
    """Delete workflows finished more than %(age)s seconds ago (their steps go with them)."""
    return q(
        t,
        "DELETE FROM {workflows} WHERE state IN ('completed', 'failed')"
        " AND completed_at < now() - make_interval(secs => %(age)s) RETURNING id",
    )
