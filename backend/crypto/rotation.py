"""Key rotation over the stored rows: which values each key holds, and re-encryption under the current key.

Apart from backend.crypto because it reads the models (which import backend.crypto for their column type).
`python -m backend.crypto <command>` runs `main` (backend/crypto/__main__.py).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from backend.crypto import (
    EncryptedText,
    derive_key,
    fernet,
    key_ring,
    rotate_token,
    token_columns,
    under_current_key,
)
from backend.db import get_system_engine
from backend.models import metadata
from backend.settings import get_settings

CLI_HELP = """Encryption keys of the free text stored encrypted (see the README's "Security" section).

    generate-key   print a new random key (put it first in ENCRYPTION_KEYS)
    derived-key    print the key derived from SECRET_KEY (the one used while ENCRYPTION_KEYS is empty)
    status         per column: values under the current key, under an older one, unreadable
    rotate         re-encrypt every value under the current key (then the older keys can go)
"""


def encrypted_columns() -> list[sa.Column[Any]]:
    """Every column holding tokens: those typed EncryptedText, and those registered with register_token_column."""
    found: list[sa.Column[Any]] = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, EncryptedText) or (table.name, column.name) in token_columns():
                found.append(column)
    return found


@dataclass
class ColumnReport:
    column: str  # "table.column"
    current: int = 0  # under the current key
    older: int = 0  # under an older key of the ring (rotate re-encrypts these)
    unreadable: int = 0  # under no configured key (left alone: the operator must find that key)


def _classify(token: str) -> str:
    if under_current_key(token):
        return "current"
    try:
        fernet().decrypt(token.encode())
        return "older"
    except InvalidToken:
        return "unreadable"


def _scan(engine: sa.Engine, column: sa.Column[Any], *, rotate: bool, batch: int) -> ColumnReport:
    """Count one column's tokens by key, re-encrypting those under an older key when `rotate`.

    One transaction per batch (keyset pagination on the primary key), so a long run holds few locks for long. The
    UPDATE compares the old token: a value the application changed meanwhile is left as written (already current)."""
    table = column.table
    (pk,) = table.primary_key.columns
    # The same table with a plain Text column: reads and writes the stored token as it is (no EncryptedText).
    plain = sa.table(table.name, sa.column(pk.name, pk.type), sa.column(column.name, sa.Text()))
    key_col, value_col = plain.c[pk.name], plain.c[column.name]
    query = sa.select(key_col, value_col).where(value_col.is_not(None), value_col != "").order_by(key_col).limit(batch)
    report = ColumnReport(f"{table.name}.{column.name}")
    last: Any = None
    while True:
        with engine.begin() as conn:
            rows = list(conn.execute(query if last is None else query.where(key_col > last)))
            for key, token in rows:
                kind = _classify(token)
                setattr(report, kind, getattr(report, kind) + 1)
                if rotate and kind == "older":
                    conn.execute(
                        sa.update(plain)
                        .where(key_col == key, value_col == token)
                        .values({value_col: rotate_token(token)})
                    )
        if len(rows) < batch:
            return report
        last = rows[-1][0]


def survey(engine: sa.Engine | None = None, *, rotate: bool = False, batch: int = 500) -> list[ColumnReport]:
    """Per encrypted column, how many values each key holds; with rotate, re-encrypt the older ones first.

    After `rotate` reports no value under an older key (and none unreadable), the older keys can leave the ring."""
    if engine is None:
        engine = get_system_engine()  # every practice's rows: the system role (BYPASSRLS), never the app's
    return [_scan(engine, column, rotate=rotate, batch=batch) for column in encrypted_columns()]


def rotate(engine: sa.Engine | None = None, *, batch: int = 500) -> list[ColumnReport]:
    """Re-encrypt every stored value under the current key (MultiFernet.rotate)."""
    return survey(engine, rotate=True, batch=batch)


def _print(reports: list[ColumnReport], verb: str) -> None:
    for r in reports:
        print(f"{r.column}: {r.current} current, {r.older} {verb}, {r.unreadable} unreadable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.crypto", description=CLI_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("command", choices=("generate-key", "derived-key", "status", "rotate"))
    parser.add_argument("--batch", type=int, default=500, help="rows per transaction (status, rotate)")
    args = parser.parse_args(argv)
    if args.command == "generate-key":
        print(Fernet.generate_key().decode())
        return 0
    if args.command == "derived-key":
        print(derive_key(get_settings().secret_key))
        return 0
    if args.command == "status":
        reports = survey(batch=args.batch)
        _print(reports, "under an older key")
    else:
        reports = rotate(batch=args.batch)
        _print(reports, "re-encrypted under the current key")
    unreadable = sum(r.unreadable for r in reports)
    if unreadable:
        print(f"{unreadable} value(s) decrypt under no configured key: keep every old key until they are found.")
        return 1
    if args.command == "status" and any(r.older for r in reports):
        print("Values remain under an older key: run `python -m backend.crypto rotate` before removing it.")
    elif len(key_ring()) > 1:
        print("Every value is under the current key: the older keys can be removed from ENCRYPTION_KEYS.")
    return 0
