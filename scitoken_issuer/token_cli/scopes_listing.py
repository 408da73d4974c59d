"""``scitoken-token scopes``: ask the issuer which storage scopes the signed-in user may ask for.

The CLI keeps a token of its own for this (``openid offline_access``, never written to the
bearer-token file) and sends it as an RFC 6750 bearer token to the endpoint the issuer
advertises as ``storage_scopes_endpoint`` (scitoken-issuer's ``GET /auth/scopes``). The answers
are the issuer's own token decisions for this tool's client (docs/researchers.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TextIO

from .acquire import Acquirer, TokenRequest, with_base_scopes
from .errors import EXIT_ISSUER_ERROR, CliError
from .issuer import Issuer

PERMISSIONS = ("read", "create", "modify", "stage")


def fetch_listing(acquirer: Acquirer, request: TokenRequest, path: str, depth: int | None) -> dict:
    """The listing JSON; a stored token the issuer rejects (revoked) is renewed once."""
    request = replace(request, scopes=with_base_scopes([]), audience=None)
    issuer = Issuer(request.issuer)
    url = issuer.endpoint("storage_scopes_endpoint", "list storage scopes (a scitoken-issuer feature)")
    params = {"path": path, **({"depth": str(depth)} if depth is not None else {})}
    for attempt in range(2):
        record = acquirer.acquire(request).record
        response = issuer.request("GET", url, "scopes listing", params=params,
                                  headers={"Authorization": f"Bearer {record.access_token}",
                                           "Accept": "application/json"})
        if response.status_code == 401 and attempt == 0:
            request = replace(request, minsecs=10 ** 9)  # renew, then ask again
            continue
        return issuer.json_body(response, "scopes listing")
    raise CliError(EXIT_ISSUER_ERROR, "the issuer refused a freshly renewed token for the scopes listing")


def print_listing(body: dict, out: TextIO) -> None:
    """A table of yes/no per permission, the user's groups, then each refusal's reason."""
    strict = " (recursive: strict mode)" if body.get("strict") else ""
    print(f"storage scopes {body.get('user')} may ask for with client {body.get('client_id')}{strict}:", file=out)
    paths = body.get("paths") or []
    width = max([len(p.get("path", "")) for p in paths] + [4])
    print(f"  {'path':<{width}}  " + "  ".join(f"{p:<6}" for p in PERMISSIONS), file=out)
    for entry in paths:
        answers = entry.get("permissions", {})
        cells = ["yes" if answers.get(p, {}).get("granted") else "no" for p in PERMISSIONS]
        print(f"  {entry.get('path', ''):<{width}}  " + "  ".join(f"{c:<6}" for c in cells), file=out)
    if body.get("truncated"):
        print(f"  ... only the first {body.get('max_paths')} directories are listed; use --path to look deeper",
              file=out)
    if body.get("note"):
        print(f"note: {body['note']}", file=out)
    groups = body.get("wlcg.groups") or {}
    print("wlcg.groups: " + (" ".join(groups.get("groups") or []) or
                             f"none ({groups.get('reason', 'no groups')})"), file=out)
    refusals = [a for e in paths for a in (e.get("permissions") or {}).values() if not a.get("granted")]
    if refusals:
        print("why not:", file=out)
        for answer in refusals:
            print(f"  {answer.get('reason')}", file=out)
