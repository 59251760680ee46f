#!/usr/bin/env bash
# TLS, mTLS and bearer tokens with real processes and certificates made here by openssl: a router
# (TLS on its port, --auth_token_file) in front of two workers that require a client certificate
# (mTLS), checked by security_check.py with Debian's grpcio: plaintext, a wrong CA, a missing or
# wrong token and a worker called without a client certificate are refused; the right ones get
# answers equal to the NumPy block; health needs no token; the router's certificate is rotated
# (files replaced) without a restart; then moe-client --tls_ca --auth_token_file --check.
# Args: <bin dir> <python stubs dir> <tmp dir>.
set -euo pipefail
bin="$1"; stubs="$2"; tmp="$3/security"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rm -rf "$tmp"
mkdir -p "$tmp"
cd "$tmp"
# Two CAs, and for each a certificate for 127.0.0.1 usable as server and as client.
for ca in ca1 ca2; do
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=moe-serve test $ca" \
    -keyout "$ca.key" -out "$ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=moe-serve node ($ca)" -keyout "node-$ca.key" \
    -out "node-$ca.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >ext.cnf
  openssl x509 -req -in "node-$ca.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 2 \
    -extfile ext.cnf -out "node-$ca.crt" 2>/dev/null
done
cat ca1.crt ca2.crt >both-cas.crt
cp node-ca1.crt router.crt
cp node-ca1.key router.key
printf 's3cret-token\n' >token
model="$tmp/model"
"$bin/moe-make-checkpoint" --out="$model" --hidden_size=48 --intermediate_size=40 --num_experts=6 \
  --top_k=2 --num_layers=2 --dtype=f32 --seed=17 >/dev/null
# Workers: mTLS, trusting both CAs (the router's certificate moves from ca1 to ca2 below).
# Router: TLS on its port with router.crt (rotated in place), verifies workers with ca1.
MOE_PY_STUBS="$stubs" MOE_TLS_DIR="$tmp" exec "$bin/moe-cluster" --checkpoint="$model" --workers=2 \
  --worker_flags="--tls_cert=$tmp/node-ca1.crt --tls_key=$tmp/node-ca1.key --tls_ca=$tmp/both-cas.crt" \
  --router_flags="--tls_cert=$tmp/router.crt --tls_key=$tmp/router.key --tls_ca=$tmp/ca1.crt --tls_reload_s=1 --auth_token_file=$tmp/token" \
  -- bash -c "/usr/bin/python3 '$here/security_check.py' '$model' && \
     moe-client --router={router} --tls_ca='$tmp/ca2.crt' --auth_token_file='$tmp/token' --tokens=8 \
       --all_layers --check --checkpoint='$model' && echo 'ok   moe-client over TLS with the token: --check passes'"
