# shellcheck shell=bash
# Local Redis servers for dev and integration tests.
#
#   sb_redis_start NAME PORT    start (or reuse) redis NAME on 127.0.0.1:PORT; state in $SB_STATE_DIR/NAME
#   sb_redis_stop NAME          SHUTDOWN NOSAVE (AOF is still flushed), falling back to SIGTERM/SIGKILL
#   sb_redis_destroy NAME       stop and delete NAME's data (logs are kept)
#   sb_redis_log NAME           path of the server log
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SB_REDIS_START_TIMEOUT=${SB_REDIS_START_TIMEOUT:-30}

sb_redis_log() {
  printf '%s\n' "$SB_STATE_DIR/$1/redis.log"
}

_sb_redis_ping() {
  [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]
}

sb_redis_start() {
  local name=$1 port=$2
  local dir=$SB_STATE_DIR/$1
  local pidfile=$dir/redis.pid log=$dir/redis.log

  if sb_pid_alive "$pidfile" redis-server; then
    if _sb_redis_ping "$port"; then
      sb_log "Redis '$name' already running on 127.0.0.1:$port (pid $(<"$pidfile"))"
      return 0
    fi
    sb_die "Redis '$name' (pid $(<"$pidfile")) is running but does not answer on 127.0.0.1:$port"
    return 1
  fi
  if sb_port_open 127.0.0.1 "$port"; then
    sb_die "port $port is already in use; cannot start Redis '$name'"
    return 1
  fi

  mkdir -p "$dir/data"
  rm -f "$pidfile"
  printf '%s\n' "$port" >"$dir/port"
  sb_log "starting Redis '$name' on 127.0.0.1:$port"
  # shellcheck disable=SC2094  # redis appends to its own log; we only add early startup errors
  if ! redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes \
      --daemonize yes --pidfile "$pidfile" --logfile "$log" --dir "$dir/data" \
      --appendonly yes </dev/null >>"$log" 2>&1; then
    sb_die "redis-server failed to start"
    sb_tail_log "$log" 40
    return 1
  fi

  local deadline=$((SECONDS + SB_REDIS_START_TIMEOUT))
  until _sb_redis_ping "$port"; do
    if ((SECONDS >= deadline)); then
      sb_die "Redis '$name' not answering on 127.0.0.1:$port after ${SB_REDIS_START_TIMEOUT}s"
      sb_tail_log "$log" 40
      sb_redis_stop "$name"
      return 1
    fi
    sleep 0.2
  done
  sb_log "Redis '$name' ready on 127.0.0.1:$port"
}

sb_redis_stop() {
  local name=$1 dir=$SB_STATE_DIR/$1
  local pidfile=$dir/redis.pid port=""
  [[ -f $dir/port ]] && port=$(<"$dir/port")
  sb_pid_alive "$pidfile" redis-server || { rm -f "$pidfile"; return 0; }
  local pid
  pid=$(<"$pidfile")
  sb_log "stopping Redis '$name' (pid $pid)"
  if [[ -n $port ]]; then
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 10))
    while sb_proc_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  fi
  # Fallback (no port file, or SHUTDOWN did not work): signals. Redis deletes its pid file on a
  # clean exit, so only act if it is still there.
  if [[ -f $pidfile ]]; then
    sb_kill_pidfile "$pidfile" 10 redis-server
  fi
}

sb_redis_destroy() {
  local name=$1
  sb_redis_stop "$name"
  rm -rf "${SB_STATE_DIR:?}/$name/data"
}
