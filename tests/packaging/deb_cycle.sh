#!/usr/bin/env bash
# The Debian package's life in a throwaway Debian root (debootstrap minbase, cached):
# install → start → a failed backup stops an upgrade → upgrade with the automatic backup →
# the upgraded binary serves the same data → the skip switch → remove keeps settings and data →
# purge deletes them (and keeps the backups) → settings written before a first install are kept.
#
# Usage (as root): deb_cycle.sh OLD.deb NEW.deb WORK_DIR
# There is no systemd in a chroot: the package's scripts skip starting the unit (as they must),
# and the test runs `arno serve` as the arno user with the package's configuration instead.
set -euo pipefail
OLD_DEB=$1 NEW_DEB=$2 WORK=$3
CACHE=${ARNO_CACHE_DIR:-$HOME/.cache/arno}
MIRROR=${ARNO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE="$CACHE/packaging/bookworm-minbase.tar"
ROOT="$WORK/root"
SERVER_PID=""
SERVER_PORT=""
# Everything below writes into WORK (logs, the root): it must exist before the first write,
# including the debootstrap branch that only runs on a machine without the cached base.
mkdir -p "$WORK"

fail() { echo "deb cycle: FAILED: $*" >&2; exit 1; }
step() { printf '  - %s\n' "$*"; }
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
mode_of() { in_root stat -c '%U %G %a' "$1"; }
expect_mode() { local got; got=$(mode_of "$1"); [ "$got" = "$2" ] || fail "$1 is '$got', expected '$2'"; }

cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if mountpoint -q "$ROOT/proc" 2>/dev/null; then umount -l "$ROOT/proc"; fi
}
trap cleanup EXIT

if [ ! -f "$BASE" ]; then
  echo "==> debootstrap bookworm (minbase) from $MIRROR, cached in $BASE" >&2
  mkdir -p "$(dirname "$BASE")"
  rm -rf "$WORK/debootstrap"
  debootstrap --variant=minbase bookworm "$WORK/debootstrap" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
  tar -C "$WORK/debootstrap" -cf "$BASE.partial" .
  mv "$BASE.partial" "$BASE"
  rm -rf "$WORK/debootstrap"
fi
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$BASE"
mount -t proc proc "$ROOT/proc"
cp "$OLD_DEB" "$ROOT/tmp/old.deb"
cp "$NEW_DEB" "$ROOT/tmp/new.deb"
OLD_VERSION=$(dpkg-deb -f "$OLD_DEB" Version)
NEW_VERSION=$(dpkg-deb -f "$NEW_DEB" Version)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() {
  local port; port=$(free_port)
  SERVER_PORT=$port
  # The package's configuration, on free loopback ports (the environment wins over the file).
  chroot --userspec=arno:arno "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin ARNO_CONFIG=/etc/arno/arno.toml \
    ARNO_LISTEN="127.0.0.1:$port" ARNO_METRICS_LISTEN="127.0.0.1:$(free_port)" \
    /usr/bin/arno serve >>"$WORK/serve.log" 2>&1 &
  SERVER_PID=$!
  python3 - "$port" <<'PY' || { tail -n 20 "$WORK/serve.log" >&2; fail "arno serve did not become ready"; }
import sys, time, urllib.request
for _ in range(300):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ready", timeout=1).status == 200:
            sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(1)
PY
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""; }

echo "==> .deb cycle in a Debian bookworm root: $OLD_VERSION → $NEW_VERSION" >&2
step "install $OLD_VERSION"
out=$(in_root dpkg -i /tmp/old.deb 2>&1) || { echo "$out" >&2; fail "dpkg -i $OLD_VERSION"; }
grep -q "setup-token" <<<"$out" || fail "the first install does not say where the setup token is: $out"
in_root getent passwd arno | grep -q ':/var/lib/arno:/usr/sbin/nologin$' || fail "arno system user"
uid=$(in_root id -u arno); [ "$uid" -lt 1000 ] || fail "arno is not a system user (uid $uid)"
expect_mode /etc/arno "root arno 750"
expect_mode /etc/arno/arno.toml "root arno 640"
expect_mode /var/lib/arno "arno arno 700"
expect_mode /usr/bin/arno "root root 755"
in_root test -f /usr/lib/systemd/system/arno.service || fail "unit file"
in_root test -L /etc/systemd/system/multi-user.target.wants/arno.service || fail "arno.service is not enabled"
grep -q '^listen = "0.0.0.0:8080"$' "$ROOT/etc/arno/arno.toml" || fail "the package listens on 0.0.0.0:8080"

