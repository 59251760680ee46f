#!/usr/bin/env bash
# scripts/bundle.sh OUT [BINARY...] — copies moe-serve binaries (names in build/bin, or paths such
# as build/tests/cuda_backend_test; default: the serving and benchmark programs) and
# every non-system shared library they load into OUT/bin and OUT/lib, so they run on a machine
# without Debian's gRPC/Abseil/protobuf/OpenBLAS packages (the GPU machine, the container image).
# The binaries carry RPATH $ORIGIN/../lib. Kept out: glibc (the target's own) and the CUDA
# libraries (cudart/cuBLAS come with the GPU host's CUDA install); libmoe_cuda.so goes in when
# it was built. Prints the bundle's size.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MOE_BUILD_DIR:-$ROOT/build}"
OUT="${1:?usage: scripts/bundle.sh OUT [BINARY...]}"
shift
if [ $# -eq 0 ]; then
  set -- moe-router moe-expert moe-cluster moe-client moe-bench moe-make-checkpoint moe-expert-bench
fi
mkdir -p "$OUT/bin" "$OUT/lib"
objects=()
for b in "$@"; do
  [[ "$b" == */* ]] || b="$BUILD/bin/$b"
  cp "$b" "$OUT/bin/"
  objects+=("$b")
done
if [ -f "$BUILD/lib/libmoe_cuda.so" ]; then
  cp "$BUILD/lib/libmoe_cuda.so" "$OUT/lib/"
  objects+=("$BUILD/lib/libmoe_cuda.so")
fi
# System libraries the target is expected to have: glibc's, and the CUDA toolkit's.
system='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libutil|libcuda|libcudart|libcublas|libcublasLt)\.so'
for obj in "${objects[@]}"; do
  ldd "$obj" | awk '/=> \//{print $1, $3}' | while read -r name path; do
    [[ "$name" =~ $system ]] && continue
    [ -f "$OUT/lib/$name" ] || cp -L "$path" "$OUT/lib/$name"
  done
done
du -sh "$OUT" | awk '{print "bundle: " $1 " in '"$OUT"'"}'
