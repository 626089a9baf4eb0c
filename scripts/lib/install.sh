# shellcheck shell=bash
# sb_install_deps: apt-get install whichever of Switchboard's Debian (bookworm) packages are missing.
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SB_APT_PACKAGES=(
  # --- C++ toolchain / build ---
  build-essential        # g++, make, libc headers
  cmake                  # >= 3.25 (bookworm ships 3.25)
  ninja-build            # cmake -G Ninja
  pkg-config             # pkg_check_modules(rdkafka, hiredis, libpqxx, cpp-httplib)
  ccache                 # compiler cache: cheap rebuilds across checkouts and build trees
  clang                  # libFuzzer targets (tests/fuzz): only clang has -fsanitize=fuzzer
  libclang-rt-14-dev     # clang's runtimes: libFuzzer, ASan, UBSan (bookworm's clang is 14)
  git
  ca-certificates        # TLS for Maven Central / curl
  curl
  # --- C++ libraries ---
  librdkafka-dev         # Kafka client (librdkafka + librdkafka++)
  libhiredis-dev         # Redis client
  libpqxx-dev            # PostgreSQL client (pulls libpq-dev)
  libyaml-cpp-dev        # config files
  libspdlog-dev          # logging (pulls libfmt-dev)
  catch2                 # unit tests (Catch2 v2)
  libcurl4-openssl-dev   # outbound HTTP (providers, webhooks)
  nlohmann-json3-dev     # JSON
  libvalijson-dev        # JSON Schema validation
  libcli11-dev           # command line parsing
  libboost-dev           # Boost.Beast + Asio (header-only): the event-driven HTTP server
  libcpp-httplib-dev     # HTTP client in tests and benchmarks; tests' legacy loopback receivers
  libssl-dev             # TLS / HMAC signing
  libqrencode-dev        # the simulator's pairing QR codes
  zlib1g-dev             # deflate + CRC-32 for the simulator's PNG images
  prometheus-cpp-dev     # metrics: histograms and labelled series in the Prometheus text format
  # --- local servers for dev and integration tests ---
  postgresql             # initdb/pg_ctl/psql under /usr/lib/postgresql/<ver>/bin
  redis-server           # also pulls redis-tools (redis-cli)
  kcat                   # Kafka CLI, used for readiness checks and debugging
  openjdk-17-jdk-headless  # runs the Kafka broker (jars fetched by Maven)
  maven                  # fetches the Kafka broker jars (scripts/kafka/pom.xml)
  # --- misc tools the scripts use ---
  python3
  python3-venv           # venv for the test oracles (scripts/lib/python.sh)
  docker-compose         # validates compose/docker-compose.yml without a Docker engine (tests)
  prometheus             # promtool: checks compose/prometheus/ config and alert rules (tests)
  zbar-tools             # zbarimg: decodes the simulator's QR PNGs in tests (an independent reader)
  procps                 # ps, pgrep
  iproute2               # ss
)

# sb_missing_packages: print the packages from SB_APT_PACKAGES that are not installed.
sb_missing_packages() {
  local pkg status
  for pkg in "${SB_APT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || printf '%s\n' "$pkg"
  done
}

sb_install_deps() {
  local -a missing
  mapfile -t missing < <(sb_missing_packages)
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  sb_log "installing missing Debian packages: ${missing[*]}"
  sb_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
  sb_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >&2 || return 1
}
