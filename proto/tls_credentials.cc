// proto/tls_credentials.cc
#include "proto/tls_credentials.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace moe::proto {
namespace {

absl::Status Readable(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in.good()) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read '", path, "'"));
  return absl::OkStatus();
}

absl::Status CheckPair(const TlsFiles& files) {
  if (files.cert.empty() != files.key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together: give both or neither");
  }
  if (!files.cert.empty()) {
    if (absl::Status s = Readable(files.cert, "--tls_cert"); !s.ok()) return s;
    if (absl::Status s = Readable(files.key, "--tls_key"); !s.ok()) return s;
  }
  if (!files.ca.empty()) return Readable(files.ca, "--tls_ca");
  return absl::OkStatus();
}

std::shared_ptr<grpc::experimental::CertificateProviderInterface> Provider(const TlsFiles& files) {
  const unsigned interval = static_cast<unsigned>(files.reload_seconds > 0 ? files.reload_seconds : 1);
  if (files.cert.empty()) return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(files.ca, interval);
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(files.key, files.cert, files.ca,
                                                                               interval);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerTls(const TlsFiles& files, bool require_client_cert) {
  if (absl::Status s = CheckPair(files); !s.ok()) return s;
  if (files.cert.empty()) return absl::InvalidArgumentError("TLS on a server needs --tls_cert and --tls_key");
  if (require_client_cert && files.ca.empty()) {
    return absl::InvalidArgumentError("mTLS needs --tls_ca (the CA that signs the clients' certificates)");
  }
  grpc::experimental::TlsServerCredentialsOptions options(Provider(files));
  options.watch_identity_key_cert_pairs();
  if (!files.ca.empty()) options.watch_root_certs();
  options.set_cert_request_type(require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                : files.ca.empty()  ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                                    : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelTls(const TlsFiles& files) {
  if (absl::Status s = CheckPair(files); !s.ok()) return s;
  grpc::experimental::TlsChannelCredentialsOptions options;
  if (!files.ca.empty() || !files.cert.empty()) {
    options.set_certificate_provider(Provider(files));
    if (!files.ca.empty()) options.watch_root_certs();
    if (!files.cert.empty()) options.watch_identity_key_cert_pairs();
  }
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace moe::proto
