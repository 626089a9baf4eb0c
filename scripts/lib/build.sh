# shellcheck shell=bash
# sb_build: configure (once) and build Switchboard into $SB_ROOT/build (binary: build/switchboard).
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SB_BUILD_DIR=${SB_BUILD_DIR:-$SB_ROOT/build}

sb_build() {
  if [[ ! -f $SB_BUILD_DIR/build.ninja ]]; then
    sb_log "configuring $SB_BUILD_DIR"
    cmake -S "$SB_ROOT" -B "$SB_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2 || return 1
  fi
  sb_log "building"
  cmake --build "$SB_BUILD_DIR" -j2 >&2 || return 1
}
