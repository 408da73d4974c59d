"""Operator commands, on ``app.cli`` so both ``scitoken-issuer`` and ``flask`` see them."""

from __future__ import annotations

import json
import time

import click
from flask import Flask
from flask.cli import AppGroup

from .commands_scopes import init_scope_cli
from .extensions import db, runtime
from .services.clients import TOKEN_EXCHANGE_GRANT, ClientMetadataError
from .settings import describe

client_cli = AppGroup("client", help="Register, list, show, update and delete OAuth clients.")
keys_cli = AppGroup("keys", help="Inspect and rotate signing keys.")
tokens_cli = AppGroup("tokens", help="Revoke every token of a user or a client, or one token.")


def _client_json(client) -> dict:
    return {**client.client_info, "source": client.source, **client.client_metadata,
            "pkce_required": client.needs_pkce}


@client_cli.command("add")
@click.option("--name", "client_name", help="human name shown on consent pages")
@click.option("--grant", "grant_types", multiple=True,
              help="grant type (repeat): authorization_code, refresh_token, client_credentials, "
                   "urn:ietf:params:oauth:grant-type:device_code, "
                   "urn:ietf:params:oauth:grant-type:token-exchange")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="redirect URI (repeat)")
@click.option("--scope", help="the client's scope policy, space separated")
@click.option("--public", is_flag=True, help="a public client (no secret; PKCE required)")
@click.option("--auth-method", type=click.Choice(["client_secret_basic", "client_secret_post"]),
              default="client_secret_basic", show_default=True)
@click.option("--profile", type=click.Choice(["wlcg", "scitokens"]), help="token profile for this client")
@click.option("--client-id", help="choose the client id (default: random)")
@click.option("--pkce-required/--no-pkce-required", default=True, show_default=True,
              help="require PKCE on authorization requests (RFC 9700 §2.1.1); only a confidential "
                   "client that cannot send code_challenge should be exempted")
def client_add(client_name, grant_types, redirect_uris, scope, public, auth_method, profile, client_id,
               pkce_required):
    """Register a client as an administrator (may hold privileged grants). Prints the secret once."""
    metadata = {"client_name": client_name, "grant_types": list(grant_types) or None,
                "redirect_uris": list(redirect_uris), "scope": scope, "token_profile": profile,
                "token_endpoint_auth_method": "none" if public else auth_method}
    try:
        registration = runtime().clients.register({k: v for k, v in metadata.items() if v},
                                                  admin=True, source="admin", client_id=client_id,
                                                  pkce_required=pkce_required)
    except ClientMetadataError as exc:
        raise click.ClickException(exc.description) from None
    db.session.commit()
    out = {"source": registration.client.source, **runtime().clients.information(
        registration.client, client_secret=registration.client_secret,
        registration_access_token=registration.registration_access_token),
        "pkce_required": registration.client.needs_pkce}
    click.echo(json.dumps(out, indent=2))


@client_cli.command("list")
def client_list():
    """One line per client: id, source, grant types, name."""
    for client in runtime().clients.list():
        click.echo(f"{client.client_id:44} {client.source:8} {','.join(client.grant_types):60} {client.client_name}")


def _existing_client(client_id: str):
    """The client ``client_id``, or the command stops with one line saying there is none."""
    client = runtime().clients.get(client_id)
    if client is None:
        raise click.ClickException(f"no client {client_id}")
    return client


@client_cli.command("show")
@click.argument("client_id")
def client_show(client_id):
    client = _existing_client(client_id)
    click.echo(json.dumps(_client_json(client), indent=2))


@client_cli.command("registration-token")
@click.argument("client_id")
def client_registration_token(client_id):
    """Issue a new RFC 7592 registration access token for a client (the old one stops working)."""
    clients = runtime().clients
    client = _existing_client(client_id)
    try:
        token = clients.new_registration_token(client)
    except ClientMetadataError as exc:
        raise click.ClickException(exc.description) from None
    db.session.commit()
    click.echo(json.dumps({"registration_client_uri": clients.registration_uri(client),
                           "registration_access_token": token}, indent=2))


@client_cli.command("update")
@click.argument("client_id")
@click.option("--pkce-required/--no-pkce-required", default=None,
              help="require PKCE on this client's authorization requests, or exempt it (confidential only)")
@click.option("--allow-exchange/--forbid-exchange", "exchange", default=None,
              help="allow or forbid RFC 8693 token exchange for this (confidential) client "
                   "(docs/token-exchange.md)")
