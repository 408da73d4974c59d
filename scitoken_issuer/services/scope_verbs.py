"""Every scope verb a verifier reads as an authorization: the one table (docs/scopes.md).

Verifiers read a scope ``verb:/path`` (a bare ``verb`` as ``verb:/``) and compare the verb with
what the service asks for, character by character: scitokens-cpp's ``Enforcer`` and the Python
``scitokens.Enforcer`` accept any verb in any token, XRootD's scitokens plugin maps the verbs it
gets from scitokens-cpp to file operations, dCache maps the WLCG and SciTokens verbs to its
activities, and HTCondor reads ``condor:/<LEVEL>`` and ``compute.*``. So a verb is never an opaque
string here: it is either in :data:`VERBS`, and decided by its class, or refused.

* ``storage`` verbs are granted by the POSIX rule (docs/scopes.md, "How a storage scope is
  decided"). ``permissions`` are the WLCG permissions the verb stands for (what a client's
  registered policy must cover); :meth:`Verb.checks` are the permissions the POSIX rule must
  allow for a token of a given profile — the verb's own plus everything a verifier reads into
  the verbs it is written as there (:data:`READ_AS`), so no verifier can read more than was
  checked. scitokens-cpp reads ``storage.create`` in a WLCG token as ``write`` as well, so there
  a create verb is also checked as ``modify``; in a SciTokens token it is written ``create``.
* ``admin`` verbs (compute, job queues, HTCondor authorization levels) come only from a client
  policy an administrator set; anonymous registration cannot hold them.

``renders`` says how a granted scope is written in each profile's token: verbatim in the profile
whose spelling it is, translated in the other, and never into a verb a verifier of that profile
reads as more than was decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Profile = Literal["wlcg", "scitokens"]
VerbClass = Literal["storage", "admin"]
PathRule = Literal["required", "optional", "none"]

#: What each WLCG permission asks of the filesystem is in services/posix.py; these are its names.
WLCG_PERMISSIONS = ("read", "create", "modify", "stage")


#: What verifiers read into a verb as written in a token of each profile, in WLCG permissions
#: (the union over scitokens-cpp, the Python Enforcer, XRootD and dCache): scitokens-cpp turns
#: ``storage.create``/``storage.modify`` in a WLCG token into ``write`` as well; XRootD's ``write``
#: and ``modify`` both overwrite and delete; dCache reads ``storage.stage`` as read too.
READ_AS: dict[str, dict[str, tuple[str, ...]]] = {
    "wlcg": {"storage.read": ("read",), "storage.create": ("create", "modify"),
             "storage.modify": ("create", "modify"), "storage.stage": ("read", "stage"),
             "storage.poll": ("stage",)},
    "scitokens": {"read": ("read",), "write": ("create", "modify"), "create": ("create",),
                  "modify": ("create", "modify"), "stage": ("stage",), "storage.stage": ("stage",),
                  "storage.poll": ("stage",)},
}


@dataclass(frozen=True)
class Verb:
    """One verb: its class, the profile whose spelling it is, whether it takes a path, what it
    stands for, how it is written in each profile, what it means and who reads it."""

    name: str
    kind: VerbClass
    spelling: Profile
    path: PathRule
    meaning: str
    readers: str
    permissions: tuple[str, ...] = ()
    renders: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def rendered(self, profile: Profile) -> tuple[str, ...]:
        """The verbs this one is written as in a ``profile`` token (itself unless translated)."""
        return self.renders.get(profile, (self.name,))

    def checks(self, profile: Profile | None = None) -> tuple[str, ...]:
        """The WLCG permissions the POSIX rule must allow for this storage verb in a ``profile``
        token (``None``: whichever profile, the union), in :data:`WLCG_PERMISSIONS` order."""
        if self.kind != "storage":
            return ()
        wanted = set(self.permissions)
        for each in (profile,) if profile else ("wlcg", "scitokens"):
            for written in self.rendered(each):
                wanted.update(READ_AS[each][written])
        return tuple(p for p in WLCG_PERMISSIONS if p in wanted)

    def markdown_row(self) -> str:
        """This verb's row of the table in docs/scopes.md (a test holds the page to this)."""
        def names(items: tuple[str, ...]) -> str:
            return " ".join(f"`{i}`" for i in items) or "-"
        decided = "POSIX rule" if self.kind == "storage" else "administrator's client policy"
        cells = [f"`{self.name}`", "WLCG" if self.spelling == "wlcg" else "SciTokens", self.kind,
                 self.path, names(self.rendered("wlcg")), names(self.rendered("scitokens")),
                 names(self.permissions), names(self.checks("wlcg")), names(self.checks("scitokens")),
                 decided, self.meaning, self.readers]
        return "| " + " | ".join(cells) + " |"


def _storage(name: str, spelling: Profile, permissions: tuple[str, ...], wlcg: tuple[str, ...],
             scitokens: tuple[str, ...], meaning: str, readers: str) -> Verb:
    return Verb(name, "storage", spelling, "required", meaning, readers, permissions,
                {"wlcg": wlcg, "scitokens": scitokens})


