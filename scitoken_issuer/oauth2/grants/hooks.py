"""Grant hooks that run in the order they were registered.

authlib keeps a grant's hooks of one type in a set, so two checks registered for the same moment
(PKCE, nonce, request objects and response mode after the authorization request's payload is
validated) ran in an order that followed memory addresses: a request with two faults got one
error or the other from run to run. Here they run in the order the grant's extensions are listed
(``oauth2/protocol.py``), so the same request always gets the same answer.
"""

from __future__ import annotations

from collections import defaultdict


class OrderedHooks:
    """Mixin for an authlib grant: hooks of one type run in registration order, each once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._hooks = defaultdict(list)

    def register_hook(self, hook_type, hook) -> None:
        if hook not in self._hooks[hook_type]:
            self._hooks[hook_type].append(hook)
