"""The wiring rules of docs/architecture.md, read from the source itself (``ast``, not grep):
code cites the project's own docs, not a document outside the repository."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from scitoken_issuer.extensions import db

from .conftest import make_app

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "scitoken_issuer"
TESTS = ROOT / "tests"
#: The upper-case name of the outside product document this repository once cited.
OUTSIDE_DOCUMENT = re.compile(r"\bS" r"PEC\b")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str | None = None) -> set[str]:
    """Every module ``path`` (module ``name``) imports, anywhere in it (also inside functions), as
    dotted names; ``from a import b`` counts as ``a`` and ``a.b``."""
    package = (name or _module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _package_graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _sources(root: Path) -> list[Path]:
    return [path for path in sorted(root.rglob("*"))
            if path.is_file() and "node_modules" not in path.parts and "__pycache__" not in path.parts
            and path.suffix in {".py", ".md", ".ldif", ".yaml", ".yml", ".html", ".txt", ".json", ".js", ".cfg"}]


def test_no_spec_citations():
    """docs/architecture.md: code and tests cite docs/*.md or an RFC section, never an outside document."""
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for path in _sources(PACKAGE) + _sources(TESTS)
                 for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
                 if OUTSIDE_DOCUMENT.search(line)]
    assert offenders == []


def _authlib_private_names() -> set[str]:
    """Every ``_name`` (not dunder) authlib uses as an attribute or defines in a class."""
    import authlib
    names: set[str] = set()
    for path in Path(authlib.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.ClassDef):
                names.update(item.name for item in node.body
                             if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def _imports_authlib(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.ImportFrom) and (node.module or "").startswith("authlib")
               or isinstance(node, ast.Import) and any(a.name.startswith("authlib") for a in node.names)
               for node in ast.walk(tree))


def test_no_authlib_private_attributes():
    """docs/architecture.md: modules building on authlib use its documented hooks only: no read,
    write or override of an attribute authlib keeps private (``_token_grants``, ``_error_uris``,
    ``_validate_uri`` …)."""
    private = _authlib_private_names()
    assert {"_token_grants", "_error_uris", "_validate_token_scope"} <= private  # the check sees them
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        if not _imports_authlib(tree):
            continue
        for node in ast.walk(tree):
            name = node.attr if isinstance(node, ast.Attribute) else \
                node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
            if name in private:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("authlib"):
                offenders.extend(f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name}"
                                 for alias in node.names if alias.name.startswith("_"))
    assert offenders == []


def test_one_authorization_server_per_app(app, tmp_path):
    """docs/architecture.md: each app builds its own server and resource protector from the declared
    grant list; discovery (RFC 8414 §2 ``grant_types_supported``) and client registration read it."""
    from scitoken_issuer.oauth2.protocol import GRANT_TYPES

    other = make_app(tmp_path / "other")
    server = app.extensions["authorization_server"]
    assert other.extensions["authorization_server"] is not server
    assert other.extensions["resource_protector"] is not app.extensions["resource_protector"]
    assert server.grant_types == GRANT_TYPES
    assert app.extensions["scitoken_issuer"].clients.supported_grants == frozenset(GRANT_TYPES)
    metadata = app.test_client().get("/.well-known/openid-configuration").get_json()
    assert metadata["grant_types_supported"] == list(GRANT_TYPES)
    with other.app_context():
        db.engine.dispose()


def test_services_and_models_do_not_reach_for_the_runtime():
    """docs/architecture.md: services and models get their collaborators in constructors; the
    per-app accessor ``extensions.runtime`` (and the ``runtime`` module) is for the edges only."""
    offenders = []
    for folder in ("services", "models"):
        for path in (PACKAGE / folder).rglob("*.py"):
            for module in _imports(path):
                if module in ("scitoken_issuer.extensions.runtime", "scitoken_issuer.runtime") or \
                        module.startswith("scitoken_issuer.runtime."):
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_the_import_reader_sees_runtime_imports(tmp_path):
    """The reader above resolves relative imports, also inside a function (as a service once did
    to dodge an import cycle)."""
    probe = tmp_path / "probe.py"
    probe.write_text("import redis\n\ndef f():\n    from ..extensions import runtime\n    from .. import runtime as r\n")
    found = _imports(probe, "scitoken_issuer.services.probe")
    assert {"redis", "scitoken_issuer.extensions.runtime", "scitoken_issuer.runtime"} <= found


def _cycle_members(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules that ``start`` reaches and that reach ``start`` back (its import cycle)."""
    def reach(origin: str, edges: dict[str, set[str]]) -> set[str]:
        seen, todo = set(), [origin]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen
    reverse: dict[str, set[str]] = {}
    for source, targets in graph.items():
        for target in targets:
            reverse.setdefault(target, set()).add(source)
    return reach(start, graph) & reach(start, reverse)


def test_posix_rule_modules_are_in_no_import_cycle():
    """docs/authorization.md: the live check and the strict-mode index both build on
    ``posix_rule`` and import neither each other nor anything that imports them back."""
    graph = _package_graph()
    for module in ("scitoken_issuer.services.posix", "scitoken_issuer.services.tree_index",
                   "scitoken_issuer.services.posix_rule"):
        assert module in graph
        assert _cycle_members(graph, module) == set(), module
    assert "scitoken_issuer.services.posix_rule" in graph["scitoken_issuer.services.posix"]
    assert "scitoken_issuer.services.posix_rule" in graph["scitoken_issuer.services.tree_index"]
    assert "scitoken_issuer.services.tree_index" not in graph["scitoken_issuer.services.posix"]
    assert "scitoken_issuer.services.posix" not in graph["scitoken_issuer.services.tree_index"]


def test_each_blueprint_says_whether_it_serves_pages(app):
    """docs/errors.md: errors are HTML pages on the blueprints that serve pages, RFC 6749 §5.2 JSON
    elsewhere, decided by the blueprint (and, for a path no route matched, the route it lies under)."""
    client = app.test_client()
    page = client.get("/auth/device/nothing-here")
    assert page.status_code == 404 and page.mimetype == "text/html"
    api = client.get("/auth/device/code/nothing-here")
    assert api.status_code == 404 and api.get_json()["error"] == "not_found"
    wrong_method = client.put("/auth/device/code")
    assert wrong_method.status_code == 405 and wrong_method.get_json()["error"] == "invalid_request"
    assert client.put("/auth/authorize").mimetype == "text/html"
    assert app.blueprints["oauth.device"].serves_pages and not hasattr(app.blueprints["oauth.token"], "serves_pages")


def test_each_setting_is_declared_once():
    """docs/configuration.md: a setting is one declaration (field, parser, default, doc); the
    table the CLI prints and the loader reads is derived from it."""
    from dataclasses import fields

    from scitoken_issuer.settings import SETTINGS, Settings

    declared = [f.name.upper() for f in fields(Settings)]
    assert declared == list(SETTINGS) and len(set(declared)) == len(declared)
    assert all(callable(f.metadata["parse"]) and f.metadata["doc"] for f in fields(Settings))
    source = (PACKAGE / "settings.py").read_text()
    assert all(source.count(f'"{name}"') <= 1 for name in declared)  # no second table by name


def test_models_hold_data_not_hashing():
    """docs/architecture.md: a model holds data; hashing and comparing secrets is the services'
    (``ClientRegistry.check_secret``), so no model imports a hash or the secret box."""
    offenders = [f"{path.relative_to(ROOT)} imports {module}"
                 for path in (PACKAGE / "models").rglob("*.py") for module in _imports(path)
                 if module.split(".")[0] in ("hmac", "hashlib") or module.startswith("scitoken_issuer.services.secrets")]
    assert offenders == []
