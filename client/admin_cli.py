"""`advlab users ...` and `advlab tokens ...`: lab-server administration, run on the server host
against its database (ADVLAB_DATABASE_URL, like `advlab migrate`) — there is no HTTP route that
creates users or tokens, so a leaked API token can never mint another.

A token is printed once, at creation; the database keeps only its sha256.
"""

from __future__ import annotations

from typing import Optional

import typer

users_app = typer.Typer(help="Lab-server users (ADVLAB_AUTH=tokens).", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens of lab-server users.", no_args_is_help=True)


def _store():
    from lab.store import open_store
    from lab.store.base import SchemaOutOfDate

    try:
        return open_store()
    except SchemaOutOfDate as exc:
        raise SystemExit(f"advlab: {exc}") from None


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name (letters, digits, . _ -)."),
    admin: bool = typer.Option(False, "--admin", help="May cancel, retry and delete anyone's jobs."),
) -> None:
    """Create a user."""
    import re

    from lab.store.base import Duplicate

    if not re.fullmatch(r"[A-Za-z0-9._\-]{1,64}", name) or name == "me":
        raise SystemExit(f"advlab: invalid user name {name!r} (1-64 of A-Z a-z 0-9 . _ -; not 'me')")
    store = _store()
    try:
        user = store.create_user(name, is_admin=admin)
    except Duplicate as exc:
        raise SystemExit(f"advlab: {exc}") from None
    finally:
        store.close()
    typer.echo(f"user {user.name}{' (admin)' if user.is_admin else ''} created")


@users_app.command("ls")
def users_ls() -> None:
    """List users."""
    store = _store()
    try:
        users = store.list_users()
    finally:
        store.close()
    for user in users:
        typer.echo(f"{user.name}\t{'admin' if user.is_admin else 'user'}\t"
                   f"{user.created_at:%Y-%m-%d %H:%M}")


@tokens_app.command("create")
def tokens_create(
    name: str = typer.Argument(..., help="The user the token authenticates."),
    label: str = typer.Option("", help="A note to recognise the token by (e.g. the laptop)."),
) -> None:
    """Create a token and print it ONCE (only its hash is stored)."""
    from service.auth import generate_token, hash_token
    from lab.store.base import NotFound

    token = generate_token()
    store = _store()
    try:
        record = store.create_token(name, hash_token(token), label=label)
    except NotFound as exc:
        raise SystemExit(f"advlab: {exc}") from None
    finally:
        store.close()
    typer.echo(token)
    typer.echo(f"token id {record.id} for {record.user}: store it now, it is not shown again "
               "(send it as `Authorization: Bearer <token>`)", err=True)


@tokens_app.command("ls")
def tokens_ls(name: Optional[str] = typer.Argument(None, help="Only this user's tokens.")) -> None:
    """List tokens (ids, users, labels, revoked or not — never the tokens)."""
    store = _store()
    try:
        tokens = store.list_tokens(name)
    finally:
        store.close()
    for t in tokens:
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        typer.echo(f"{t.id}\t{t.user}\t{state}\t{t.label}")


@tokens_app.command("revoke")
def tokens_revoke(token_id: str = typer.Argument(..., help="Token id (from `tokens ls`).")) -> None:
    """Revoke a token: the next request with it is a 401."""
    from lab.store.base import NotFound

    store = _store()
    try:
        record = store.revoke_token(token_id)
    except NotFound as exc:
        raise SystemExit(f"advlab: {exc}") from None
    finally:
        store.close()
    typer.echo(f"token {record.id} of {record.user} revoked")


def mount(app: typer.Typer) -> None:
    """What client/cli.py calls: adds the `users` and `tokens` command groups."""
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