step "start, create a user"
start_server
printf 'correct horse battery staple 42\n' >"$ROOT/tmp/password"
chmod 0644 "$ROOT/tmp/password"
chroot --userspec=arno:arno "$ROOT" /usr/bin/env -i ARNO_CONFIG=/etc/arno/arno.toml /usr/bin/arno admin create-user \
  --email ada@example.com --name Ada --password-file /tmp/password --admin >/dev/null || fail "create-user"
echo "# changed by the administrator" >>"$ROOT/etc/arno/arno.toml"

step "create a project whose repository Arno manages (/var/lib/arno/repos)"
token=$(chroot --userspec=arno:arno "$ROOT" /usr/bin/env -i ARNO_CONFIG=/etc/arno/arno.toml /usr/bin/arno admin \
  create-token --email ada@example.com --name deb-cycle) || fail "create-token"
project_id=$(python3 - "$SERVER_PORT" "$token" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/api/v1/projects", method="POST",
    data=json.dumps({"name": "Packaged"}).encode(),
    headers={"Authorization": f"Bearer {sys.argv[2]}", "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req, timeout=30))["id"])
PY
) || fail "creating a project"
in_root test -f "/var/lib/arno/repos/$project_id.git/HEAD" || fail "the project has no managed repository"

step "a failed automatic backup stops the upgrade; $OLD_VERSION stays"
echo 'shutdown_timeout = "soon"' >>"$ROOT/etc/arno/arno.toml"
if out=$(in_root dpkg -i /tmp/new.deb 2>&1); then fail "the upgrade went on although the backup failed"; fi
grep -q "the automatic backup failed" <<<"$out" || fail "no explanation of the stopped upgrade: $out"
[ "$(in_root dpkg-query -W -f '${Version} ${Status}' arno)" = "$OLD_VERSION install ok installed" ] ||
  fail "after the stopped upgrade: $(in_root dpkg-query -W -f '${Version} ${Status}' arno)"
sed -i '/^shutdown_timeout = "soon"$/d' "$ROOT/etc/arno/arno.toml"

step "upgrade to $NEW_VERSION while serving: automatic backup first, the 3 newest kept"
# Three automatic backups of earlier upgrades, oldest first.
for day in 01 02 03; do
  mkdir -p "$ROOT/var/backups/arno/pre-upgrade-0.0.$day-1-202601${day}T000000Z"
  touch -d "2026-01-$day" "$ROOT/var/backups/arno/pre-upgrade-0.0.$day-1-202601${day}T000000Z"
done
out=$(in_root dpkg -i /tmp/new.deb 2>&1) || { echo "$out" >&2; fail "dpkg -i $NEW_VERSION"; }
kept=$(cd "$ROOT/var/backups/arno" && ls -d pre-upgrade-* | LC_ALL=C sort | tr '\n' ' ')
[ "$kept" = "pre-upgrade-0.0.02-1-20260102T000000Z pre-upgrade-0.0.03-1-20260103T000000Z $(cd "$ROOT/var/backups/arno" && ls -d pre-upgrade-"$OLD_VERSION"-*) " ] ||
  fail "automatic backups kept: $kept"
grep -q "backing up the instance" <<<"$out" || fail "no backup announced: $out"
[ "$(in_root dpkg-query -W -f '${Version}' arno)" = "$NEW_VERSION" ] || fail "not upgraded"
backups=$(cd "$ROOT" && ls -d var/backups/arno/pre-upgrade-"$OLD_VERSION"-* 2>/dev/null | wc -l)
[ "$backups" = 1 ] || fail "expected one pre-upgrade backup, found $backups"
backup=$(cd "$ROOT" && ls -d var/backups/arno/pre-upgrade-"$OLD_VERSION"-*)
expect_mode "/$backup" "arno arno 700"
in_root /usr/bin/arno restore --verify-only "/$backup" | grep -q "^intact" || fail "the backup does not verify"
grep -q '"users"' "$ROOT/$backup/manifest.json" || fail "the backup has no users table"
python3 - "$ROOT/$backup/manifest.json" "$project_id" <<'PY' || fail "the automatic backup lacks the managed repository"
import json, sys
m = json.load(open(sys.argv[1]))
repo = m["repositories"][sys.argv[2]]
assert repo["refs"].get("refs/heads/main"), repo
assert f"{repo['dir']}/packed-refs" in m["files"], repo
PY
grep -q "^# changed by the administrator$" "$ROOT/etc/arno/arno.toml" || fail "the upgrade overwrote the settings"
expect_mode /etc/arno/arno.toml "root arno 640"
expect_mode /var/lib/arno "arno arno 700"

step "the upgraded binary serves the same data"
stop_server
start_server
chroot --userspec=arno:arno "$ROOT" /usr/bin/env -i ARNO_CONFIG=/etc/arno/arno.toml /usr/bin/arno admin create-token \
  --email ada@example.com --name after-upgrade >/dev/null || fail "the user created before the upgrade is gone"
stop_server

step "touch /etc/arno/skip-auto-backup skips the backup"
touch "$ROOT/etc/arno/skip-auto-backup"
out=$(in_root dpkg -i /tmp/new.deb 2>&1) || { echo "$out" >&2; fail "reinstall"; }
grep -q "backup skipped as asked" <<<"$out" || fail "skip switch ignored: $out"
[ "$(cd "$ROOT" && ls -d var/backups/arno/pre-upgrade-* | wc -l)" = 3 ] || fail "a backup was taken anyway"
rm "$ROOT/etc/arno/skip-auto-backup"

step "remove keeps settings and data"
in_root dpkg -r arno >/dev/null 2>&1 || fail "dpkg -r"
in_root test ! -e /usr/bin/arno || fail "binary left after remove"
in_root test -f /etc/arno/arno.toml || fail "remove deleted the settings"
in_root test -d /var/lib/arno || fail "remove deleted the data"

step "purge deletes settings and data, keeps the backups"
out=$(in_root dpkg -P arno 2>&1) || { echo "$out" >&2; fail "dpkg -P"; }
in_root test ! -e /etc/arno || fail "/etc/arno left after purge"
in_root test ! -e /var/lib/arno || fail "/var/lib/arno left after purge"
in_root test -d "/$backup" || fail "purge deleted the backups"
grep -q "backups kept" <<<"$out" || fail "purge does not mention the kept backups: $out"
in_root test ! -e /etc/systemd/system/multi-user.target.wants/arno.service || fail "enablement left after purge"
step "settings written before the first install (as the Ansible role does) are kept"
mkdir -p "$ROOT/etc/arno"
printf 'data_dir = "/var/lib/arno"\nlisten = "127.0.0.1:8081"\n# written by configuration management\n' \
  >"$ROOT/etc/arno/arno.toml"
out=$(in_root dpkg -i --force-confdef --force-confold /tmp/old.deb 2>&1) || { echo "$out" >&2; fail "pre-seeded install"; }
grep -q "^# written by configuration management$" "$ROOT/etc/arno/arno.toml" || fail "dpkg replaced pre-seeded settings"
expect_mode /etc/arno/arno.toml "root arno 640"
in_root dpkg -P arno >/dev/null 2>&1 || fail "purge after the pre-seeded install"
echo "==> .deb cycle passed" >&2
