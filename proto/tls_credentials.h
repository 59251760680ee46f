// proto/tls_credentials.h
// TLS for moe-serve's gRPC ports and channels, from PEM files that are re-read when they change
// (gRPC's FileWatcherCertificateProvider): rotate a certificate by replacing its files, no
// restart. Servers: the router's public port (client certificates optional) and the workers'
// (client certificates required and verified: mTLS). Channels: the router's to its workers
// (presenting its certificate), and clients'. Used by the router and worker mains and by tests.
// Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace moe::proto {

struct TlsFiles {
  std::string cert;     // PEM certificate chain presented by this side
  std::string key;      // its PEM private key
  std::string ca;       // PEM roots that verify the other side (empty: the system's, channels only)
  int reload_seconds = 10;  // how often the files are checked for changes
  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

// Server credentials: TLS with `files.cert`/`files.key`; with `require_client_cert`, clients must
// present a certificate that `files.ca` verifies (mTLS). INVALID_ARGUMENT naming the flag when a
// file is missing or unreadable, or a needed one is not given.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerTls(const TlsFiles& files, bool require_client_cert);

// Channel credentials verifying the server with `files.ca` (the system's roots if empty) and, if
// `files.cert`/`files.key` are given, presenting them (for a server that requires mTLS).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelTls(const TlsFiles& files);

}  // namespace moe::proto
