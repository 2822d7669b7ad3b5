"""encryption of free text that can carry clinical detail

Revision ID: 0013_encrypt_free_text
Revises: 0012_audit_reads
Create Date: 2026-12-05

The patient's note to the care team (waitlist_entries.reason), cancellation reasons (appointments.cancel_reason) and
a provider's reason for time off (time_off.reason) become Text columns holding Fernet tokens; the existing rows are
encrypted in place. Downgrade decrypts them and restores the VARCHAR lengths.

Migrations must not import application code (backend.*): the models change later, a migration never does. So the
key ring is found here the way backend/settings.py and backend/crypto find it, in this order:
1. `config.attributes["encryption_keys"]`, when the program running alembic lends it (a comma-separated string);
2. ENCRYPTION_KEYS in the environment, then in ./.env (pydantic-settings' order);
3. else the key derived from SECRET_KEY (environment, ./.env, else data/secret.key), as backend.crypto.derive_key does.
The test session sets SECRET_KEY in its environment before it migrates, so its rows are encrypted under the same key
the application then uses. The key is only looked for when there is a row to encrypt or decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# revision identifiers, used by Alembic.
revision: str = "0013_encrypt_free_text"
down_revision: str | Sequence[str] | None = "0012_audit_reads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, the VARCHAR length before this revision)
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("time_off", "reason", 200),
    ("appointments", "cancel_reason", 500),
    ("waitlist_entries", "reason", 500),
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]
BATCH = 500


def _dotenv(name: str) -> str:
    """A value from ./.env (where pydantic-settings reads it), or ''. Names match case-insensitively, as there."""
    path = Path(".env")
    if not path.is_file():
        return ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if key.strip().lower() == name.lower():
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            return value
    return ""


def _setting(name: str) -> str:
    for key, value in os.environ.items():
        if key.lower() == name.lower() and value.strip():
            return value
    return _dotenv(name)


def derive_key(secret: str) -> str:
    """backend.crypto.derive_key, repeated (tests/unit/test_encryption_keys.py checks that they agree)."""
    return base64.urlsafe_b64encode(hashlib.sha256(b"waitwell-encryption:" + secret.encode()).digest()).decode()


def _key_ring() -> MultiFernet:
    lent = op.get_context().config
    configured = str((lent.attributes.get("encryption_keys") if lent is not None else None) or "")
    keys = [k.strip() for k in (configured or _setting("ENCRYPTION_KEYS")).split(",") if k.strip()]
    if not keys:
        secret = _setting("SECRET_KEY").strip()
        if not secret:
            path = PROJECT_ROOT / "data" / "secret.key"
            secret = path.read_text().strip() if path.is_file() else ""
        if not secret:
            raise RuntimeError(
                "0013_encrypt_free_text: rows to encrypt, but neither ENCRYPTION_KEYS nor SECRET_KEY is set"
                " (nor data/secret.key): set the keys the application uses and migrate again"
            )
        keys = [derive_key(secret)]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def _convert(table_name: str, column_name: str, change: Callable[[str], str]) -> None:
    """Apply `change` to every non-empty value of one column, a batch at a time (keyset pagination on id)."""
    conn = op.get_bind()
    table = sa.table(table_name, sa.column("id", sa.Uuid()), sa.column(column_name, sa.Text()))
    key, value = table.c.id, table.c[column_name]
    query = sa.select(key, value).where(value.is_not(None), value != "").order_by(key).limit(BATCH)
    last = None
    while True:
        rows = list(conn.execute(query if last is None else query.where(key > last)))
        for row_id, text in rows:
            conn.execute(sa.update(table).where(key == row_id).values({value: change(text)}))
        if len(rows) < BATCH:
            return
        last = rows[-1][0]


def _has_rows(table_name: str, column_name: str) -> bool:
    column = sa.column(column_name, sa.Text())
    query = sa.select(sa.literal(1)).select_from(sa.table(table_name, column)).where(column != "").limit(1)
    return op.get_bind().execute(query).first() is not None


def _refuse_offline() -> None:
    if op.get_context().as_sql:
        raise RuntimeError("0013_encrypt_free_text converts rows: run it against the database, not with --sql")


def upgrade() -> None:
    _refuse_offline()
    for table_name, column_name, length in COLUMNS:
        with op.batch_alter_table(table_name) as batch_op:
            batch_op.alter_column(
                column_name, existing_type=sa.String(length=length), type_=sa.Text(), existing_nullable=False
            )
    if not any(_has_rows(t, c) for t, c, _ in COLUMNS):
        return
    ring = _key_ring()
    for table_name, column_name, _ in COLUMNS:
        _convert(table_name, column_name, lambda text: ring.encrypt(text.encode()).decode())


def downgrade() -> None:
    _refuse_offline()
    if any(_has_rows(t, c) for t, c, _ in COLUMNS):
        ring = _key_ring()

        def decrypt(token: str) -> str:
            try:
                return ring.decrypt(token.encode()).decode()
            except InvalidToken as exc:
                raise RuntimeError(
                    "0013_encrypt_free_text: a value decrypts under no configured key; set ENCRYPTION_KEYS to the"
                    " application's keys and downgrade again"
                ) from exc

        for table_name, column_name, _ in COLUMNS:
            _convert(table_name, column_name, decrypt)
    for table_name, column_name, length in COLUMNS:
        with op.batch_alter_table(table_name) as batch_op:
            batch_op.alter_column(
                column_name, existing_type=sa.Text(), type_=sa.String(length=length), existing_nullable=False
            )
