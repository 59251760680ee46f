// server/common/token_auth.cc
#include "server/common/token_auth.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace moe::server {

absl::StatusOr<std::unique_ptr<TokenAuth>> TokenAuth::FromFile(const std::string& path) {
  std::unique_ptr<TokenAuth> auth(new TokenAuth(path));
  absl::MutexLock lock(&auth->mu_);
  if (absl::Status s = auth->Reload(); !s.ok()) return s;
  return auth;
}

absl::Status TokenAuth::Reload() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--auth_token_file: cannot read '", path_, "'"));
  }
  const int64_t mtime = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  if (mtime == mtime_ns_) return absl::OkStatus();
  std::ifstream in(path_);
  std::stringstream text;
  text << in.rdbuf();
  const std::string token(absl::StripAsciiWhitespace(text.str()));
  if (!in.good() && !in.eof()) {
    return absl::InvalidArgumentError(absl::StrCat("--auth_token_file: cannot read '", path_, "'"));
  }
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat("--auth_token_file: '", path_, "' holds no token"));
  token_ = token;
  mtime_ns_ = mtime;
  return absl::OkStatus();
}

bool TokenAuth::ConstantTimeEqual(absl::string_view a, absl::string_view b) {
  // Every byte of the longer one is looked at, whatever differs first.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

absl::Status TokenAuth::Check(const grpc::ServerContextBase& context) {
  std::string token;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    if (now - checked_ >= absl::Seconds(1)) {
      checked_ = now;
      (void)Reload();  // a file being rewritten keeps the last good token
    }
    token = token_;
  }
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError("missing credentials: send the metadata 'authorization: Bearer <token>'");
  }
  const absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(value, kBearer) || !ConstantTimeEqual(value.substr(kBearer.size()), token)) {
    return absl::UnauthenticatedError("invalid credentials: the bearer token is not accepted");
  }
  return absl::OkStatus();
}

}  // namespace moe::server
