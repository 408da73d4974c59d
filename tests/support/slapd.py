"""A real OpenLDAP ``slapd`` on a free loopback port, loaded from LDIF with ``slapadd``.

The helpers are plain functions/classes so that ``benchmarks/`` can reuse them without pytest.
Configuration is a ``slapd.conf`` (``-f``) with an mdb database for ``dc=example,dc=org`` and the
core/cosine/nis/inetorgperson schemas. Anonymous reads are allowed (no ``userPassword``); the
soft size limit is 500 so that a full pass only works with simple paged results (RFC 2696).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import pytest

from tests.support.processes import ManagedProcess, free_port

SUFFIX = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
USER_BASE = f"ou=people,{SUFFIX}"
GROUP_BASE = f"ou=groups,{SUFFIX}"
BASE_LDIF = Path(__file__).resolve().parents[1] / "data" / "ldap" / "base.ldif"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"

SLAPD_CONF = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/nis.schema
include {schema}/inetorgperson.schema
modulepath {modules}
moduleload back_mdb
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
sizelimit size.soft=500 size.hard=unlimited size.prtotal=unlimited
{tls}database mdb
maxsize 4294967296
suffix "{suffix}"
rootdn "{admin_dn}"
rootpw {admin_password}
directory {root}/db
index objectClass eq
index uid,memberUid,member,uniqueMember,gidNumber eq
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
"""


@dataclass
class Slapd:
    """One slapd instance in its own directory; ``stop``/``start`` keep data and port."""

    root: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None
    suffix: str = SUFFIX
    admin_dn: str = ADMIN_DN
    admin_password: str = ADMIN_PASSWORD
    user_base: str = USER_BASE
    group_base: str = GROUP_BASE
    #: (certificate, key) PEM files: slapd then also listens for ldaps:// on ``tls_port``
    tls: tuple[Path, Path] | None = None
    tls_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def conf(self) -> Path:
        return self.root / "slapd.conf"

    def configure(self) -> None:
        """Write slapd.conf and an empty database directory."""
        (self.root / "db").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(SLAPD_CONF.format(
            schema=SCHEMA_DIR, modules=MODULE_DIR, root=self.root, suffix=self.suffix,
            tls=f"TLSCertificateFile {self.tls[0]}\nTLSCertificateKeyFile {self.tls[1]}\n" if self.tls else "",
            admin_dn=self.admin_dn, admin_password=self.admin_password))

    def load(self, ldif: str | Path) -> None:
        """Add entries offline with ``slapadd -q`` (fast; slapd must be stopped)."""
        if self.process is not None and self.process.alive():
            raise RuntimeError("slapadd needs slapd stopped")
        if isinstance(ldif, str) and "\n" in ldif:  # LDIF text rather than a file name
            path = self.root / "load.ldif"
            path.write_text(ldif)
        else:
            path = Path(ldif)
        subprocess.run([SLAPADD, "-q", "-f", str(self.conf), "-l", str(path)], check=True,
                       capture_output=True, timeout=600)

    def start(self) -> "Slapd":
        if self.process is not None and self.process.alive():
            return self
        listen = f"{self.url}/" + (f" {self.ldaps_url}/" if self.tls else "")
        self.process = ManagedProcess("slapd", [SLAPD, "-d", "0", "-f", str(self.conf), "-h", listen], self.root)
        self.process.start().wait_for_port(self.port)
        if self.tls:
            self.process.wait_for_port(self.tls_port)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def make_slapd(ldifs: Iterable[str | Path] = (BASE_LDIF,), root: Path | None = None,
               tls: tuple[Path, Path] | None = None) -> Slapd:
    """Configure, load (offline) and start a slapd (with ldaps:// too when given ``tls``, a
    certificate and key); the caller must ``destroy`` it."""
    server = Slapd(Path(root or tempfile.mkdtemp(prefix="slapd-")), tls=tls)
    try:
        server.configure()
        for ldif in ldifs:
            server.load(ldif)
        return server.start()
    except BaseException:
        server.destroy()
        raise


def bulk_ldif(users: int, groups: int, groups_per_user: int = 7, seed: int = 1,
              group_of_names_share: float = 0.5) -> Iterator[str]:
    """LDIF chunks for ``users`` posixAccounts in ``groups`` groups (bench and paging tests).

    Each user gets its own primary gid and ``groups_per_user`` ± 2 random memberships. A share of
    the groups are ``groupOfNames`` (member DNs, with a gidNumber via extensibleObject, as in
    directories whose posixGroup is auxiliary); the rest are ``posixGroup`` (memberUid).
    """
    import random

    rng = random.Random(seed)
    members: list[list[int]] = [[] for _ in range(groups)]
    for u in range(users):
        for g in rng.sample(range(groups), max(1, groups_per_user + rng.randint(-2, 2))):
            members[g].append(u)
    yield (f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\n"
           f"o: Example\n\ndn: {USER_BASE}\nobjectClass: organizationalUnit\nou: people\n\n"
           f"dn: {GROUP_BASE}\nobjectClass: organizationalUnit\nou: groups\n\n")
    for u in range(users):
        name = f"user{u:06d}"
        yield (f"dn: uid={name},{USER_BASE}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
               f"uid: {name}\ncn: {name}\nsn: {name}\nuidNumber: {100000 + u}\n"
               f"gidNumber: {100000 + u}\nhomeDirectory: /home/{name}\n\n")
    gon_cutoff = int(groups * group_of_names_share)
    for g in range(groups):
        name = f"group{g:05d}"
        lines = [f"dn: cn={name},{GROUP_BASE}", f"cn: {name}", f"gidNumber: {20000 + g}"]
        if g < gon_cutoff:
            lines[1:1] = ["objectClass: groupOfNames", "objectClass: extensibleObject"]
            lines += [f"member: uid=user{u:06d},{USER_BASE}" for u in members[g]] or [f"member: {ADMIN_DN}"]
        else:
            lines[1:1] = ["objectClass: posixGroup"]
            lines += [f"memberUid: user{u:06d}" for u in members[g]]
        yield "\n".join(lines) + "\n\n"


def write_bulk_ldif(path: Path, users: int, groups: int, **kwargs) -> Path:
    with open(path, "w") as out:
        out.writelines(bulk_ldif(users, groups, **kwargs))
    return path


@pytest.fixture(scope="session")
def slapd_server() -> Iterator[Slapd]:
    """A slapd loaded from ``tests/data/ldap/base.ldif`` for the whole session."""
    server = make_slapd()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def slapd(slapd_server: Slapd) -> Iterator[Slapd]:
    """The session slapd, running at the start of the test (restarted if a test stopped it)."""
    slapd_server.start()
    yield slapd_server
    slapd_server.start()


@pytest.fixture
def slapd_factory() -> Iterator:
    """Make extra slapd instances from LDIF (``make(ldif, ...)``); all destroyed afterwards."""
    made: list[Slapd] = []

    def make(*ldifs: str | Path) -> Slapd:
        server = make_slapd(ldifs or (BASE_LDIF,))
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.destroy()
