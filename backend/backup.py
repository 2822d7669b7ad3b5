"""Backups of the database and, in a separate file, of the keys; restores of both (`make backup`, `make restore`).

    python -m backend.backup backup [--dir DIR] [--no-keys]      # DB dump + key file into BACKUP_DIR (data/backups)
    python -m backend.backup restore FILE [--target-url URL]     # into a fresh or empty database (or SQLite file)
    python -m backend.backup restore-keys FILE [--force]         # the key file back to data/secret.key

PostgreSQL: `pg_dump -Fc` of the owner's database (DATABASE_OWNER_URL, else DATABASE_URL) to
`waitwell-<database>-<UTC time>.dump`; restored with `pg_restore` (no owners or grants from the dump) into the
target database, which must hold no table yet, then the app's roles are granted it again (backend/dbroles.py).
SQLite (the embedded mode): SQLite's online backup API, consistent while the app writes, to
`waitwell-sqlite-<UTC time>.sqlite3`; restored with the same API into the target file.

The keys (SECRET_KEY: JWT and link signing, and the encryption key derived from it while ENCRYPTION_KEYS is
empty; ENCRYPTION_KEYS: the Fernet ring of backend/crypto) never go into a dump: they go to
`waitwell-keys-<UTC time>.env` (mode 0600). A dump without its keys cannot be decrypted; keep both, apart.
Runbook: docs/runbooks/restore-from-backup.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from backend.settings import DATA_DIR, get_settings

KEYS_FILE_PREFIX = "waitwell-keys-"


class BackupError(Exception):
    """A backup or restore could not be made; the message says why and what to do."""


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 (dumps hold PHI, key files hold keys) before anything is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    path.chmod(0o600)


# ---- PostgreSQL ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LibpqTarget:
    """A database URL split for the PostgreSQL tools: the URL without its password, and the password (PGPASSWORD),
    so no password shows in the process list."""

    url: str
    password: str | None
    database: str

    @classmethod
    def parse(cls, url: str) -> LibpqTarget:
        url = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)
        parts = urlsplit(url)
        password = unquote(parts.password) if parts.password else None
        netloc = parts.netloc
        if parts.password is not None:
            user, host = netloc.rsplit("@", 1)
            netloc = f"{user.split(':', 1)[0]}@{host}"
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise BackupError(f"no database name in the URL {urlunsplit(parts._replace(netloc=netloc))}")
        return cls(urlunsplit(parts._replace(netloc=netloc)), password, database)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install PostgreSQL's client (apt-get install postgresql-client)")
    return found


def _run(args: list[str], target: LibpqTarget) -> str:
    result = subprocess.run(args, env=target.env(), capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _major(version_text: str) -> int:
    """The major version in `pg_dump (PostgreSQL) 15.20 (Debian ...)`."""
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", version_text)
    if match is None:
        raise BackupError(f"cannot read a version in {version_text!r}")
    return int(match.group(1))


def check_client_version(target: LibpqTarget) -> tuple[int, int]:
    """The major versions of pg_dump and of the server; refuses a pg_dump older than the server (it cannot dump a
    newer server). The same major version on both sides is the safe choice."""
    client = _major(_run([_tool("pg_dump"), "--version"], target))
    server_num = _run(
        [_tool("psql"), "--no-psqlrc", "-w", "-At", "-d", target.url, "-c", "SHOW server_version_num"], target
    ).strip()
    server = int(server_num) // 10000
    if client < server:
        raise BackupError(
            f"pg_dump {client} is older than the server ({server}): install postgresql-client-{server}"
            " (PostgreSQL's apt repository) and put its bin directory first on PATH"
        )
    return client, server


def backup_postgres(url: str, directory: Path) -> Path:
    """Dump the database of `url` (custom format, compressed) to a new timestamped file in `directory`."""
    target = LibpqTarget.parse(url)
    check_client_version(target)
    path = directory / f"waitwell-{target.database}-{_stamp()}.dump"
    partial = path.with_name(path.name + ".partial")
    _private_file(partial)
    try:
        _run([_tool("pg_dump"), "-Fc", "--no-password", "-d", target.url, "-f", str(partial)], target)
        # A dump that pg_restore cannot list is no backup: read its table of contents back before keeping it.
        _run([_tool("pg_restore"), "--list", str(partial)], target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(path)
    return path


def _user_tables_postgres(target: LibpqTarget) -> list[str]:
    out = _run(
        [
            _tool("psql"),
            "--no-psqlrc",
            "-w",
            "-At",
            "-d",
            target.url,
            "-c",
            "SELECT tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        ],
        target,
    )
    return [line for line in out.splitlines() if line]


def restore_postgres(dump: Path, url: str, *, grant_roles: bool = True) -> None:
    """Restore `dump` into the (existing, empty) database of `url`, as that URL's role, then grant the app's roles.

    Owners and grants are not taken from the dump (the target may be another cluster with other role names): the
    restoring role owns what it creates, and backend.dbroles grants DATABASE_URL's and SYSTEM_DATABASE_URL's roles
    as `make migrate` does."""
    target = LibpqTarget.parse(url)
    if not dump.is_file():
        raise BackupError(f"no such dump: {dump}")
    existing = _user_tables_postgres(target)
    if existing:
        raise BackupError(
            f"database {target.database} already has {len(existing)} table(s): restore into a fresh database"
            f" (createdb) or an emptied one, never over live data"
        )
    _run(
        [
            _tool("pg_restore"),
            "--no-password",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            "-d",
            target.url,
            str(dump),
        ],
        target,
    )
    if grant_roles:
        grant_app_roles(url)


def grant_app_roles(url: str) -> list[str]:
    """Grant the roles of DATABASE_URL and SYSTEM_DATABASE_URL (those that are not the owner) on `url`'s database,
    creating them when absent; returns their names."""
    from backend.dbroles import provision, roles_from_settings

    _owner, specs = roles_from_settings()
    if specs:
        provision(url, specs)
    return [spec.name for spec in specs]


# ---- SQLite (embedded mode) ----------------------------------------------------------------------------------------


def sqlite_path(url: str) -> Path:
    """The file of a sqlite:/// URL."""
    match = re.match(r"^sqlite(\+\w+)?:///(.+)$", url)
    if match is None or match.group(2) == ":memory:":
        raise BackupError(f"not a SQLite file URL: {url}")
    return Path(match.group(2))


