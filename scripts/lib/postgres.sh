# shellcheck shell=bash
# Throw-away / dev PostgreSQL clusters using the Debian server binaries.
#
#   sb_pg_start NAME PORT     initdb (once) + start on 127.0.0.1:PORT, ensure role+db "switchboard"
#   sb_pg_url NAME PORT       echo the connection URL
#   sb_pg_stop NAME           pg_ctl stop -m fast
#   sb_pg_destroy NAME        stop and delete the cluster's data directory
#   sb_pg_log NAME            path of the server log
#
# SB_PG_SERVER_OPTS (opt-in, used by scripts/bench): extra server options appended to the
# postgres command line at start, e.g. "-c shared_preload_libraries=pg_stat_statements".
#
# PostgreSQL refuses to run as root, so when we are root every server-side command runs as the
# `postgres` system user (created by the Debian package) and the data directory lives under
# ${TMPDIR:-/tmp} (not in the repo, which may sit under a directory `postgres` cannot traverse,
# e.g. /root). When not root, everything runs as the current user.
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SB_PG_START_TIMEOUT=${SB_PG_START_TIMEOUT:-60}

# sb_pg_bindir: /usr/lib/postgresql/<newest version>/bin
sb_pg_bindir() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/initdb && -x $d/pg_ctl ]] || continue
    if [[ -z $best ]] || [[ $(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n1) == "$d" ]]; then
      best=$d
    fi
  done
  [[ -n $best ]] || { sb_die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (install 'postgresql')"; return 1; }
  printf '%s\n' "$best"
}

# sb_pg_datadir NAME: cluster directory (data + unix socket). Outside the checkout (see above),
# so it carries a checksum of this checkout's state directory: two checkouts' clusters of the
# same NAME (e.g. test-pg) must never share, stop or wipe one directory.
sb_pg_datadir() {
  local tag
  tag=$(printf '%s' "$SB_STATE_DIR" | cksum | cut -d' ' -f1)
  printf '%s\n' "${TMPDIR:-/tmp}/switchboard-pg-$tag-$1"
}

sb_pg_log() {
  printf '%s\n' "$SB_STATE_DIR/$1/postgres.log"
}

sb_pg_url() {
  printf 'postgresql://switchboard:switchboard@127.0.0.1:%s/switchboard\n' "$2"
}

# _sb_pg_run OUTFILE CMD...: run CMD as the user that owns the cluster, stdin from /dev/null and
# stdout+stderr appended to OUTFILE. (The redirection sits on the external command, never on a
# function call: a signal trap firing meanwhile must not inherit it and lose its own output.)
_sb_pg_run() {
  local out=$1
  shift
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@" </dev/null >>"$out" 2>&1
  else
    "$@" </dev/null >>"$out" 2>&1
  fi
}

# _sb_pg_psql PORT SQL...: run SQL as the superuser `postgres` over TCP (trust auth); output on stdout.
_sb_pg_psql() {
  local port=$1 bindir
  shift
  bindir=$(sb_pg_bindir) || return 1
  PGCONNECT_TIMEOUT=5 "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres -tA "$@"
}

