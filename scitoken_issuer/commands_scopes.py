"""Operator tools for scope authorization (docs/authorization.md): ``check-scope``, ``cache``, ``scan-tree``.

Exit codes: 0 success (every scope granted), 1 a scope refused (or a precompute already
running), 2 bad input (unknown user, malformed scope, bad path), 3 a dependency the decision
needs is down (LDAP beyond its bounded staleness, Redis, a missing strict-mode index).
"""

from __future__ import annotations

import logging
import os
import time

import click
import redis
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from workers import tasks

from .background import TaskQueueUnavailable, dispatch
from .extensions import runtime
from .services.authorization import Grant
from .services.group_cache import PrecomputeInProgress
from .services.groups import GroupsUnavailable
from .services.policy import AnyClient
from .services.posix import Decision
from .services.scopes import Scope, ScopeError, parse_scope
from .services.tree_index import TreeScanError, scan_tree
from .services.tree_store import TreeIndexMissing
from .services.users import PosixUser

logger = logging.getLogger(__name__)

EXIT_REFUSED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 1, 2, 3

#: What each rule of docs/authorization.md checks, for ``check-scope`` output.
RULES = {
    1: "rule 1 of docs/authorization.md: the path is valid and stays inside POSIX_PATH",
    2: "rule 2 of docs/authorization.md: the target (or its nearest existing ancestor) grants the permission",
    3: "rule 3 of docs/authorization.md: every ancestor directory grants traverse (x)",
    4: "rule 4 of docs/authorization.md (strict mode): no file or directory below the target denies it",
}


cache_cli = AppGroup("cache", help="Precompute and inspect the group cache (docs/authorization.md).")


def _fail(message: str, code: int) -> None:
    click.echo(f"scitoken-issuer: {message}", err=True)
    raise SystemExit(code)


def _lookup_user(username: str) -> PosixUser:
    """The user from the app's group cache/source; exits 2 if unknown, 3 if the source is down."""
    try:
        user = runtime().groups.get(username)
    except GroupsUnavailable as exc:
        _fail(f"cannot resolve {username!r}: {exc}", EXIT_UNAVAILABLE)
    if user is None:
        _fail(f"unknown user {username!r} (not found in the group source)", EXIT_BAD_INPUT)
    return user


def _decision_lines(decision: Decision) -> list[str]:
    """The reason, then which inode, class, bits and rule decided."""
    lines = [decision.reason]
    where = []
    if decision.checked is not None:
        where.append(f"{decision.checked}" + ("" if decision.exists else " (nearest existing ancestor)"))
    if decision.access_class:
        where.append(f"{decision.access_class} class")
    if decision.missing:
        where.append(f"missing {decision.missing}")
    if decision.mode is not None:
        where.append(f"mode {decision.mode:04o} owner {decision.owner} group {decision.group}")
    if where:
        lines.append("decided by: " + ", ".join(where))
    if decision.step is not None:
        lines.append(f"refused at {RULES[decision.step]}")
    elif decision.granted:
        lines.append("passed rules 1-3 of docs/authorization.md" + (
            " and 4 (strict mode)" if runtime().policy.strict else "; strict mode is off (POSIX_STRICT=false)"))
    return lines


def _check_one(user: PosixUser, scope: Scope, client) -> tuple[bool, list[str]]:
    """(granted, explanation lines) for one scope: the token's own decision (``grant_scopes``),
    with what it saw on the way."""
    lines: list[str] = []

    def explain(_: Scope, why: Decision | str) -> None:
        lines.extend(_decision_lines(why) if isinstance(why, Decision) else [why])

    outcome = runtime().policy.grant_scopes(user, [scope], client, explain=explain)
    if not isinstance(outcome, Grant) and not lines:
        lines.append(outcome.reason)
    return isinstance(outcome, Grant), lines


@click.command("check-scope")
@click.argument("username", metavar="USER")
@click.argument("scopes", metavar="SCOPE...", nargs=-1, required=True)
@click.option("--client", "client_id",
              help="decide as for this client (its registered scope policy); default: a client with none")
