"""The dashboard in a real browser: headless Chromium (Debian's `chromium`, driven by
Playwright) against a real dashboard process and a real supervisor.

Screenshots of every page, light and dark, go to `$CHANCY_SCREENSHOTS` (default: the test's
temporary folder, printed at the end): look at them after a change to the pages.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import dashboard, drop_prefix, supervisor

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(
        "no Chromium at /usr/bin/chromium: install Debian's `chromium` package (.ci/run "
        "does, as root, with apt-get)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the test extra brings Playwright for Python"
)

from chancy import Chancy, Job, Queue, QueuedJob  # noqa: E402
from chancy.plugins import default_plugins  # noqa: E402
from chancy.plugins.cron import Cron, schedule  # noqa: E402
from chancy.plugins.metrics import Metrics  # noqa: E402

TOKEN = "browser-token-" + secrets.token_hex(12)
#: As the probes run it here: no network of its own, no sandbox (root), a fresh profile.
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT = 30_000  # ms


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = Path(os.environ.get("CHANCY_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    print(f"\ndashboard screenshots: {folder}")


@pytest.fixture(scope="module")
def world(dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A database with queues, jobs and schedules, a supervisor running them, and two
    dashboards over it: a normal one and a read-only one."""
    folder = tmp_path_factory.mktemp("browser")
    prefix = f"b{secrets.token_hex(4)}_"
    marker = folder / "mail-server-up"
    app = Chancy(dsn, prefix=prefix, plugins=[*default_plugins(), Metrics(), Cron()])
    token_file = folder / "token"
    token_file.write_text(TOKEN)
    with app:
        app.sync_migrate()
        app.sync_declare(Queue("mail", executor=Chancy.Executor.Threaded, concurrency=4))
        app.sync_declare(Queue("reports", executor=Chancy.Executor.Threaded, concurrency=2))
        app.sync_declare(Queue("billing", executor=Chancy.Executor.Threaded))
        jobs = [Job(func="dashjobs.add", queue="mail", kwargs={"a": n, "b": 2}) for n in range(12)]
        jobs += [
            Job(func="dashjobs.broken", queue="mail", kwargs={"order": 1000 + n}) for n in range(3)
        ]
        jobs.append(
            Job(
                func="dashjobs.add",
                queue="mail",
                kwargs={"a": "<script>alert(1)</script>", "b": "x"},
            )
        )
        jobs.append(Job(func="dashjobs.nap", queue="reports", kwargs={"seconds": 120}))
        for batch in app.sync_push_many(jobs):
            assert batch
        fragile = app.sync_push(
            Job(func="dashjobs.fragile", queue="mail", kwargs={"marker": str(marker)})
        )
    import anyio

    async def schedules() -> None:
        async with app:
            await schedule(
                app,
                "*/5 * * * *",
                Job(func="dashjobs.add", queue="mail", kwargs={"a": 1, "b": 2}),
                name="every-five-minutes",
            )
            await schedule(
                app,
                "0 3 * * *",
                Job(func="dashjobs.nap", queue="reports", kwargs={"seconds": 1}),
                name="nightly-report",
                timezone="Europe/Paris",
            )

    anyio.run(schedules)
    try:
        with (
            supervisor(dsn, prefix, log=folder / "supervisor.log"),
            dashboard(dsn, prefix, token_file, log=folder / "dashboard.log") as url,
            dashboard(dsn, prefix, token_file, "--read-only", log=folder / "ro.log") as ro_url,
        ):
            with app:
                done = app.sync_wait_for_job(fragile, timeout=60)
                assert done is not None
                assert done.state is QueuedJob.State.FAILED
            yield {
                "app": app,
                "url": url,
                "ro_url": ro_url,
                "fragile": fragile.identifier,
                "marker": marker,
                "folder": folder,
            }
    finally:
        drop_prefix(dsn, prefix)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser: Any, scheme: str = "light") -> Any:
    context = browser.new_context(viewport={"width": 1366, "height": 850}, color_scheme=scheme)
    page = context.new_page()
    page.set_default_timeout(WAIT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    return page


def log_in(page: Any, url: str) -> None:
    page.goto(url + "/")
    assert "/login" in page.url
    page.fill("input[name=token]", "wrong-token-000000000000")
    page.click("button[type=submit]")
    assert page.locator("#login-error").inner_text() == "Wrong credentials."
    page.errors.clear()  # the browser logs that 401 answer as an error
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def test_log_in_see_a_pushed_job_live_and_filter(world: dict[str, Any], browser: Any) -> None:
    page = new_page(browser)
    log_in(page, world["url"])
    assert page.locator("h2", has_text="Queues").is_visible()
    page.goto(world["url"] + "/jobs")
    assert page.locator("#live-toggle").is_visible()
    with world["app"]:
        ref = world["app"].sync_push(
            Job(func="dashjobs.add", queue="billing", kwargs={"a": 40, "b": 2})
        )
    # No reload: the live update brings the row in (and then the worker finishes it).
    row = page.locator(f'tr[data-id="{ref.identifier}"]')
    row.wait_for()
    row.locator(".s-succeeded").wait_for()
    # Filter: failed jobs of the mail queue.
    page.fill("#filters input[name=queue]", "mail")
    page.select_option("#filters select[name=state]", "failed")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r".*state=failed.*"))
    states = page.locator("table.jobs tbody .state").all_inner_texts()
    assert states
    assert set(states) == {"failed"}
    assert len(states) == 4  # 3 broken + the fragile one
    assert page.locator("text=<script>alert(1)</script>").count() == 0  # not on this page
    assert page.errors == []  # type: ignore[attr-defined]


