# Shared set-up for scripts/run and scripts/test (sourced, not executed).
# Installs what is missing, idempotently, and finds or starts a PostgreSQL server.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$ROOT/end2end/node_modules/.bin:$PATH"

# cargo-leptos compiles with LEPTOS_OUTPUT_NAME set, and leptos reads it at compile time
# (option_env!): plain cargo commands need the same value, or each rebuilds what the other built.
export LEPTOS_OUTPUT_NAME=pipebridge

CARGO_LEPTOS_VERSION=0.3.10
PG_PRIVATE_DIR="$ROOT/.data/postgres"
PG_PRIVATE_PORT="${PIPEBRIDGE_PRIVATE_PG_PORT:-54329}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31merror: %s\033[0m\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $* (install it by hand, then retry)"; fi
}

ensure_rust_tools() {
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs) first"
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if [ "$(cargo-leptos --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LEPTOS_VERSION" ]; then
    # `no_downloads`: its default downloads of wasm-bindgen / wasm-opt fail without internet.
    # A debug build: it only orchestrates, and compiles in a fraction of the release time.
    say "installing cargo-leptos $CARGO_LEPTOS_VERSION (one time, several minutes)"
    cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked --features no_downloads --debug
  fi
  # The CLI must be exactly the version of the wasm-bindgen crate in Cargo.lock.
  local want
  want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
  [ -n "$want" ] || die "wasm-bindgen is missing from Cargo.lock"
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    say "installing wasm-bindgen-cli $want"
    # Without --locked: one of its locked dependency versions is not in the registry.
    cargo install wasm-bindgen-cli --version "$want" --debug --force
  fi
}

ensure_browser_tools() {
  if ! [ -x /usr/bin/chromium ]; then
    say "installing Debian's chromium for the browser tests"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
  fi
  if ! [ -d end2end/node_modules/@playwright/test ] || [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
    command -v npm >/dev/null || die "npm not found: install Node.js 20 or newer"
    say "installing end2end/ npm packages (Playwright, binaryen)"
    (cd end2end && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/$1" ] && { echo "$dir/$1"; return; }
  done
  command -v "$1" || die "PostgreSQL's $1 not found: install the postgresql package, or set DATABASE_URL"
}

# Runs a PostgreSQL server binary as a user it accepts (initdb and postgres refuse root).
pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then "$(command -v runuser || echo /usr/sbin/runuser)" -u postgres -- "$@"; else "$@"; fi
}

start_private_cluster() {
  if ! [ -f "$PG_PRIVATE_DIR/PG_VERSION" ]; then
    say "creating a private PostgreSQL cluster in .data/postgres"
    mkdir -p "$PG_PRIVATE_DIR"
    [ "$(id -u)" = 0 ] && chown -R postgres "$ROOT/.data"
    pg_as_owner "$(pg_bin initdb)" -D "$PG_PRIVATE_DIR" -U postgres -A trust --no-sync >/dev/null
  fi
  if ! pg_as_owner "$(pg_bin pg_ctl)" -D "$PG_PRIVATE_DIR" status >/dev/null 2>&1; then
    say "starting the private PostgreSQL cluster on 127.0.0.1:$PG_PRIVATE_PORT"
    pg_as_owner "$(pg_bin pg_ctl)" -D "$PG_PRIVATE_DIR" -l "$PG_PRIVATE_DIR/server.log" -w \
      -o "-p $PG_PRIVATE_PORT -c listen_addresses=127.0.0.1 -k $PG_PRIVATE_DIR -c fsync=off" start >/dev/null
  fi
  PG_ADMIN_URL="postgres://postgres@127.0.0.1:$PG_PRIVATE_PORT"
}

# Sets PG_ADMIN_URL (a server we may create databases on), from DATABASE_URL, the server on
# 127.0.0.1:5432, or a private cluster, in that order.
ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    PG_ADMIN_URL="${DATABASE_URL%/*}"
  elif [ -z "${PIPEBRIDGE_PRIVATE_PG:-}" ] && "$(pg_bin pg_isready)" -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    PG_ADMIN_URL="postgres://postgres@127.0.0.1:5432"
  else
    start_private_cluster
  fi
}

# create_database NAME [fresh]: creates it if missing (or anew with "fresh"); prints its URL.
create_database() {
  local name="$1" psql
  psql="$(pg_bin psql)"
  if [ "${2:-}" = fresh ]; then
    "$psql" -q "$PG_ADMIN_URL/postgres" -c "drop database if exists \"$name\" with (force)" >/dev/null
  fi
  if [ -z "$("$psql" -tA "$PG_ADMIN_URL/postgres" -c "select 1 from pg_database where datname = '$name'")" ]; then
    "$psql" -q "$PG_ADMIN_URL/postgres" -c "create database \"$name\"" >/dev/null
  fi
  echo "$PG_ADMIN_URL/$name"
}