def backup_sqlite(database: Path, directory: Path) -> Path:
    """Copy the SQLite database with the online backup API (consistent while the app writes) to a new file."""
    if not database.is_file():
        raise BackupError(f"no SQLite database at {database}")
    path = directory / f"waitwell-sqlite-{_stamp()}.sqlite3"
    partial = path.with_name(path.name + ".partial")
    _private_file(partial)
    try:
        with closing(sqlite3.connect(database)) as source, closing(sqlite3.connect(partial)) as copy:
            source.backup(copy)
            if copy.execute("PRAGMA integrity_check").fetchone() != ("ok",):
                raise BackupError("the copy fails SQLite's integrity check")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(path)
    return path


def restore_sqlite(backup: Path, database: Path) -> None:
    """Restore a SQLite backup into `database` (absent, or holding no table) with the online backup API."""
    if not backup.is_file():
        raise BackupError(f"no such backup: {backup}")
    database.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(backup)) as source, closing(sqlite3.connect(database)) as target:
        tables = target.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if tables:
            raise BackupError(f"{database} already has {tables} table(s): stop the app and move it aside, then restore")
        source.backup(target)
    database.chmod(0o600)


# ---- keys ----------------------------------------------------------------------------------------------------------


def backup_keys(directory: Path) -> Path:
    """Write SECRET_KEY and ENCRYPTION_KEYS (as the running settings have them) to a new 0600 file, .env format."""
    settings = get_settings()
    path = directory / f"{KEYS_FILE_PREFIX}{_stamp()}.env"
    _private_file(path)
    lines = [
        "# Waitwell keys. Keep apart from the database dumps; restore: docs/runbooks/restore-from-backup.md",
        f"SECRET_KEY={settings.secret_key}",
        f"ENCRYPTION_KEYS={settings.encryption_keys}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_keys(path: Path) -> dict[str, str]:
    """The SECRET_KEY and ENCRYPTION_KEYS of a key file."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        values[name.strip()] = value.strip()
    if not values.get("SECRET_KEY"):
        raise BackupError(f"{path} holds no SECRET_KEY: not a key backup")
    return values


def restore_keys(path: Path, *, secret_file: Path | None = None, force: bool = False) -> Path:
    """Put the key file's SECRET_KEY back into data/secret.key (mode 0600), the embedded mode's key store.

    Refuses to replace a different key unless `force`: sessions, links and data encrypted under it would be lost.
    ENCRYPTION_KEYS (and SECRET_KEY where it is set in the environment) go into the service's environment by hand."""
    values = read_keys(path)
    secret_file = secret_file or DATA_DIR / "secret.key"
    if secret_file.exists() and secret_file.read_text().strip() != values["SECRET_KEY"] and not force:
        raise BackupError(f"{secret_file} holds a different key: move it aside first, or pass --force")
    _private_file(secret_file)
    secret_file.write_text(values["SECRET_KEY"])
    return secret_file


# ---- command line --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.backup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("backup", help="dump the database and (separately) the keys")
    make.add_argument("--dir", type=Path, default=None, help="where to write (default BACKUP_DIR, data/backups)")
    make.add_argument("--no-keys", action="store_true", help="the database only")
    back = commands.add_parser("restore", help="restore a dump into a fresh or empty database")
    back.add_argument("file", type=Path)
    back.add_argument("--target-url", default=None, help="default DATABASE_OWNER_URL, else DATABASE_URL")
    back.add_argument("--no-grants", action="store_true", help="PostgreSQL: do not grant the app's roles afterwards")
    keys = commands.add_parser("restore-keys", help="put a key file's SECRET_KEY back into data/secret.key")
    keys.add_argument("file", type=Path)
    keys.add_argument("--secret-file", type=Path, default=None, help="default data/secret.key")
    keys.add_argument("--force", action="store_true", help="replace a different existing key")
    args = parser.parse_args(argv)

    settings = get_settings()
    try:
        if args.command == "backup":
            directory = args.dir or settings.backup_dir
            if settings.is_sqlite:
                print(f"database: {backup_sqlite(sqlite_path(settings.database_url), directory)}")
            else:
                print(f"database: {backup_postgres(settings.owner_url, directory)}")
            if not args.no_keys:
                print(f"keys:     {backup_keys(directory)}  (0600; store apart from the dumps)")
        elif args.command == "restore":
            url = args.target_url or settings.owner_url
            if url.startswith("sqlite") or args.file.suffix == ".sqlite3":
                restore_sqlite(args.file, sqlite_path(url))
                print(f"restored {args.file} into {sqlite_path(url)}")
            else:
                restore_postgres(args.file, url, grant_roles=not args.no_grants)
                print(f"restored {args.file} into database {LibpqTarget.parse(url).database}")
            print("next: python -m backend.crypto status (0 unreadable), then python -m backend.audit verify")
        else:
            written = restore_keys(args.file, secret_file=args.secret_file, force=args.force)
            print(f"SECRET_KEY written to {written} (used when SECRET_KEY is not set in the environment)")
            if read_keys(args.file).get("ENCRYPTION_KEYS"):
                print(f"ENCRYPTION_KEYS: copy its line from {args.file} into the service's environment or .env")
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
