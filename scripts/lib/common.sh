# shellcheck shell=bash
# Shared helpers for Switchboard's shell tooling. Source it; do not execute it.
#
#   SB_ROOT        repository root (derived from this file's location)
#   SB_STATE_DIR   per-checkout server state and logs   ($SWITCHBOARD_STATE_DIR or $SB_ROOT/.switchboard)
#   SB_CACHE_DIR   per-user download cache (Kafka jars) ($SWITCHBOARD_CACHE_DIR or ~/.cache/switchboard)

if [[ -n ${_SB_COMMON_SOURCED:-} ]]; then return 0; fi
_SB_COMMON_SOURCED=1

SB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
SB_STATE_DIR=${SWITCHBOARD_STATE_DIR:-$SB_ROOT/.switchboard}
SB_CACHE_DIR=${SWITCHBOARD_CACHE_DIR:-${HOME:-/root}/.cache/switchboard}
export SB_ROOT SB_STATE_DIR SB_CACHE_DIR

# sb_log MSG... : diagnostic message on stderr (stdout stays clean for values callers capture).
sb_log() {
  printf '[switchboard] %s\n' "$*" >&2
}

# sb_die MSG... : log and return 1 (use as `sb_die "..."; return 1` or `|| sb_die ...`).
sb_die() {
  printf '[switchboard] ERROR: %s\n' "$*" >&2
  return 1
}

# sb_as_root CMD... : run CMD as root: directly when we already are, else through sudo.
sb_as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    sb_die "need root for '$*' but sudo is not installed (run as root, or install sudo)"
  fi
}

# sb_port_open HOST PORT : succeeds when something accepts TCP connections on HOST:PORT.
sb_port_open() {
  local host=$1 port=$2
  # shellcheck disable=SC2016  # expanded by the inner shell
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" >/dev/null 2>&1
}

# sb_wait_port HOST PORT TIMEOUT_S : wait until HOST:PORT accepts connections; 1 on timeout.
sb_wait_port() {
  local host=$1 port=$2 timeout_s=${3:-30}
  local deadline=$((SECONDS + timeout_s))
  while ! sb_port_open "$host" "$port"; do
    if ((SECONDS >= deadline)); then
      sb_log "timed out after ${timeout_s}s waiting for $host:$port"
      return 1
    fi
    sleep 0.5
  done
}

# sb_proc_alive PID : succeeds when PID is a running process (zombies count as dead: a daemon
# whose parent exited is reparented to PID 1, which in some containers reaps late or never).
sb_proc_alive() {
  local pid=$1 stat
  kill -0 "$pid" 2>/dev/null || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# sb_pid_alive PIDFILE [CMDLINE_SUBSTRING] : succeeds when PIDFILE names a live process (whose
# command line contains CMDLINE_SUBSTRING, if given: guards against a stale pid file whose pid has
# been reused by an unrelated process).
sb_pid_alive() {
  local pidfile=$1 want=${2:-} pid cmdline
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  sb_proc_alive "$pid" || return 1
  if [[ -n $want ]]; then
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$want"* ]] || return 1
  fi
}

# sb_kill_pidfile PIDFILE GRACE_S [CMDLINE_SUBSTRING] : SIGTERM the process, wait up to GRACE_S,
# then SIGKILL. Removes the pid file.
sb_kill_pidfile() {
  local pidfile=$1 grace=${2:-20} want=${3:-} pid deadline
  if ! sb_pid_alive "$pidfile" "$want"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(<"$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + grace))
  while sb_proc_alive "$pid" && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if sb_proc_alive "$pid"; then
    sb_log "pid $pid did not exit within ${grace}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while sb_proc_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  fi
  rm -f "$pidfile"
}

# sb_tail_log FILE [LINES] : print the tail of a log file to stderr, framed, for diagnosis.
sb_tail_log() {
  local file=$1 lines=${2:-30}
  [[ -s $file ]] || return 0
  printf '%s\n' "----- last $lines lines of $file -----" >&2
  tail -n "$lines" "$file" >&2 || true
  printf '%s\n' "----- end of $file -----" >&2
}
