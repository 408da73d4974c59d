"""The gunicorn target of the benchmark: the production app (``scitoken_issuer.wsgi:app``).

The whole load comes from one address (127.0.0.1), so unless ``BENCH_RATE_LIMITS=on`` the
per-address flood limits of ``RATE_LIMITS`` are switched off: the token endpoint's 600 per minute
would otherwise answer 429 to nearly every request and the run would measure the limiter's refusals.
"""

from __future__ import annotations

import os

from scitoken_issuer.wsgi import app

limiter = app.extensions.get("rate_limiter")  # absent where only failures are counted
if limiter is not None and os.environ.get("BENCH_RATE_LIMITS") != "on":
    limiter.enabled = False