sb_pg_start() {
  local name=$1 port=$2
  local bindir dir log
  bindir=$(sb_pg_bindir) || return 1
  dir=$(sb_pg_datadir "$name")
  mkdir -p "$SB_STATE_DIR/$name"
  log=$(sb_pg_log "$name")
  touch "$log"

  if [[ $(id -u) -eq 0 ]]; then
    id -u postgres >/dev/null 2>&1 || { sb_die "user 'postgres' does not exist (install the 'postgresql' package)"; return 1; }
    if ! runuser -u postgres -- test -x "$(dirname "$dir")"; then
      sb_die "user 'postgres' cannot traverse $(dirname "$dir"); set TMPDIR to a world-traversable directory"
      return 1
    fi
  fi

  if _sb_pg_run /dev/null "$bindir/pg_ctl" status -D "$dir"; then
    sb_log "PostgreSQL '$name' already running ($dir)"
  else
    if [[ ! -f $dir/PG_VERSION ]]; then
      sb_log "initdb PostgreSQL '$name' in $dir"
      rm -rf "$dir"
      mkdir -p "$dir"
      chmod 700 "$dir"
      [[ $(id -u) -ne 0 ]] || chown postgres:postgres "$dir"
      if ! _sb_pg_run "$log" "$bindir/initdb" -D "$dir" -A trust -U postgres -E UTF8 --no-locale; then
        sb_die "initdb failed for '$name'"
        sb_tail_log "$log" 40
        return 1
      fi
    fi
    if sb_port_open 127.0.0.1 "$port"; then
      sb_die "port $port is already in use; cannot start PostgreSQL '$name'"
      return 1
    fi
    sb_log "starting PostgreSQL '$name' on 127.0.0.1:$port"
    # Server output is appended to $log by *our* shell (not via pg_ctl -l, which would open the file
    # as `postgres` and fail when the repo lives somewhere that user cannot reach).
    # setsid: own session, so a Ctrl-C in the terminal does not fast-shutdown the server behind
    # the caller's back (the caller's trap decides).
    if ! _sb_pg_run "$log" setsid -w "$bindir/pg_ctl" start -w -t "$SB_PG_START_TIMEOUT" -D "$dir" \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on ${SB_PG_SERVER_OPTS:-}"; then
      sb_die "PostgreSQL '$name' failed to start"
      sb_tail_log "$log" 40
      return 1
    fi
  fi

  local deadline=$((SECONDS + SB_PG_START_TIMEOUT))
  until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 2; do
    if ((SECONDS >= deadline)); then
      sb_die "PostgreSQL '$name' not accepting connections on 127.0.0.1:$port"
      sb_tail_log "$log" 40
      return 1
    fi
    sleep 0.5
  done

  # Role and database (idempotent).
  if [[ $(_sb_pg_psql "$port" -c "SELECT 1 FROM pg_roles WHERE rolname = 'switchboard'") != 1 ]]; then
    _sb_pg_psql "$port" -c "CREATE ROLE switchboard LOGIN SUPERUSER PASSWORD 'switchboard'" \
      || { sb_die "could not create role switchboard"; return 1; }
  fi
  if [[ $(_sb_pg_psql "$port" -c "SELECT 1 FROM pg_database WHERE datname = 'switchboard'") != 1 ]]; then
    _sb_pg_psql "$port" -c "CREATE DATABASE switchboard OWNER switchboard" \
      || { sb_die "could not create database switchboard"; return 1; }
  fi
  sb_log "PostgreSQL '$name' ready: $(sb_pg_url "$name" "$port")"
}

sb_pg_stop() {
  local name=$1 bindir dir
  bindir=$(sb_pg_bindir) || return 1
  dir=$(sb_pg_datadir "$name")
  [[ -f $dir/PG_VERSION ]] || return 0
  if _sb_pg_run /dev/null "$bindir/pg_ctl" status -D "$dir"; then
    sb_log "stopping PostgreSQL '$name'"
    _sb_pg_run "$(sb_pg_log "$name")" "$bindir/pg_ctl" stop -D "$dir" -m fast -w -t 60 \
      || { sb_die "pg_ctl stop failed for '$name'"; return 1; }
  fi
}

sb_pg_destroy() {
  local name=$1 dir
  dir=$(sb_pg_datadir "$name")
  sb_pg_stop "$name" || true
  # If a fast stop failed, make sure no postmaster keeps using the directory we delete.
  if [[ -f $dir/postmaster.pid ]]; then
    local pid
    pid=$(head -n1 "$dir/postmaster.pid" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && sb_proc_alive "$pid"; then
      kill -QUIT "$pid" 2>/dev/null || true
      sleep 1
    fi
  fi
  rm -rf "$dir"
}
