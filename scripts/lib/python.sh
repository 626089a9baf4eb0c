# shellcheck shell=bash
# sb_python_tools: a Python venv with the tools tests use as independent oracles: the official
# Standard Webhooks library (our webhook signatures), openapi-spec-validator and schemathesis
# (schemas/openapi.yaml, and a live intake against it), jsonschema (events on sb.events),
# confluent-kafka (the example producer in producers/examples/), kubernetes-validate
# (deploy/k8s/), PyYAML (reading the compose, rules and k8s files in the checks), and httpx +
# sseclient-py and websockets (the clients of the event stream tests: tests/tools/stream_client.py). Creates
# $SB_CACHE_DIR/pyvenv on first use, (re)installs the pinned versions when they differ, and
# exports SWITCHBOARD_TEST_PYTHON=<venv>/bin/python. Idempotent and quiet when already set up.
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SB_PYVENV_DIR=${SB_PYVENV_DIR:-$SB_CACHE_DIR/pyvenv}
# Pinned: an oracle that changes under us is not an oracle. Bump deliberately.
SB_PY_REQUIREMENTS=(
  standardwebhooks==1.1.0
  openapi-spec-validator==0.9.0
  schemathesis==4.32.5
  jsonschema==4.26.0
  confluent-kafka==2.16.1
  kubernetes-validate==1.37.0
  PyYAML==6.0.4
  httpx==0.28.1
  sseclient-py==1.9.0
  websockets==15.0.1
)

# _sb_pyvenv_ready: the venv exists and has exactly the pinned versions.
_sb_pyvenv_ready() {
  local py=$SB_PYVENV_DIR/bin/python
  [[ -x $py ]] || return 1
  "$py" - "${SB_PY_REQUIREMENTS[@]}" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version, PackageNotFoundError
for req in sys.argv[1:]:
    name, want = req.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
EOF
}

# _sb_pyvenv_create: python3 -m venv, installing Debian's python3-venv first if it is missing
# (without it bookworm's venv module fails for lack of ensurepip and leaves a venv without pip).
_sb_pyvenv_create() {
  command -v python3 >/dev/null 2>&1 || { sb_die "python3 is not installed"; return 1; }
  rm -rf "$SB_PYVENV_DIR"
  if python3 -m venv "$SB_PYVENV_DIR" >/dev/null 2>&1; then
    return 0
  fi
  rm -rf "$SB_PYVENV_DIR"
  sb_log "python3 -m venv failed; installing python3-venv"
  sb_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
  sb_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    python3-venv >&2 || return 1
  python3 -m venv "$SB_PYVENV_DIR" >&2 || { rm -rf "$SB_PYVENV_DIR"; sb_die "python3 -m venv failed"; return 1; }
}

sb_python_tools() {
  mkdir -p "$(dirname "$SB_PYVENV_DIR")" || return 1
  # One setup at a time per cache dir: concurrent runs would otherwise trample the same venv.
  local lock=$SB_PYVENV_DIR.lock rc=0
  (
    flock -w 600 9 || { sb_die "timed out waiting for $lock"; exit 1; }
    if _sb_pyvenv_ready; then exit 0; fi
    if [[ ! -x $SB_PYVENV_DIR/bin/python ]] || ! "$SB_PYVENV_DIR/bin/python" -m pip --version >/dev/null 2>&1; then
      sb_log "creating Python venv $SB_PYVENV_DIR"
      _sb_pyvenv_create || exit 1
    fi
    sb_log "installing ${SB_PY_REQUIREMENTS[*]} into $SB_PYVENV_DIR"
    "$SB_PYVENV_DIR/bin/python" -m pip install -q --disable-pip-version-check \
      "${SB_PY_REQUIREMENTS[@]}" >&2 || exit 1
    _sb_pyvenv_ready || { sb_die "pinned Python packages missing after pip install"; exit 1; }
  ) 9>"$lock" || rc=$?
  ((rc == 0)) || return "$rc"
  export SWITCHBOARD_TEST_PYTHON=$SB_PYVENV_DIR/bin/python
}