@with_appcontext
def check_scope_command(username: str, scopes: tuple[str, ...], client_id: str | None) -> None:
    """Print, per SCOPE, GRANTED or REFUSED for USER and why (docs/authorization.md).

    Each scope is decided by the same ``grant_scopes`` a token request goes through, with the
    app's group source and cache and, in strict mode, the live permission index; without
    --client, as for a client that registered no scope (the default user-client policy).
    Exit 0 if all are granted, 1 if any is refused, 2 for bad input, 3 if a dependency is down.
    """
    parsed: list[Scope] = []
    for text in scopes:
        try:
            parsed.append(parse_scope(text))
        except ScopeError as exc:
            _fail(f"malformed scope {text!r}: {exc}", EXIT_BAD_INPUT)
    client = AnyClient()
    if client_id is not None:
        client = runtime().clients.get(client_id)
        if client is None:
            _fail(f"unknown client {client_id!r}", EXIT_BAD_INPUT)
    user = _lookup_user(username)
    click.echo(f"user {user.name}: uid {user.uid}, gid {user.gid}, groups "
               + (", ".join(f"{g}({user.groups[g]})" if g in user.groups else str(g)
                            for g in sorted(user.gids))))
    click.echo(f"client {client.client_id}")
    refused = 0
    for scope in parsed:
        try:
            granted, lines = _check_one(user, scope, client)
        except TreeIndexMissing as exc:
            _fail(f"{exc}; build it with `scitoken-issuer scan-tree --store`", EXIT_UNAVAILABLE)
        except TreeScanError as exc:
            _fail(f"the strict-mode index cannot be built: {exc}", EXIT_UNAVAILABLE)
        except redis.exceptions.RedisError as exc:
            _fail(f"Redis is unavailable: {exc}", EXIT_UNAVAILABLE)
        refused += not granted
        click.echo(f"{'GRANTED' if granted else 'REFUSED'} {scope.raw}")
        for line in lines:
            click.echo(f"    {line}")
    raise SystemExit(EXIT_REFUSED if refused else 0)


@cache_cli.command("refresh")
@click.option("--async", "run_async", is_flag=True,
              help="send the refresh_group_cache task to the workers instead of running it here")
@with_appcontext
def cache_refresh(run_async: bool) -> None:
    """Precompute every user's groups now and print users, groups and seconds."""
    if run_async:
        try:
            result = dispatch(tasks.refresh_group_cache)
        except TaskQueueUnavailable:
            _fail("Redis is unavailable: the task could not be sent to the workers", EXIT_UNAVAILABLE)
        if not runtime().settings.redis_url:  # no broker: Celery ran it in this process
            stats = result.get()
            if stats is None:
                _fail("a group-cache precompute is already running", EXIT_REFUSED)
            click.echo(f"{stats['users']} users, {stats['groups']} groups in {stats['seconds']:.2f} s")
        else:
            click.echo(f"queued refresh_group_cache (task {result.id})")
        return
    try:
        stats = runtime().groups.precompute()
    except PrecomputeInProgress as exc:
        _fail(str(exc), EXIT_REFUSED)
    except GroupsUnavailable as exc:
        _fail(f"the group source is unavailable: {exc}", EXIT_UNAVAILABLE)
    except redis.exceptions.RedisError as exc:
        _fail(f"Redis is unavailable: {exc}", EXIT_UNAVAILABLE)
    click.echo(f"{stats.users} users, {stats.groups} groups in {stats.seconds:.2f} s")


@cache_cli.command("show")
@click.argument("username", metavar="USER")
@with_appcontext
def cache_show(username: str) -> None:
    """Print USER's groups as the group cache answers them (a miss is looked up live and stored)."""
    user = _lookup_user(username)
    click.echo(f"{user.name}: uid {user.uid}, primary gid {user.gid}")
    for gid in sorted(user.gids):
        click.echo(f"  {gid:>10}  {user.groups.get(gid, '(no name)')}")
    meta = runtime().groups.last_precompute()
    if meta:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(meta["generation"]))
        click.echo(f"last precompute: {when}, {meta['users']} users, {meta['groups']} groups")
    elif runtime().redis is None:
        click.echo("last precompute: none in this process (without REDIS_URL each process has its own cache)")
    else:
        click.echo("last precompute: none (answers come from live look-ups)")


@click.command("scan-tree")
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option("--store", is_flag=True, help="store the scan as the live strict-mode index of POSIX_PATH")
@with_appcontext
def scan_tree_command(path: str | None, store: bool) -> None:
    """Scan PATH (default POSIX_PATH) and print the entries strict mode records (rule 4 of
    docs/authorization.md)."""
    rt = runtime()
    root = path or rt.settings.posix_path
    if root is None:
        _fail("give a PATH, or set POSIX_PATH", EXIT_BAD_INPUT)
    if store and (rt.tree is None or os.path.realpath(root) != os.path.realpath(rt.tree.root)):
        _fail(f"--store keeps the index of POSIX_PATH ({rt.settings.posix_path or 'unset'}) only", EXIT_BAD_INPUT)
    try:
        index = rt.tree.rebuild() if store else scan_tree(root)
    except TreeScanError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except redis.exceptions.RedisError as exc:
        _fail(f"Redis is unavailable, the index was not stored: {exc}", EXIT_UNAVAILABLE)
    for line in index.describe():
        click.echo(line)
    if store:
        click.echo(f"# stored as the live strict-mode index of {rt.tree.root}")


def init_scope_cli(app: Flask) -> None:
    """Register ``check-scope``, ``cache`` and ``scan-tree`` on ``app.cli``."""
    app.cli.add_command(check_scope_command)
    app.cli.add_command(cache_cli)
    app.cli.add_command(scan_tree_command)
