#!/usr/bin/env bash
# Installs the pgvector extension into the machine's newest PostgreSQL. Debian 12 does not package it, so
# this builds Debian trixie's source package against the installed server (~20 s). Idempotent: nothing
# happens when vector.control is already there. Quiet; on failure it prints the failing step's output.
#
# The trixie deb-src entry lives in a throw-away apt configuration (its own source list and package lists
# under a temp dir), so the machine's apt sources are left exactly as they were.
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -x "$bindir/initdb" ] || { echo "install-pgvector: no PostgreSQL server under /usr/lib/postgresql" >&2; exit 1; }
pg_config="$bindir/pg_config"
control="$("$pg_config" --sharedir)/extension/vector.control"
[ -f "$control" ] && exit 0

export DEBIAN_FRONTEND=noninteractive
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log="$work/log"

quiet() {  # run a step silently; on failure show what it said and stop
  "$@" >"$log" 2>&1 || { echo "install-pgvector: failed: $*" >&2; tail -n 60 "$log" >&2; exit 1; }
}

# Server headers and PGXS, pinned to the installed server's version so that nothing gets upgraded.
if [ ! -f "$("$pg_config" --includedir-server)/postgres.h" ]; then
  major=$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
  pinned="postgresql-server-dev-$major=$(dpkg-query -W -f='${Version}' "postgresql-$major")"
  install=(apt-get install -y -qq --no-install-recommends)
  "${install[@]}" "$pinned" >"$log" 2>&1 \
    || { quiet apt-get update -qq; "${install[@]}" "$pinned" >"$log" 2>&1; } \
    || quiet "${install[@]}" "postgresql-server-dev-$major"
fi
command -v dpkg-source >/dev/null || quiet apt-get install -y -qq --no-install-recommends dpkg-dev

# The Debian mirror and keyring the system already uses, with suite trixie, for sources only.
uri=http://deb.debian.org/debian
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  keyring=$(awk '/^Signed-By:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
mkdir -p "$work/parts" "$work/lists/partial"
printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' "$uri" "$keyring" \
  >"$work/parts/trixie-src.sources"
apt_src=(apt-get -qq -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$work/parts"
         -o Dir::State::Lists="$work/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
         -o APT::Sandbox::User=root)
quiet "${apt_src[@]}" update
(cd "$work" && quiet "${apt_src[@]}" source pgvector)

src=$(ls -d "$work"/pgvector-*/ | head -n 1)
# with_llvm=no: no JIT bitcode, so clang is not needed and the build stays short.
quiet make -C "$src" -j"$(nproc)" PG_CONFIG="$pg_config" with_llvm=no
quiet make -C "$src" install PG_CONFIG="$pg_config" with_llvm=no
[ -f "$control" ] || { echo "install-pgvector: built, but $control is missing" >&2; exit 1; }
echo "install-pgvector: pgvector $(sed -nE "s/^default_version = '(.*)'/\1/p" "$control") installed for $("$pg_config" --version)"
