# shellcheck shell=bash
# sb_build [TARGET...]: configure (once) and build Switchboard into $SB_ROOT/build (binary:
# build/switchboard): the given targets, or everything (the benchmarks too) without any.
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SB_BUILD_DIR=${SB_BUILD_DIR:-$SB_ROOT/build}

sb_build() {
  if [[ ! -f $SB_BUILD_DIR/build.ninja ]]; then
    sb_log "configuring $SB_BUILD_DIR"
    local -a launcher=()
    # ccache (when installed) makes rebuilds cheap. No CCACHE_BASEDIR: it rewrites the
    # compiler's absolute paths to relative ones, so __FILE__ (which tests use to find
    # tests/tools/) would be relative to the build dir and not resolve from ctest's working dir.
    command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    # -g1 (line tables, no variable info): perf and callgrind still name functions and lines,
    # and a cold build is about a quarter cheaper than with -g.
    cmake -S "$SB_ROOT" -B "$SB_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" "${launcher[@]}" >&2 || return 1
  fi
  sb_log "building${1:+ $*}"
  cmake --build "$SB_BUILD_DIR" -j2 ${1:+--target "$@"} >&2 || return 1
}

# Optimisation of the instrumented trees scripts/test builds (TSan; clang ASan + UBSan + fuzz
# coverage), set when a tree is first configured. -O0: a cold clang ASan + UBSan build of the
# unit tests took 508 s at -O1 in a CI-like run, and one unity batch compiles 3.2× faster at
# -O0 (60.3 s → 18.7 s); the tests they run take seconds either way. scripts/fuzz, which
# measures executions per second, builds its own tree at -O1.
SB_INSTRUMENTED_FLAGS=${SB_INSTRUMENTED_FLAGS:--O0 -g1}

# sb_build_sanitized NAME SANITIZERS [TARGET...]: configure (once) and build $SB_ROOT/build-NAME
# with -DSB_SANITIZE=SANITIZERS (e.g. tsan thread) at $SB_INSTRUMENTED_FLAGS, only TARGETs
# (default unit_tests). Prints the tree's path on stdout.
sb_build_sanitized() {
  local name=$1 sanitize=$2
  shift 2
  local -a targets=("$@")
  ((${#targets[@]})) || targets=(unit_tests)
  local dir=$SB_ROOT/build-$name
  if [[ ! -f $dir/build.ninja ]]; then
    sb_log "configuring $dir (-fsanitize=$sanitize)"
    local -a launcher=()
    command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    # -g1: whole stacks with line numbers in every report.
    cmake -S "$SB_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_SANITIZE="$sanitize" \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$SB_INSTRUMENTED_FLAGS -DNDEBUG" "${launcher[@]}" >&2 || return 1
  fi
  sb_log "building ${targets[*]} in $dir"
  cmake --build "$dir" -j2 --target "${targets[@]}" >&2 || return 1
  printf '%s\n' "$dir"
}

# sb_build_fuzz NAME FLAGS [TARGET...]: configure (once) and build $SB_ROOT/build-NAME with clang
# and -DSB_FUZZ=ON (libFuzzer coverage + ASan + UBSan) at FLAGS: the fuzz_* targets, and the
# given extra targets. scripts/test: build-asan at $SB_INSTRUMENTED_FLAGS with unit_tests (its
# ASan + UBSan run, and the fuzz targets' seconds-long ctest runs); scripts/fuzz: build-fuzz at
# -O1 (long runs, executions per second). Prints the tree's path on stdout.
SB_FUZZ_TARGETS=(send_request command event webhook_api config callback)
sb_build_fuzz() {
  local name=$1 flags=$2
  shift 2
  local dir=$SB_ROOT/build-$name
  # A tree of that name configured otherwise (build-asan was a gcc tree before it was this one)
  # is configured anew.
  if [[ -f $dir/CMakeCache.txt ]] && ! grep -q '^SB_FUZZ:BOOL=ON' "$dir/CMakeCache.txt"; then
    sb_log "$dir is not a clang SB_FUZZ tree: configuring it anew"
    rm -rf "$dir"
  fi
  if [[ ! -f $dir/build.ninja ]]; then
    sb_log "configuring $dir (clang, libFuzzer, -fsanitize=address,undefined, $flags)"
    local -a launcher=()
    command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    cmake -S "$SB_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_FUZZ=ON \
      -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$flags -DNDEBUG" "${launcher[@]}" >&2 || return 1
  fi
  sb_log "building the fuzz targets${1:+ and $*} in $dir"
  cmake --build "$dir" -j2 --target "${SB_FUZZ_TARGETS[@]/#/fuzz_}" "$@" >&2 || return 1
  printf '%s\n' "$dir"
}