def test_read_a_traceback_retry_and_watch_it_succeed(world: dict[str, Any], browser: Any) -> None:
    page = new_page(browser)
    log_in(page, world["url"])
    page.goto(world["url"] + "/jobs?state=failed&func=dashjobs.fragile")
    page.click("table.jobs a.func")
    page.wait_for_url(re.compile(".*/jobs/" + world["fragile"]))
    traceback = page.locator("pre.traceback").first.inner_text()
    assert "Traceback (most recent call last)" in traceback
    assert "ConnectionError: the mail server is down" in traceback
    world["marker"].write_text("up")  # the cause is fixed
    page.click("#retry-job")
    page.locator("h1 .s-succeeded").wait_for()  # live: no reload
    assert '"delivered"' in page.locator("#result").inner_text()
    assert page.locator(".timeline li").count() >= 4
    assert page.errors == []  # type: ignore[attr-defined]


def test_pause_a_queue(world: dict[str, Any], browser: Any) -> None:
    page = new_page(browser)
    log_in(page, world["url"])
    page.goto(world["url"] + "/queues/reports")
    page.click("#pause-queue")
    page.locator(".tile .s-paused").wait_for()
    with world["app"]:
        assert world["app"].sync_get_queue("reports").state is Queue.State.PAUSED
    page.click("#resume-queue")
    page.locator(".tile .s-active").wait_for()
    with world["app"]:
        assert world["app"].sync_get_queue("reports").state is Queue.State.ACTIVE


def test_job_arguments_show_as_text(world: dict[str, Any], browser: Any) -> None:
    page = new_page(browser)
    log_in(page, world["url"])
    page.goto(world["url"] + "/jobs?queue=mail&func=dashjobs.add&limit=100")
    cell = page.locator("code.args", has_text="<script>alert(1)</script>")
    assert cell.count() == 1  # shown as text; had it been markup it would have run
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_read_only_session_cannot_change_anything(world: dict[str, Any], browser: Any) -> None:
    page = new_page(browser)
    log_in(page, world["ro_url"])
    assert page.locator(".badge.ro").is_visible()
    page.goto(world["ro_url"] + "/jobs?state=failed")
    assert page.locator("#bulk").count() == 0
    page.click("table.jobs a.func >> nth=0")
    page.locator("pre.traceback").first.wait_for()
    assert page.locator("#retry-job").count() == 0
    page.goto(world["ro_url"] + "/queues/mail")
    assert page.locator("#pause-queue").count() == 0
    # The server refuses too, whatever a page sends (this one has a valid CSRF token).
    status = page.evaluate(
        """async () => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch('/api/v1/queues/mail/pause', {method: 'POST',
                headers: {'X-CSRF-Token': csrf}});
            return [r.status, (await r.json()).error];
        }"""
    )
    assert status == [403, "the dashboard is read-only"]
    with world["app"]:
        assert world["app"].sync_get_queue("mail").state is Queue.State.ACTIVE


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_of_every_page(
    world: dict[str, Any], browser: Any, screenshots: Path, scheme: str
) -> None:
    page = new_page(browser, scheme)
    page.goto(world["url"] + "/login")
    page.screenshot(path=str(screenshots / f"{scheme}-login.png"))
    log_in(page, world["url"])
    with world["app"]:
        [failed, *_] = world["app"].sync_list_jobs(state="failed", func="dashjobs.broken")
    pages = {
        "overview": "/",
        "queues": "/queues",
        "queue": "/queues/mail",
        "jobs": "/jobs?queue=mail",
        "job": f"/jobs/{failed.id}",
        "workers": "/workers",
        "schedules": "/schedules",
    }
    for name, path in pages.items():
        page.goto(world["url"] + path)
        page.wait_for_load_state("networkidle")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        dark = background in ("rgb(15, 18, 24)",)
        assert dark == (scheme == "dark"), (name, background)
        # Usable on a laptop screen: nothing wider than the window.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1366, (name, width)
        page.screenshot(path=str(screenshots / f"{scheme}-{name}.png"), full_page=True)
    assert page.errors == []  # type: ignore[attr-defined]
