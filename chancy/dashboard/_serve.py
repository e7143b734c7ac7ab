"""`chancy --app mod:chancy dashboard` (also spelt `chancy worker web`): serve the dashboard
with uvicorn, secure by default (see docs/dashboard.md)."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from chancy.app import Chancy


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000)")
    p.add_argument(
        "--token",
        help="the access token (API: Authorization: Bearer <token>; or typed on the login "
        "page); default: $CHANCY_DASHBOARD_TOKEN. Prefer --token-file: a command line is "
        "visible to every user of the machine",
    )
    p.add_argument("--token-file", type=Path, help="read the access token from this file")
    p.add_argument(
        "--users-file",
        type=Path,
        help="people who log in with a password: lines of NAME:HASH, the hash from "
        "`chancy misc hash-password` (default: $CHANCY_DASHBOARD_USERS_FILE)",
    )
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without logging in; only on a loopback address",
    )
    p.add_argument("--read-only", action="store_true", help="refuse every change")
    p.add_argument("--hide-args", action="store_true", help="show no job's kwargs nor result")
    p.add_argument(
        "--secret-key-file",
        type=Path,
        help="signs the session cookies (default: $CHANCY_DASHBOARD_SECRET, else random: "
        "logins end on a restart; replicas behind one address need the same key)",
    )
    p.add_argument(
        "--root-path",
        default="",
        help="the path prefix a reverse proxy serves the dashboard under, e.g. /chancy",
    )
    p.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="proxies whose X-Forwarded-For/-Proto headers are trusted (default: 127.0.0.1)",
    )
    p.add_argument("--title", default="Chancy", help="the name shown in the pages")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc.strerror}") from None


def _users(path: Path | None) -> dict[str, str]:
    if path is None:
        env = os.environ.get("CHANCY_DASHBOARD_USERS_FILE")
        path = Path(env) if env else None
    if path is None:
        return {}
    users: dict[str, str] = {}
    for number, line in enumerate(_read(path, "--users-file").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--users-file {path}, line {number}: expected NAME:HASH")
        users[name.strip()] = hashed.strip()
    return users


def serve(chancy: Chancy, args: argparse.Namespace) -> int:
    """Run the dashboard until SIGINT/SIGTERM; 2 on bad options."""
    from chancy._http import is_loopback

    def fail(message: str) -> int:
        print(f"chancy dashboard: {message}", file=sys.stderr)
        return 2

    try:
        import uvicorn

        from chancy.dashboard import create_app
    except ImportError as exc:
        return fail(f"needs the dashboard extra: pip install 'chancy-queue[dashboard]' ({exc})")
    try:
        token = args.token or os.environ.get("CHANCY_DASHBOARD_TOKEN") or None
        if args.token_file is not None:
            token = _read(args.token_file, "--token-file")
        users = _users(args.users_file)
        secret = os.environ.get("CHANCY_DASHBOARD_SECRET") or None
        if args.secret_key_file is not None:
            secret = _read(args.secret_key_file, "--secret-key-file")
    except ValueError as exc:
        return fail(str(exc))
    loopback = is_loopback(args.host)
    if args.no_auth and (token or users):
        return fail("--no-auth: a token or users were given too; drop one or the other")
    if args.no_auth and not loopback:
        return fail(
            f"--no-auth is only allowed on a loopback address (not {args.host}): anyone who "
            "can reach it could change your queues; give --token-file or --users-file"
        )
    if not (token or users or args.no_auth):
        return fail(
            "give --token-file (or --token, $CHANCY_DASHBOARD_TOKEN) or --users-file, or "
            "--no-auth to serve without logging in on a loopback address"
        )
    root_path = args.root_path.rstrip("/")
    if root_path and not root_path.startswith("/"):
        return fail(f"--root-path: expected a path such as /chancy, got {args.root_path!r}")
    try:
        app = create_app(
            chancy,
            token=token,
            users=users,
            read_only=args.read_only,
            hide_args=args.hide_args,
            no_auth=args.no_auth,
            secret_key=secret,
            title=args.title,
        )
    except ValueError as exc:
        return fail(str(exc))
    log = logging.getLogger("chancy.dashboard")
    if not loopback:
        log.warning(
            "dashboard: listening on %s, not a loopback address: serve it over HTTPS (a "
            "reverse proxy terminating TLS) so that tokens and cookies are not sent in clear",
            args.host,
        )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        root_path=root_path,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        log_level=args.log_level,
        lifespan="off",
        server_header=False,
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        async with chancy:
            await server.serve()

    asyncio.run(run())
    return 0


def hash_password_command(args: argparse.Namespace) -> int:
    """`chancy misc hash-password`: read a password (twice at a terminal, else one line of
    standard input) and print its hash for --users-file."""
    from chancy.dashboard._auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("chancy: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("chancy: empty password", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0
