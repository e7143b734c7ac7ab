"""The dashboard's JSON API and pages, in process against a real PostgreSQL (both backends)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from dashsupport import AUTH, TOKEN, form_csrf, log_in
from starlette.applications import Starlette
from starlette.routing import Mount
from support import fetch

from chancy import Chancy, Job, Queue, QueuedJob
from chancy.dashboard import create_app, hash_password
from chancy.dashboard._api import ENDPOINTS

pytestmark = pytest.mark.anyio

FAILED_ERROR = [{"attempt": 1, "traceback": "Traceback...\nConnectionError: mail server down"}]


async def finish(chancy: Chancy, job_id: str, state: str, errors: list | None = None) -> None:
    """Mark a job finished straight in the table (no worker needed)."""
    async with chancy.db.connection() as conn:
        await conn.execute(
            chancy.tables.q(
                "UPDATE {jobs} SET state = %s, attempts = 1, started_at = now(),"
                " completed_at = now(), errors = %s::jsonb, result = %s::jsonb WHERE id = %s"
            ),
            (state, json.dumps(errors or []), json.dumps({"sent": 1}), job_id),
        )


async def some_jobs(chancy: Chancy) -> dict[str, str]:
    await chancy.declare(Queue("mail"))
    await chancy.declare(Queue("reports"))
    ids = {}
    for name, queue, func in [
        ("ok", "mail", "shop.send"),
        ("failed", "mail", "shop.send"),
        ("pending", "mail", "shop.send"),
        ("report", "reports", "shop.report"),
    ]:
        ref = await chancy.push(Job(func=func, queue=queue, kwargs={"order": name}))
        ids[name] = ref.identifier
    await finish(chancy, ids["ok"], "succeeded")
    await finish(chancy, ids["failed"], "failed", FAILED_ERROR)
    return ids


# -- configuration ---------------------------------------------------------------------------


async def test_create_app_is_never_open_by_accident(chancy: Chancy) -> None:
    with pytest.raises(ValueError, match="needs token=, users= or"):
        create_app(chancy)
    with pytest.raises(ValueError, match="at least 16 characters"):
        create_app(chancy, token="short")
    with pytest.raises(ValueError, match="not a password"):
        create_app(chancy, users={"alice": "correct horse battery staple"})
    create_app(chancy, no_auth=True)
    create_app(chancy, users={"alice": hash_password("s3cret!")})


# -- authentication --------------------------------------------------------------------------


async def test_everything_but_health_needs_authentication(client_for, chancy: Chancy) -> None:
    client = await client_for()
    health = await client.get("/api/v1/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "database": "ok"}
    assert (await client.get("/api/v1/openapi.json")).status_code == 200
    for ep in ENDPOINTS:
        if ep.public:
            continue
        path = ep.path.replace("{name}", "mail").replace(
            "{id}", "01a00000-0000-7000-8000-000000000000"
        )
        answer = await client.request(ep.method, "/api/v1" + path, json={})
        assert answer.status_code == 401, (ep.method, path, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.request(
            ep.method, "/api/v1" + path, json={}, headers={"Authorization": "Bearer nope" * 3}
        )
        assert wrong.status_code == 401
    page = await client.get("/jobs?state=failed")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fjobs%3Fstate%3Dfailed"


async def test_token_login_sets_a_safe_cookie_and_a_wrong_token_fails(client_for) -> None:
    client = await client_for()
    page = await client.get("/login")
    wrong = await client.post(
        "/login", data={"csrf": form_csrf(page.text), "token": "x" * 30, "next": "/"}
    )
    assert wrong.status_code == 401
    assert "Wrong credentials" in wrong.text
    answer = await client.post(
        "/login", data={"csrf": form_csrf(page.text), "token": TOKEN, "next": "/queues"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/queues"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/" in cookie
    assert (await client.get("/queues")).status_code == 200
    # A forged cookie is no session.
    client.cookies.set("chancy_dashboard", "eyJ1c2VyIjoidG9rZW4ifQ.forged")
    assert (await client.get("/queues")).status_code == 303


async def test_login_form_needs_its_csrf_token(client_for) -> None:
    client = await client_for()
    await client.get("/login")
    answer = await client.post("/login", data={"csrf": "guess", "token": TOKEN, "next": "/"})
    assert answer.status_code == 403
    assert (await client.get("/")).status_code == 303


async def test_users_log_in_with_a_hashed_password_and_guessing_is_throttled(client_for) -> None:
    client = await client_for(token=None, users={"alice": hash_password("wonderland")})
    page = await client.get("/login")
    assert 'name="username"' in page.text
    assert 'name="token"' not in page.text
    csrf = form_csrf(page.text)
    for _ in range(10):
        bad = await client.post(
            "/login", data={"csrf": csrf, "username": "alice", "password": "guess"}
        )
        assert bad.status_code == 401
    blocked = await client.post(
        "/login", data={"csrf": csrf, "username": "alice", "password": "wonderland"}
    )
    assert blocked.status_code == 429
    other = await client_for(token=None, users={"alice": hash_password("wonderland")})
    assert await log_in(other, username="alice", password="wonderland")
    who = (await other.get("/api/v1/session")).json()
    assert (who["user"], who["auth"]) == ("alice", "session")


async def test_login_redirects_only_within_the_dashboard(client_for) -> None:
    client = await client_for()
    for target, expected in [
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/jobs?state=failed", "/jobs?state=failed"),
    ]:
        page = await client.get("/login")
        answer = await client.post(
            "/login", data={"csrf": form_csrf(page.text), "token": TOKEN, "next": target}
        )
        assert answer.headers["location"] == expected, target


async def test_logout_ends_the_session(client_for) -> None:
    client = await client_for()
    await log_in(client, token=TOKEN)
    page = await client.get("/")
    assert page.status_code == 200
    out = await client.post("/logout", data={"csrf": form_csrf(page.text)})
    assert out.status_code == 303
    assert (await client.get("/")).status_code == 303


# -- CSRF, read-only, hiding, escaping, headers -----------------------------------------------


async def test_cookie_mutations_need_the_csrf_header_bearer_ones_do_not(
    client_for, chancy: Chancy
) -> None:
    await chancy.declare(Queue("mail"))
    browser = await client_for()
    csrf = await log_in(browser, token=TOKEN)
    assert (await browser.post("/api/v1/queues/mail/pause")).status_code == 403
    wrong = await browser.post("/api/v1/queues/mail/pause", headers={"X-CSRF-Token": "x" * 32})
    assert wrong.status_code == 403
    assert (await chancy.get_queue("mail")).state is Queue.State.ACTIVE
    ok = await browser.post("/api/v1/queues/mail/pause", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200, ok.text
    assert ok.json()["state"] == "paused"
    script = await client_for()
    resumed = await script.post("/api/v1/queues/mail/resume", headers=AUTH)
    assert resumed.status_code == 200
    assert resumed.json()["state"] == "active"


async def test_no_auth_still_protects_mutations_with_csrf(client_for, chancy: Chancy) -> None:
    await chancy.declare(Queue("mail"))
    client = await client_for(token=None, no_auth=True)
    page = await client.get("/queues/mail")
    assert page.status_code == 200
    csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    assert (await client.post("/api/v1/queues/mail/pause")).status_code == 403
    ok = await client.post("/api/v1/queues/mail/pause", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200


async def test_read_only_refuses_every_mutation_server_side(client_for, chancy: Chancy) -> None:
    ids = await some_jobs(chancy)
    client = await client_for(read_only=True)
    client.headers.update(AUTH)
    bodies = {
        "/queues/{name}": {"concurrency": 3},
        "/jobs/{id}/move": {"queue": "reports"},
        "/jobs/{id}/reprioritize": {"priority": 5},
        "/jobs/retry": {"ids": [ids["failed"]]},
        "/jobs/purge": {"ids": [ids["failed"]]},
        "/jobs/move": {"ids": [ids["pending"]], "queue": "reports"},
        "/jobs/reprioritize": {"ids": [ids["pending"]], "priority": 5},
    }
    mutations = [ep for ep in ENDPOINTS if ep.mutation]
    assert len(mutations) == 13
    for ep in mutations:
        path = ep.path.replace("{name}", "mail").replace("{id}", ids["failed"])
        answer = await client.request(ep.method, "/api/v1" + path, json=bodies.get(ep.path))
        assert answer.status_code == 403, (ep.method, path)
        assert answer.json() == {"error": "the dashboard is read-only"}
    assert (await chancy.get_job(ids["failed"])).state is QueuedJob.State.FAILED
    assert (await chancy.get_queue("mail")).concurrency == 1
    page = await client.get(f"/jobs/{ids['failed']}")
    assert page.status_code == 200
    assert "retry-job" not in page.text
    assert 'id="bulk"' not in (await client.get("/jobs")).text


async def test_hide_args_masks_kwargs_and_results_in_the_api_and_pages(
    client_for, chancy: Chancy
) -> None:
    await chancy.declare(Queue("mail"))
    ref = await chancy.push(Job(func="shop.send", queue="mail", kwargs={"card": "4111-SECRET"}))
    await finish(chancy, ref.identifier, "succeeded")
    client = await client_for(hide_args=True)
    client.headers.update(AUTH)
    job = (await client.get(f"/api/v1/jobs/{ref.identifier}")).json()
    assert job["kwargs"] == "(hidden)"
    assert job["result"] == "(hidden)"
    listed = (await client.get("/api/v1/jobs")).json()["jobs"]
    assert listed[0]["kwargs"] == "(hidden)"
    for path in ("/jobs", f"/jobs/{ref.identifier}", "/queues/mail"):
        page = await client.get(path)
        assert page.status_code == 200
        assert "4111-SECRET" not in page.text
        assert '"sent"' not in page.text


async def test_every_job_field_is_escaped(client_for, chancy: Chancy) -> None:
    await chancy.declare(Queue("mail"))
    evil = "<script>alert('x')</script>"
    ref = await chancy.push(
        Job(func="shop.<b>send</b>", queue="mail", kwargs={"name": evil}, meta={"m": evil})
    )
    await finish(chancy, ref.identifier, "failed", [{"attempt": 1, "traceback": evil}])
    client = await client_for()
    client.headers.update(AUTH)
    for path in ("/", "/jobs", f"/jobs/{ref.identifier}", "/queues/mail"):
        html = (await client.get(path)).text
        assert "<script>alert" not in html, path
        assert "<b>send</b>" not in html, path
    detail = (await client.get(f"/jobs/{ref.identifier}")).text
    assert "&lt;script&gt;alert(" in detail


async def test_security_headers_on_pages_and_api(client_for) -> None:
    client = await client_for()
    client.headers.update(AUTH)
    for path in ("/login", "/api/v1/health", "/api/v1/queues", "/"):
        answer = await client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
    static = await client.get("/static/app.js")
    assert static.status_code == 200
    assert "textContent" in static.text


async def test_filters_are_bound_parameters(api, chancy: Chancy) -> None:
    ids = await some_jobs(chancy)
    for hostile in ("x' OR '1'='1", "'; DROP TABLE jobs; --", "%", "_"):
        answer = await api.get("/api/v1/jobs", params={"func": hostile})
        assert answer.status_code == 200
        assert answer.json()["jobs"] == []
        answer = await api.get("/api/v1/jobs", params={"error": hostile})
        assert answer.json()["jobs"] == []
    assert len((await api.get("/api/v1/jobs")).json()["jobs"]) == len(ids)
    assert (await api.get("/api/v1/jobs", params={"queue": "x' OR 1=1"})).status_code == 400


# -- reading -----------------------------------------------------------------------------------


async def test_jobs_filters_and_keyset_pages(api, chancy: Chancy) -> None:
    ids = await some_jobs(chancy)

    async def listed(**params: object) -> list[str]:
        answer = await api.get("/api/v1/jobs", params=params)
        assert answer.status_code == 200, answer.text
        return [j["id"] for j in answer.json()["jobs"]]

    assert await listed(queue="reports") == [ids["report"]]
    assert await listed(state="failed") == [ids["failed"]]
    assert await listed(func="shop.send", state="pending") == [ids["pending"]]
    assert await listed(error="MAIL SERVER") == [ids["failed"]]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await listed(since=future) == []
    assert len(await listed(until=future)) == 4
    # Keyset pages: newest first, `next` is the last id of a full page.
    first = (await api.get("/api/v1/jobs", params={"limit": 3})).json()
    assert [j["id"] for j in first["jobs"]] == [ids["report"], ids["pending"], ids["failed"]]
    assert first["next"] == ids["failed"]
    second = (await api.get("/api/v1/jobs", params={"limit": 3, "after": first["next"]})).json()
    assert [j["id"] for j in second["jobs"]] == [ids["ok"]]
    assert second["next"] is None
    for bad in ({"limit": 0}, {"limit": 501}, {"state": "done"}, {"after": "nope"}, {"x": 1}):
        assert (await api.get("/api/v1/jobs", params=bad)).status_code == 400, bad


async def test_job_detail_has_errors_result_and_timeline(api, chancy: Chancy) -> None:
    ids = await some_jobs(chancy)
    job = (await api.get(f"/api/v1/jobs/{ids['failed']}")).json()
    assert job["errors"][0]["traceback"].endswith("ConnectionError: mail server down")
    assert job["last_error"] == "ConnectionError: mail server down"
    assert next(e["event"] for e in job["timeline"]) == "pushed"
    assert "failed" in [e["event"] for e in job["timeline"]]
    ok = (await api.get(f"/api/v1/jobs/{ids['ok']}")).json()
    assert ok["result"] == {"sent": 1}
    missing = await api.get("/api/v1/jobs/01a00000-0000-7000-8000-000000000000")
    assert missing.status_code == 404
    assert (await api.get("/api/v1/jobs/not-a-uuid")).status_code == 400


async def test_overview_queues_and_metrics(api, chancy: Chancy) -> None:
    ids = await some_jobs(chancy)
    overview = (await api.get("/api/v1/overview")).json()
    mail = next(q for q in overview["queues"] if q["name"] == "mail")
    assert (mail["pending"], mail["succeeded_last_hour"], mail["failed_last_hour"]) == (1, 1, 1)
    assert [f["id"] for f in overview["failures"]] == [ids["failed"]]
    assert overview["totals"]["pending"] == 2
    one = (await api.get("/api/v1/queues/mail")).json()
    assert one["declared"] is True
    assert one["executor_name"] == "process"
    assert (await api.get("/api/v1/queues/nope")).status_code == 404
    assert (await api.get("/api/v1/metrics")).json() == {
        "installed": False,
        "resolution": 60,
        "points": [],
    }
    assert (await api.get("/api/v1/schedules")).json() == {"installed": False, "schedules": []}
    assert (await api.get("/api/v1/metrics", params={"resolution": 7})).status_code == 400


async def test_metric_history_and_schedules_when_their_plugins_are_installed(
    client_for, dsn: str, prefix: str
) -> None:
    from chancy.plugins import default_plugins
    from chancy.plugins.cron import Cron, schedule
    from chancy.plugins.metrics import Metrics, record

    app = Chancy(dsn, prefix=prefix, plugins=[*default_plugins(), Metrics(), Cron()])
    async with app:
        await app.migrate()
        await app.declare(Queue("mail"))
        ref = await app.push(Job(func="shop.send", queue="mail"))
        await finish(app, ref.identifier, "succeeded")
        await record(app, datetime.now(UTC) + timedelta(seconds=10))
        await schedule(app, "*/5 * * * *", Job(func="shop.send", queue="mail"), name="five")
        client = await client_for(create_app(app, token=TOKEN))
        client.headers.update(AUTH)
        points = (await client.get("/api/v1/metrics", params={"resolution": 10})).json()
        assert points["installed"] is True
        assert sum(p["succeeded"] for p in points["points"]) == 1
        schedules = (await client.get("/api/v1/schedules")).json()
        assert [s["name"] for s in schedules["schedules"]] == ["five"]
        assert schedules["schedules"][0]["next_run"]
        page = await client.get("/schedules")
        assert "*/5 * * * *" in page.text
        overview = await client.get("/")
        assert 'class="chart"' in overview.text


# -- acting --------------------------------------------------------------------------------


async def test_job_actions(api, chancy: Chancy) -> None:
    ids = await some_jobs(chancy)
    retried = await api.post(f"/api/v1/jobs/{ids['failed']}/retry")
    assert retried.json() == {"done": [ids["failed"]], "skipped": {}}
    assert (await chancy.get_job(ids["failed"])).state is QueuedJob.State.PENDING
    again = (await api.post(f"/api/v1/jobs/{ids['failed']}/retry")).json()
    assert again == {"done": [], "skipped": {ids["failed"]: "job is pending, not finished"}}
    moved = await api.post(f"/api/v1/jobs/{ids['pending']}/move", json={"queue": "reports"})
    assert moved.json()["done"] == [ids["pending"]]
    assert (await chancy.get_job(ids["pending"])).queue == "reports"
    pri = await api.post(f"/api/v1/jobs/{ids['pending']}/reprioritize", json={"priority": 7})
    assert pri.json()["done"] == [ids["pending"]]
    assert (await chancy.get_job(ids["pending"])).priority == 7
    cancelled = await api.post(f"/api/v1/jobs/{ids['pending']}/cancel")
    assert cancelled.json()["done"] == [ids["pending"]]
    assert (await chancy.get_job(ids["pending"])).state is QueuedJob.State.FAILED
    finished = (await api.post(f"/api/v1/jobs/{ids['ok']}/cancel")).json()
    assert finished["skipped"] == {ids["ok"]: "job is succeeded"}
    deleted = await api.delete(f"/api/v1/jobs/{ids['ok']}")
    assert deleted.json()["done"] == [ids["ok"]]
    assert await chancy.get_job(ids["ok"]) is None
    assert (await api.delete(f"/api/v1/jobs/{ids['ok']}")).status_code == 404
    assert (await api.post(f"/api/v1/jobs/{ids['ok']}/retry")).status_code == 404
    bad = await api.post(f"/api/v1/jobs/{ids['report']}/move", json={"queue": "no way"})
    assert bad.status_code == 400


async def test_bulk_actions_by_filter_and_ids_report_each_job(api, chancy: Chancy) -> None:
    ids = await some_jobs(chancy)
    everything = await api.post("/api/v1/jobs/retry", json={"where": {}})
    assert everything.status_code == 400
    assert "where: must not be empty" in everything.json()["error"]
    assert (await api.post("/api/v1/jobs/retry", json={"all": False})).status_code == 400
    both = await api.post(
        "/api/v1/jobs/retry", json={"ids": [ids["ok"]], "where": {"queue": "mail"}}
    )
    assert both.status_code == 400
    result = (await api.post("/api/v1/jobs/retry", json={"where": {"queue": "mail"}})).json()
    assert sorted(result["done"]) == sorted([ids["ok"], ids["failed"]])
    assert result["skipped"] == {ids["pending"]: "job is pending, not finished"}
    unknown = "01a00000-0000-7000-8000-000000000000"
    moved = (
        await api.post("/api/v1/jobs/move", json={"ids": [ids["report"], unknown], "queue": "mail"})
    ).json()
    assert moved == {"done": [ids["report"]], "skipped": {unknown: "no such job"}}
    pri = (
        await api.post(
            "/api/v1/jobs/reprioritize", json={"where": {"func": "shop.report"}, "priority": 3}
        )
    ).json()
    assert pri["done"] == [ids["report"]]
    purged = (await api.post("/api/v1/jobs/purge", json={"all": True})).json()
    assert len(purged["done"]) == 4
    assert await fetch(chancy, "SELECT id FROM {jobs}") == []


async def test_queue_actions(api, chancy: Chancy) -> None:
    created = await api.put("/api/v1/queues/fresh", json={"concurrency": 3, "tags": ["gpu"]})
    assert created.status_code == 201, created.text
    assert created.json()["concurrency"] == 3
    updated = await api.put(
        "/api/v1/queues/fresh", json={"rate_limit": 10, "rate_limit_window": 60}
    )
    assert updated.status_code == 200
    queue = await chancy.get_queue("fresh")
    assert (queue.concurrency, queue.tags, queue.rate_limit) == (3, {"gpu"}, 10)
    unlimited = await api.put("/api/v1/queues/fresh", json={"rate_limit": None})
    assert unlimited.json()["rate_limit"] is None
    bad = await api.put("/api/v1/queues/fresh", json={"tags": ["("]})
    assert bad.status_code == 400
    assert "regular expression" in bad.json()["error"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    paused = (await api.post("/api/v1/queues/fresh/pause", json={"resume_at": later})).json()
    assert paused["state"] == "paused"
    assert paused["resume_at"] is not None
    paused = (await api.post("/api/v1/queues/fresh/pause", json={"resume_in": 60})).json()
    assert paused["resume_at"] is not None
    both = {"resume_at": later, "resume_in": 60}
    assert (await api.post("/api/v1/queues/fresh/pause", json=both)).status_code == 400
    assert (await api.post("/api/v1/queues/fresh/resume")).json()["state"] == "active"
    assert (await api.post("/api/v1/queues/nope/pause")).status_code == 404
    deleted = await api.delete("/api/v1/queues/fresh", params={"purge_jobs": "false"})
    assert deleted.json() == {"deleted": "fresh", "purged_jobs": False}
    assert (await api.delete("/api/v1/queues/fresh")).status_code == 404


async def test_unknown_routes_and_methods_answer_json(api) -> None:
    missing = await api.get("/api/v1/nothing")
    assert missing.status_code == 404
    assert "error" in missing.json()
    wrong = await api.patch("/api/v1/queues")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, HEAD"
    assert (await api.post("/api/v1/jobs/retry", content=b"{not json")).status_code == 400


# -- pages -------------------------------------------------------------------------------------


async def test_every_page_renders(api, chancy: Chancy) -> None:
    ids = await some_jobs(chancy)
    for path, text in [
        ("/", "Recent failures"),
        ("/queues", "mail"),
        ("/queues/mail", "Pause the queue"),
        ("/jobs?state=failed&queue=mail", ids["failed"]),
        (f"/jobs/{ids['failed']}", "ConnectionError: mail server down"),
        ("/workers", "No worker is running"),
        ("/schedules", "Cron plugin is not installed"),
    ]:
        page = await api.get(path)
        assert page.status_code == 200, (path, page.text)
        assert text in page.text, path
    assert (await api.get("/jobs/01a00000-0000-7000-8000-000000000000")).status_code == 404
    assert (await api.get("/queues/nope")).status_code == 404
    assert (await api.get("/jobs?state=done")).status_code == 400
    assert (await api.get("/nowhere")).status_code == 404
    # A live update asks for the changing part only.
    live = await api.get("/jobs", headers={"X-Chancy-Live": "1"})
    assert "<html" not in live.text
    assert ids["failed"] in live.text


async def test_pages_time_filters_take_the_forms_local_times(api, chancy: Chancy) -> None:
    ids = await some_jobs(chancy)
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    page = await api.get("/jobs", params={"since": since, "state": "failed"})
    assert page.status_code == 200
    assert ids["failed"] in page.text
    assert (await api.get("/jobs", params={"since": "yesterday"})).status_code == 400


async def test_mounted_under_a_prefix_everything_follows_the_mount(
    client_for, chancy: Chancy
) -> None:
    await chancy.declare(Queue("mail"))
    dashboard = create_app(chancy, token=TOKEN)
    host = Starlette(routes=[Mount("/ops/chancy", app=dashboard)])
    client = await client_for(host)
    first = await client.get("/ops/chancy/jobs")
    assert first.status_code == 303
    assert first.headers["location"] == "/ops/chancy/login?next=%2Fops%2Fchancy%2Fjobs"
    csrf = await log_in(client, "/ops/chancy", token=TOKEN)
    page = await client.get("/ops/chancy/queues/mail")
    assert page.status_code == 200
    assert 'href="/ops/chancy/static/app.css' in page.text
    assert 'content="/ops/chancy"' in page.text  # the base the script calls the API under
    assert 'href="/ops/chancy/jobs"' in page.text
    cookie = client.cookies.jar
    assert {c.path for c in cookie if c.name == "chancy_dashboard"} == {"/ops/chancy"}
    assert (await client.get("/ops/chancy/static/app.js")).status_code == 200
    doc = (await client.get("/ops/chancy/api/v1/openapi.json")).json()
    assert doc["servers"] == [{"url": "/ops/chancy/api/v1"}]
    paused = await client.post(
        "/ops/chancy/api/v1/queues/mail/pause", headers={"X-CSRF-Token": csrf}
    )
    assert paused.status_code == 200


async def test_openapi_document_names_every_endpoint(api) -> None:
    doc = (await api.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    operations = {
        f"{method.upper()} {path}" for path, item in doc["paths"].items() for method in item
    }
    for wanted in [
        "GET /queues",
        "GET /queues/{name}",
        "POST /queues/{name}/pause",
        "POST /queues/{name}/resume",
        "GET /jobs",
        "GET /jobs/{id}",
        "POST /jobs/{id}/retry",
        "POST /jobs/{id}/cancel",
        "DELETE /jobs/{id}",
        "POST /jobs/retry",
        "GET /workers",
        "GET /metrics",
        "GET /health",
    ]:
        assert wanted in operations, wanted
    assert doc["paths"]["/health"]["get"]["security"] == []


async def test_workers_show_running_jobs_children_and_the_leader(
    dsn: str, prefix: str, client_for
) -> None:
    import anyio
    from support import FAST, eventually

    from chancy.plugins import default_plugins
    from chancy.worker import Worker

    app = Chancy(dsn, prefix=prefix, plugins=default_plugins(), poll_reconnect_timeout=10)
    async with app:
        await app.migrate()
        await app.declare(Queue("slow", concurrency=1))  # the process executor
        ref = await app.push(Job(func="dashjobs.nap", queue="slow", kwargs={"seconds": 30}))
        client = await client_for(create_app(app, token=TOKEN))
        client.headers.update(AUTH)
        async with Worker(app, **FAST) as worker:

            async def running() -> dict | None:
                rows = (await client.get("/api/v1/workers")).json()["workers"]
                for w in rows:
                    if w["running"] and w["children"] and w["children"][0]["job"]:
                        return w
                return None

            w = await eventually(running, 60, "the worker to report its child running the job")
            assert w["worker_id"] == worker.worker_id
            assert w["alive"] is True
            assert w["running"][0]["id"] == ref.identifier
            child = w["children"][0]
            assert child["queue"] == "slow"
            assert child["pid"] > 0
            assert child["rss"] > 1_000_000
            assert child["job"] == ref.identifier
            page = await client.get("/workers")
            assert str(child["pid"]) in page.text
            assert "Process executor children" in page.text
            await app.cancel_job(ref)
            with anyio.fail_after(30):
                await app.wait_for_job(ref, timeout=30)
