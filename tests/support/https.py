"""An app served over HTTPS on 127.0.0.1 in a thread (werkzeug), for tests whose clients insist on
https: the Python ``scitokens`` library, scitokens-cpp, relying-party libraries."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from werkzeug.serving import make_server


@contextmanager
def serve_https(app, port: int, cert: Path, key: Path, name: str = "https-issuer") -> Iterator[None]:
    """Serve ``app`` with ``cert``/``key`` on ``port`` until the block ends."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = make_server("127.0.0.1", port, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        thread.join(timeout=30)
        server.server_close()
