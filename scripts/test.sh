#!/usr/bin/env bash
# scripts/test.sh — on a fresh Debian 12 machine: install what is missing, build into build/,
# run every test through ctest. Exits non-zero on any failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
moe_install_packages
moe_python_env
MOE_TORCH_PYTHON="$(moe_torch_env)"  # torch + transformers for the HF parity test (cached per machine)
export MOE_TORCH_PYTHON
moe_build
cd "$BUILD"
ctest --output-on-failure -j "${MOE_JOBS:-2}" --timeout 600
