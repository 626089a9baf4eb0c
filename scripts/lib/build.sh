# shellcheck shell=bash
# sb_build: configure (once) and build Switchboard into $SB_ROOT/build (binary: build/switchboard).
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SB_BUILD_DIR=${SB_BUILD_DIR:-$SB_ROOT/build}

sb_build() {
  if [[ ! -f $SB_BUILD_DIR/build.ninja ]]; then
    sb_log "configuring $SB_BUILD_DIR"
    local -a launcher=()
    # ccache (when installed) makes rebuilds in a second checkout or a sanitizer tree cheap.
    command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    cmake -S "$SB_ROOT" -B "$SB_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >&2 || return 1
  fi
  sb_log "building"
  CCACHE_BASEDIR=$SB_ROOT cmake --build "$SB_BUILD_DIR" -j2 >&2 || return 1
}
