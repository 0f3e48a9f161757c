#!/usr/bin/env bash
# A newcomer's first hour on a bare Debian 12: `make demo`, then `make test`, on a copy of
# this clone's HEAD, in a throwaway bookworm chroot that has only python3, make and
# ca-certificates. No python3-venv, python3-pip, python3-dev, gcc, pkg-config, D-Bus or
# GLib headers, and none of the tools some tests use (dbus-daemon, tmux, mosquitto, swtpm,
# PostgreSQL): those tests must skip saying why. Run as root (debootstrap, chroot, mount);
# the commands inside run as an ordinary user. Exits with the first failure's status.
#
# Environment: DEBIAN_MIRROR (default deb.debian.org), FRESH_DEBIAN_TARBALL (a path: keep
# debootstrap's download there and reuse it on the next run; unset in CI, which starts
# fresh), FRESH_DEBIAN_KEEP=1 (leave the chroot behind), PYTEST_WORKERS (default 2).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# What a newcomer's bare Debian lacks; each must still be absent after the run.
absent=(python3-venv python3.11-venv python3-pip python3-dev python3.11-dev libpython3.11-dev
        gcc cpp pkg-config libdbus-1-dev libglib2.0-dev git
        dbus tmux mosquitto swtpm tpm2-tools postgresql)

if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-debian: run as root (debootstrap, chroot and mount need it)" >&2
  exit 2
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
fi

work=$(mktemp -d /var/tmp/bleprov-fresh-debian.XXXXXX)
root=$work/root
cleanup() {
  # Lazy unmount: a process still holding /dev or /proc must not keep the chroot mounted.
  for mounted in "$root/dev" "$root/proc"; do
    if mountpoint -q "$mounted"; then umount -R "$mounted" 2>/dev/null || umount -lR "$mounted"; fi
  done
  if [ "${FRESH_DEBIAN_KEEP:-0}" = 1 ]; then
    echo "fresh-debian: chroot kept in $root"
  else
    rm -rf --one-file-system "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

elapsed() { echo $(($(date +%s) - $1)); }
started=$(date +%s)

echo "== fresh-debian: debootstrap $suite (minbase + python3, make, ca-certificates)"
t=$(date +%s)
options=(--variant=minbase --include=python3,make,ca-certificates)
tarball=${FRESH_DEBIAN_TARBALL:-}
if [ -n "$tarball" ]; then
  [ -f "$tarball" ] || debootstrap "${options[@]}" --make-tarball="$tarball" "$suite" "$work/download" "$mirror" >/dev/null
  rm -rf "$work/download"
  options+=(--unpack-tarball="$(realpath "$tarball")")
fi
debootstrap "${options[@]}" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}
debootstrap_seconds=$(elapsed "$t")

# Name resolution for PyPI, and localhost. The host's CA bundle: where the host reaches
# PyPI through a TLS proxy, its bundle holds that proxy's CA (a machine's network setting,
# as a newcomer's machine on that network would have it; no package changes).
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
cp -L /etc/hosts "$root/etc/hosts"
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --make-rslave "$root/dev"

in_chroot() { chroot "$root" "$@"; }

check_absent() {
  local package missing=0
  for package in "${absent[@]}"; do
    if in_chroot dpkg -s "$package" >/dev/null 2>&1; then
      echo "fresh-debian: $package is installed in the chroot; it must not be" >&2
      missing=1
    fi
  done
  for command in gcc cc pkg-config dbus-daemon tmux mosquitto swtpm; do
    if in_chroot sh -c "command -v $command" >/dev/null 2>&1; then
      echo "fresh-debian: $command is on the chroot's PATH; it must not be" >&2
      missing=1
    fi
  done
  if in_chroot python3 -c "import ensurepip" 2>/dev/null; then
    echo "fresh-debian: the chroot's python3 has ensurepip (python3-venv); it must not" >&2
    missing=1
  fi
  return "$missing"
}
check_absent
echo "fresh-debian: absent, as on a bare Debian: ${absent[*]}"
in_chroot python3 --version

# The newcomer: an ordinary account with a copy of HEAD (what a clone would check out).
in_chroot useradd --create-home --shell /bin/bash newcomer
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  echo "fresh-debian: note: uncommitted changes in $repo are not part of the run (HEAD is)"
fi
git -C "$repo" archive --format=tar --prefix=bleprov/ HEAD | tar -x -C "$root/home/newcomer"
in_chroot chown -R newcomer:newcomer /home/newcomer/bleprov
echo "fresh-debian: HEAD $(git -C "$repo" rev-parse --short HEAD) copied to /home/newcomer/bleprov"

as_newcomer() {
  in_chroot runuser -u newcomer -- env -i HOME=/home/newcomer USER=newcomer LANG=C.UTF-8 \
    PATH=/usr/local/bin:/usr/bin:/bin bash -c "cd ~/bleprov && $1"
}

echo "== fresh-debian: make demo"
t=$(date +%s)
as_newcomer "make demo"
demo_seconds=$(elapsed "$t")

echo "== fresh-debian: make test"
t=$(date +%s)
as_newcomer "make test PYTEST_WORKERS=${PYTEST_WORKERS:-2}"
test_seconds=$(elapsed "$t")

check_absent
echo "fresh-debian: still absent after the run: ${absent[*]}"
echo "fresh-debian: debootstrap ${debootstrap_seconds} s, make demo ${demo_seconds} s," \
  "make test ${test_seconds} s, in all $(elapsed "$started") s"