def client_update(client_id, pkce_required, exchange):
    """Change what only an administrator decides about a client."""
    clients = runtime().clients
    client = _existing_client(client_id)
    if client.source == "static":
        raise click.ClickException(f"{client_id} is defined in STATIC_CLIENTS; change it there")
    if pkce_required is None and exchange is None:
        raise click.UsageError("nothing to change: give --pkce-required/--no-pkce-required or "
                               "--allow-exchange/--forbid-exchange")
    try:
        if pkce_required is not None:
            clients.set_pkce_required(client, pkce_required)
        if exchange is not None:
            clients.set_grant(client, TOKEN_EXCHANGE_GRANT, exchange)
    except ClientMetadataError as exc:
        raise click.ClickException(exc.description) from None
    db.session.commit()
    click.echo(json.dumps(_client_json(client), indent=2))


@client_cli.command("delete")
@click.argument("client_id")
def client_delete(client_id):
    clients = runtime().clients
    client = _existing_client(client_id)
    if client.source == "static":
        raise click.ClickException(f"{client_id} is defined in STATIC_CLIENTS; remove it there")
    clients.delete(client)
    db.session.commit()
    click.echo(f"deleted {client_id}")


@keys_cli.command("list")
def keys_list():
    """The published keys of every chain and what each does now."""
    keys = runtime().keys
    listed = 0
    for alg in keys.chains(fresh=True):
        view = keys.view(alg, fresh=True)
        roles = ", ".join(keys.roles(alg)) or "no longer used"
        rows = [("next", k) for k in view.upcoming] + ([("current", view.current)] if view.current else []) + \
            [("retired", k) for k in view.retired]
        for state, key in rows:
            when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(key.activates_at))
            click.echo(f"{state:8} {key.kid} {key.alg} generation={key.generation} signs-from={when} ({roles})")
        listed += len(rows)
    if not listed:
        click.echo("no signing keys yet: the first token request or `scitoken-issuer keys rotate` creates them")


@keys_cli.command("rotate")
@click.option("--immediately", is_flag=True,
              help="sign with the new key at once; the old key stays published until its tokens expire")
@click.option("--compromised", is_flag=True,
              help="sign with the new key at once and withdraw every other key of the chain now: "
                   "what they signed stops verifying")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]),
              help="rotate only this chain (default: every chain in use: access tokens and ID tokens)")
def keys_rotate(immediately, compromised, alg):
    """Publish a new signing key in each chain; it signs after KEY_PUBLISH_HOURS (or at once)."""
    keys = runtime().keys
    if alg and alg not in keys.algs:
        raise click.ClickException(f"no {alg} chain is in use (KEY_TYPE={keys.alg}; ID tokens use RS256)")
    try:
        created = keys.rotate(immediately=immediately, alg=alg, withdraw=compromised)
    except RuntimeError as exc:  # another process rotated at the same moment
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    for key in created:
        when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(key.activates_at))
        click.echo(f"created {key.kid} ({key.alg}, {', '.join(keys.roles(key.alg))}), signs from {when}")


@tokens_cli.command("revoke")
@click.option("--user", "subject", help="the POSIX user name (the tokens' sub)")
@click.option("--client", "client_id", help="the client id")
@click.option("--jti", help="one access token, by its jti (from the audit log)")
def tokens_revoke(subject, client_id, jti):
    """Make every access token of a user or client issued until now (or one token, by jti) inactive
    at introspection, and end their refresh families and unused codes (docs/revocation.md)."""
    from .services.audit import audit
    if sum(value is not None for value in (subject, client_id, jti)) != 1:
        raise click.UsageError("give exactly one of --user, --client or --jti")
    rt = runtime()
    reason = "revoked by an administrator"
    if jti is not None:
        if not jti.strip() or len(jti) > 255 or not jti.isprintable():
            raise click.UsageError("--jti must be a token's jti")
        rt.revocations.revoke_token(jti, int(time.time()) + rt.revocations.max_token_lifetime)
        db.session.commit()
        audit("revoke", "revoked", jti=jti, reason=reason)
        click.echo(f"revoked access token {jti}")
        return
    if subject is not None:
        rt.revocations.revoke_subject(subject)
    else:
        rt.revocations.revoke_client(client_id)
    families = rt.refresh.revoke_families_of(reason, subject=subject, client_id=client_id)
    codes = rt.revocations.end_pending_codes(subject=subject, client_id=client_id)
    db.session.commit()
    audit("revoke", "revoked-all", subject=subject, client_id=client_id, reason=reason, families=families)
    who = f"user {subject}" if subject is not None else f"client {client_id}"
    click.echo(f"revoked every token of {who}: {families} refresh families and {codes} pending codes ended")


@click.command("settings")
def settings_command():
    """Every setting with its default and meaning."""
    click.echo(describe())


def init_cli(app: Flask) -> None:
    app.cli.add_command(client_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(tokens_revoke, "revoke")  # `scitoken-issuer revoke --user U` says the same
    app.cli.add_command(settings_command)
    init_scope_cli(app)
