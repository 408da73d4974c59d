"""Token endpoint costs through the whole Flask app (in process, no network): p50 / p99 in ms.

- ``client_credentials``: client authentication (HMAC of the secret), scope policy, JWT signing
  (RS256 2048 and ES256) — on SQLite; nothing is written (docs/revocation.md).
- device polling while pending: with Redis the poll reads a small Redis hash (the fast path);
  without Redis it reads the database row. Measured once each, the same way, in one run.

Prints numbers only.

    python benchmarks/bench_token_endpoint.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path

from flask_migrate import upgrade

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scitoken_issuer.app import create_app  # noqa: E402
from scitoken_issuer.extensions import db, runtime  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


def app_with(**settings):
    folder = tempfile.mkdtemp(prefix="bench-token-")
    app = create_app({"SECRET_KEY": "bench-secret-0123456789abcdef-0123456789", "INSTANCE_PATH": folder,
                      "DEVICE_POLL_INTERVAL": 1, **settings})
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        registration = runtime().clients.register(
            {"client_name": "bench", "grant_types": ["client_credentials", DEVICE],
             "scope": "storage.read:/data compute.read openid"}, admin=True, source="admin")
        db.session.commit()
        auth = base64.b64encode(f"{registration.client.client_id}:{registration.client_secret}".encode()).decode()
    return app, {"Authorization": f"Basic {auth}"}


def timed(calls: int, request) -> tuple[float, float]:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        response = request()
        samples.append(time.perf_counter() - start)
        assert response.status_code in (200, 400), response.get_data(as_text=True)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.99) - 1] * 1000


def client_credentials(calls: int, key_type: str) -> None:
    app, headers = app_with(KEY_TYPE=key_type)
    http = app.test_client()
    http.post("/auth/token", data={"grant_type": "client_credentials"}, headers=headers)  # creates the key
    p50, p99 = timed(calls, lambda: http.post("/auth/token", data={"grant_type": "client_credentials"},
                                              headers=headers))
    print(f"client_credentials {key_type:6}              p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   "
          f"({1000 / p50:5.0f} tokens/s in one thread)")


def device_polls(calls: int, redis_url: str | None) -> None:
    app, headers = app_with(REDIS_URL=redis_url) if redis_url else app_with()
    http = app.test_client()
    codes = [http.post("/auth/device/code", data={"scope": "openid"}, headers=headers).get_json()["device_code"]
             for _ in range(calls)]
    codes_iter = iter(codes)  # a fresh code per poll: every poll is "pending", none is "too fast"
    p50, p99 = timed(calls, lambda: http.post("/auth/token", data={"grant_type": DEVICE,
                                                                   "device_code": next(codes_iter)},
                                              headers=headers))
    where = "Redis hash (fast path)" if redis_url else "database row          "
    print(f"device poll, pending, {where} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    client_credentials(args.calls, "RS256")
    client_credentials(args.calls, "ES256")
    redis = RedisServer().start()
    try:
        device_polls(args.calls // 2, None)
        device_polls(args.calls // 2, redis.url)
    finally:
        redis.destroy()


if __name__ == "__main__":
    main()
