#!/usr/bin/env bash
# The bundle (scripts/bundle.sh) — what the runtime container image carries — runs a local cluster
# with parity against in-process, in a private mount namespace where Debian's library folder is
# replaced by glibc alone and /usr/include and /usr/local (CUDA) are hidden: none of the -dev
# packages or their libraries can be reached. Args: <repo> <build dir> <tmp dir>. Exit 77 (skip)
# where mount namespaces cannot be made (not root).
set -euo pipefail
repo="$1"; build="$2"; tmp="$3/bundle-test"
if [ "$(id -u)" != 0 ] || ! unshare --mount true 2>/dev/null; then
  echo "SKIP: needs root to make a mount namespace"; exit 77
fi
rm -rf "$tmp" && mkdir -p "$tmp"
MOE_BUILD_DIR="$build" bash "$repo/scripts/bundle.sh" "$tmp/bundle" >/dev/null
libdir=/usr/lib/x86_64-linux-gnu
mkdir "$tmp/glibc"
for l in libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libresolv.so.2 ld-linux-x86-64.so.2; do
  cp -L "$libdir/$l" "$tmp/glibc/"
done
B="$tmp/bundle/bin"
unshare --mount --propagation private /bin/sh -ec "
  mount -t tmpfs none /usr/include
  mount -t tmpfs none /usr/local
  mount --bind '$tmp/glibc' $libdir
  if [ -e $libdir/libgrpc++.so.1.51 ] || [ -e /usr/local/cuda ]; then echo 'FAIL: libraries still visible'; exit 1; fi
  echo 'ok   Debian libraries, headers and CUDA are hidden'
  '$B/moe-make-checkpoint' --out='$tmp/model' --hidden_size=64 --intermediate_size=48 --num_experts=4 \
      --top_k=2 --num_layers=2 --dtype=f32 >/dev/null
  '$B/moe-cluster' --checkpoint='$tmp/model' --workers=2 -- moe-client --tokens=32 --all_layers --check \
      --checkpoint='$tmp/model' > '$tmp/out.txt' 2>'$tmp/servers.log'
  out=\$(cat '$tmp/out.txt')  # grep would need libpcre2, which is hidden here
  case \"\$out\" in
    *'parity: worst max rel err 0 over 2 layer'*) ;;
    *) echo \"\$out\"; echo 'FAIL: no parity'; exit 1 ;;
  esac
  echo 'ok   the bundled cluster matches the in-process path exactly'
"
echo "2 passed, 0 failed"
