#!/usr/bin/env bash
# tests/router/openblas_reexec_test.sh PROBE — the probe, started without OPENBLAS_CORETYPE as if
# OpenBLAS had fallen back to Prescott, must re-execute itself with the core its CPU deserves and
# then run that core.
set -euo pipefail
out=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE -u MOE_OPENBLAS_REEXEC "$1")
echo "$out"
expected=$(echo "$out" | sed -n 's/^expected=//p')
line=$(echo "$out" | head -n 1)
if [ "$expected" = none ]; then
  [ "$line" = "OpenBLAS Prescott 1 thread" ] || { echo "FAIL: no better core, yet: $line"; exit 1; }
else
  case "$line" in
    "OpenBLAS $expected 1 thread (OPENBLAS_CORETYPE=$expected set by re-exec)") ;;
    *) echo "FAIL: expected a re-exec onto $expected, got: $line"; exit 1 ;;
  esac
fi
echo "1 passed, 0 failed"
