"""``python -m scitoken_issuer.token_cli``: the same as the ``scitoken-token`` console script."""

import sys

from .commands import main

sys.exit(main())
