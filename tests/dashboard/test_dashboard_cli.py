"""`chancy ... dashboard` (and `chancy worker web`): secure by default, as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from servers import dashboard, drop_prefix, environment

from chancy import Chancy
from chancy.dashboard import verify_password


def run(dsn: str, prefix: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chancy.cli", "--app", "dashapp:make", *args],
        env=environment(dsn, prefix),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_dashboard_is_never_served_open_by_accident(
    dsn: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("CHANCY_DASHBOARD")]:
        monkeypatch.delenv(name)
    nothing = run(dsn, prefix, "dashboard")
    assert nothing.returncode == 2
    assert "give --token-file" in nothing.stderr
    remote = run(dsn, prefix, "dashboard", "--no-auth", "--host", "0.0.0.0")
    assert remote.returncode == 2
    assert "only allowed on a loopback address" in remote.stderr
    alias = run(dsn, prefix, "worker", "web", "--no-auth", "--host", "10.1.2.3")
    assert alias.returncode == 2
    assert "only allowed on a loopback address" in alias.stderr


def test_bad_files_are_one_line_errors(dsn: str, prefix: str, tmp_path: Path) -> None:
    missing = run(dsn, prefix, "dashboard", "--token-file", str(tmp_path / "none"))
    assert missing.returncode == 2
    assert "--token-file: cannot read" in missing.stderr
    users = tmp_path / "users"
    users.write_text("alice:not-a-hash\n")
    clear = run(dsn, prefix, "dashboard", "--users-file", str(users))
    assert clear.returncode == 2
    assert "not a password" in clear.stderr


def test_hash_password_needs_no_app_and_hashes(tmp_path: Path) -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "chancy.cli", "misc", "hash-password"],
        input="correct horse\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0, answer.stderr
    hashed = answer.stdout.strip()
    assert hashed.startswith("scrypt$")
    assert "correct horse" not in hashed
    assert verify_password("correct horse", hashed)
    assert not verify_password("correct horsE", hashed)


def test_users_file_login_on_a_real_server(dsn: str, prefix: str, tmp_path: Path) -> None:
    from chancy.dashboard import hash_password

    with Chancy(dsn, prefix=prefix, plugins=[]) as app:
        app.sync_migrate()
    token = tmp_path / "token"
    token.write_text("cli-token-0123456789abcdef")
    users = tmp_path / "users"
    users.write_text(f"# operators\nalice:{hash_password('wonderland')}\n")
    try:
        with dashboard(dsn, prefix, token, "--users-file", str(users), log=tmp_path / "log") as url:
            request = urllib.request.Request(
                url + "/api/v1/queues",
                headers={"Authorization": "Bearer cli-token-0123456789abcdef"},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
            with urllib.request.urlopen(url + "/login", timeout=10) as answer:
                page = answer.read().decode()
            assert 'name="username"' in page
            assert 'name="token"' in page
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url + "/api/v1/queues", timeout=10)
            assert refused.value.code == 401
    finally:
        drop_prefix(dsn, prefix)
