"""Print nginx's Content-Security-Policy line for the static pages of one frontend build.

The policy is the backend's own (backend/api/edge.py: page_csp), whose script-src names the sha256 of every inline
<script> of the compiled pages; a new build has new hashes, so run this after each `reflex export`:

    .venv/bin/python ops/nginx/render_csp.py > /etc/nginx/waitwell/csp.conf && nginx -t && nginx -s reload

The build is read from REFLEX_WEB_WORKDIR/build/client (default .web/build/client), or from the one argument.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.api.edge import build_script_hashes, page_csp, web_build_dir  # noqa: E402


def render(build_dir: Path) -> str:
    hashes = build_script_hashes(build_dir)
    if not hashes:
        raise SystemExit(f"no compiled pages under {build_dir}: build the frontend first")
    return f'add_header Content-Security-Policy "{page_csp(hashes)}" always;\n'


if __name__ == "__main__":
    sys.stdout.write(render(Path(sys.argv[1]) if len(sys.argv) > 1 else web_build_dir()))
