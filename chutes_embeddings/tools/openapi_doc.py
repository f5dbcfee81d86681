"""Print the chute's OpenAPI document (run from the project root):

    python -m chutes_embeddings.tools.openapi_doc > docs/openapi.json
"""

from __future__ import annotations

import json
import os


def main() -> None:
    """Print the document of the chute in ``my_embeddings``."""
    os.environ.setdefault("CHUTES_EXECUTION_CONTEXT", "REMOTE")
    import my_embeddings

    from ..http.openapi import build_openapi

    print(json.dumps(build_openapi(my_embeddings.ROUTES), indent=2, sort_keys=False))


if __name__ == "__main__":
    main()
