#!/usr/bin/env bash
# Point-in-time recovery drill (docs/postgres-pitr.md): on a throw-away cluster of its own (a temporary directory,
# a Unix socket only, no TCP port), archive WAL, take a base backup, write rows before and after a target time,
# recover to that time and check that exactly the rows before it came back. Touches no other cluster.
#
#   runuser -u postgres -- bash scripts/pitr-drill.sh      # as root; or run it as any non-root user
#
# PG_BIN: the server binaries (default: Debian's /usr/lib/postgresql/<newest>/bin).
set -euo pipefail
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
WORK="$(mktemp -d /tmp/waitwell-pitr.XXXXXX)"
PORT=5499
trap 'for d in primary restored; do [ -f "$WORK/$d/postmaster.pid" ] && "$PG_BIN/pg_ctl" -D "$WORK/$d" -m immediate stop >/dev/null 2>&1; done; rm -rf "$WORK"' EXIT

sql() { "$PG_BIN/psql" -X -q -At -h "$WORK" -p "$PORT" -U postgres -d postgres -c "$1"; }

echo "1. a primary with WAL archiving ($WORK)"
mkdir -p "$WORK/archive"
"$PG_BIN/initdb" -D "$WORK/primary" -U postgres --auth=trust >/dev/null
cat >>"$WORK/primary/postgresql.conf" <<EOF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$WORK'
wal_level = replica
archive_mode = on
archive_command = 'test ! -f $WORK/archive/%f && cp %p $WORK/archive/%f'
EOF
"$PG_BIN/pg_ctl" -D "$WORK/primary" -l "$WORK/primary.log" -w start >/dev/null
sql "CREATE TABLE drill (id int PRIMARY KEY, phase text NOT NULL)"
sql "INSERT INTO drill SELECT g, 'before base backup' FROM generate_series(1, 100) g"

echo "2. a base backup (pg_basebackup -Ft -z -Xs)"
"$PG_BIN/pg_basebackup" -h "$WORK" -p "$PORT" -U postgres -D "$WORK/base" -Ft -z -Xs --checkpoint=fast

echo "3. rows after the base backup, the target time, then rows that must not come back"
sql "INSERT INTO drill SELECT g, 'after base backup' FROM generate_series(101, 150) g"
TARGET="$(sql "SELECT now()")"
sql "SELECT pg_sleep(1)" >/dev/null
sql "INSERT INTO drill SELECT g, 'after the target' FROM generate_series(151, 200) g"
LAST="$(sql "SELECT pg_walfile_name(pg_current_wal_lsn())")"
sql "SELECT pg_switch_wal()" >/dev/null
for _ in $(seq 1 100); do [ -f "$WORK/archive/$LAST" ] && break; sleep 0.1; done
[ -f "$WORK/archive/$LAST" ] || { echo "WAL segment $LAST was not archived"; exit 1; }
"$PG_BIN/pg_ctl" -D "$WORK/primary" -m fast -w stop >/dev/null
echo "   target time: $TARGET"

echo "4. recovery: the base backup, restore_command, recovery_target_time"
mkdir -m 700 "$WORK/restored"
tar -xzf "$WORK/base/base.tar.gz" -C "$WORK/restored"
tar -xzf "$WORK/base/pg_wal.tar.gz" -C "$WORK/restored/pg_wal"
cat >>"$WORK/restored/postgresql.auto.conf" <<EOF
archive_mode = off
restore_command = 'cp $WORK/archive/%f %p'
recovery_target_time = '$TARGET'
recovery_target_action = 'promote'
EOF
touch "$WORK/restored/recovery.signal"
"$PG_BIN/pg_ctl" -D "$WORK/restored" -l "$WORK/restored.log" -w start >/dev/null
for _ in $(seq 1 100); do [ "$(sql "SELECT pg_is_in_recovery()")" = f ] && break; sleep 0.1; done

got="$(sql "SELECT count(*) FILTER (WHERE id <= 150) || ' ' || count(*) FILTER (WHERE id > 150) FROM drill")"
echo "   rows up to the target: ${got% *} (expected 150), rows after it: ${got#* } (expected 0)"
if [ "$got" = "150 0" ]; then
  echo "PITR drill passed"
else
  echo "PITR drill FAILED"; tail -20 "$WORK/restored.log"; exit 1
fi
