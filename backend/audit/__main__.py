"""Check the audit chains: `python -m backend.audit verify [--tenant ID]` (also `make audit-verify`).

Prints one line per chain (table, practice, shard, rows, head hash) and, for a broken chain, its first broken row.
Exits 0 when every chain holds, 1 when one is broken. Keep the printed head hashes outside the database:
they also show when the newest rows of a chain were removed.
"""

from __future__ import annotations

import argparse
import sys
import uuid

from backend.audit.chain import verify_chains
from backend.db import UnitOfWork


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.audit")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check the hash chains of the audit tables")
    verify.add_argument("--tenant", type=uuid.UUID, default=None, help="only this practice's chains")
    args = parser.parse_args(argv)

    with UnitOfWork(system=True) as uow:
        reports = verify_chains(uow.session, tenant_id=args.tenant)
    broken = [r for r in reports if r.broken is not None]
    for report in reports:
        state = "BROKEN" if report.broken else "ok"
        line = f"{state:<6} {report.table:<20} practice {report.tenant_id} shard {report.shard} rows {report.rows:>8}"
        print(f"{line} head {report.head_hash}")
    for report in broken:
        if report.broken is not None:
            print(f"first broken row: {report.broken.describe()}", file=sys.stderr)
    total = sum(r.rows for r in reports)
    if broken:
        print(f"audit chains: {len(broken)} of {len(reports)} broken", file=sys.stderr)
        return 1
    print(f"audit chains: {len(reports)} chains, {total} rows, all intact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