def _admin(name: str, spelling: Profile, path: PathRule, meaning: str, readers: str) -> Verb:
    return Verb(name, "admin", spelling, path, meaning, readers)


_CPP = "scitokens-cpp"
_PY = "Python scitokens Enforcer"

VERBS: dict[str, Verb] = {verb.name: verb for verb in (
    # -- storage, WLCG 1.0 spelling -------------------------------------------------------------
    _storage("storage.read", "wlcg", ("read",), ("storage.read",), ("read",),
             "read and list data",
             f"{_CPP} (as read in WLCG tokens), XRootD (read, list, stat), dCache (download, list), {_PY}"),
    _storage("storage.create", "wlcg", ("create",), ("storage.create",), ("create",),
             "upload new data and make directories; no overwrite or delete",
             f"{_CPP} (as create and as write in WLCG tokens), XRootD (create), dCache (upload), {_PY}"),
    _storage("storage.modify", "wlcg", ("create", "modify"), ("storage.modify",), ("write",),
             "change, overwrite, rename and delete data; includes create",
             f"{_CPP} (as modify and as write in WLCG tokens), XRootD (modify), dCache (upload, delete), {_PY}"),
    _storage("storage.stage", "wlcg", ("read", "stage"), ("storage.stage",), ("read", "storage.stage"),
             "bring data online from tape; includes read",
             f"{_CPP} (verbatim in any token), XRootD (stage, poll), dCache (download, list), {_PY}"),
    _storage("storage.poll", "wlcg", ("stage",), ("storage.poll",), ("storage.poll",),
             "ask whether a staging request has finished",
             f"{_CPP} (verbatim in any token), XRootD (poll), {_PY}"),
    # -- storage, SciTokens 2.0 spelling --------------------------------------------------------
    _storage("read", "scitokens", ("read",), ("storage.read",), ("read",),
             "read and list data",
             f"{_CPP} (any token), XRootD (read, list, stat), dCache (download, list), {_PY}"),
    _storage("write", "scitokens", ("create", "modify"), ("storage.create", "storage.modify"), ("write",),
             "create, overwrite, rename and delete data",
             f"{_CPP} (any token), XRootD (create, modify, delete), dCache (upload, delete), {_PY}"),
    _storage("create", "scitokens", ("create",), ("storage.create",), ("create",),
             "upload new data and make directories; no overwrite or delete",
             f"{_CPP} (any token), XRootD (create), {_PY}"),
    _storage("modify", "scitokens", ("create", "modify"), ("storage.modify",), ("modify",),
             "change, overwrite, rename and delete data; includes create",
             f"{_CPP} (any token), XRootD (modify), {_PY}"),
    _storage("stage", "scitokens", ("read", "stage"), ("storage.stage",), ("stage",),
             "bring data online from tape; includes read",
             f"{_CPP} (any token), {_PY}"),
    # -- administrator-only: compute and HTCondor -----------------------------------------------
    _admin("compute.read", "wlcg", "none", "read the job queue",
           f"HTCondor (via {_CPP}, as condor:/READ in WLCG tokens only), {_PY}"),
    _admin("compute.create", "wlcg", "none", "submit jobs",
           f"HTCondor (via {_CPP}; with modify and cancel, as condor:/WRITE in WLCG tokens only), {_PY}"),
    _admin("compute.modify", "wlcg", "none", "change queued jobs",
           f"HTCondor (via {_CPP}; with create and cancel, as condor:/WRITE in WLCG tokens only), {_PY}"),
    _admin("compute.cancel", "wlcg", "none", "remove jobs",
           f"HTCondor (via {_CPP}; with create and modify, as condor:/WRITE in WLCG tokens only), {_PY}"),
    _admin("condor", "scitokens", "optional", "an HTCondor authorization level (condor:/READ, "
           "condor:/WRITE, condor:/ADMINISTRATOR, ...); bare condor is every level",
           f"HTCondor (via {_CPP}), {_PY}"),
    _admin("queue", "scitokens", "optional", "submit jobs to a queue (SciTokens 1.0 claim language)",
           f"dCache (recognised, grants nothing), {_CPP} and {_PY} for services that ask for it"),
    _admin("execute", "scitokens", "optional", "run jobs (SciTokens 1.0 claim language)",
           f"dCache (recognised, grants nothing), {_CPP} and {_PY} for services that ask for it"),
)}

#: Prefixes whose every spelling is this table's (or wlcg.groups'): anything else under them is
#: refused, in any letter case, so ``Storage.Read:/x`` is an error rather than an opaque scope.
RESERVED_PREFIXES = ("storage.", "compute.", "wlcg.")
#: Bare words that are refused rather than passed through (they look like a verb family).
RESERVED_WORDS = ("storage", "compute", "wlcg")
#: Scopes about the user, decided by the client's policy (docs/scopes.md).
IDENTITY_SCOPES = ("openid", "profile", "email", "offline_access", "wlcg.groups")
