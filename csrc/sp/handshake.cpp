// Implementation of the SP handshake (see handshake.h).
#include "sp/handshake.h"

#include <algorithm>
#include <cstring>

#include "ravensp/check.h"
#include "sp/comm_tensor.h"

namespace ravensp::sp {
namespace {

constexpr size_t kMsgBytes = 512;  // of the local error message that travels

}  // namespace

int64_t checksum(const std::vector<int64_t>& values) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the 8 bytes of each value
  for (int64_t v : values)
    for (int i = 0; i < 8; ++i) {
      h ^= (static_cast<uint64_t>(v) >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  return static_cast<int64_t>(h >> 1);
}

void handshake(comm::Communicator& c, const char* fn, const at::Device& device,
               const std::vector<const char*>& names, std::vector<int64_t> values,
               const std::string& local_error) {
  if (c.size() == 1) {
    RAVENSP_CHECK(local_error.empty(), local_error);
    return;
  }
  RAVENSP_CHECK(!local_error.empty() || values.size() == names.size(), fn,
                ": internal error: handshake has ", values.size(), " values for ", names.size(),
                " names");
  values.resize(names.size());  // a rank with an error sends zeros: only its message counts
  // Record: [ok, values...] as int64, then the message bytes; one size on every rank.
  const size_t n = names.size() + 1, bytes = n * 8 + kMsgBytes;
  at::Tensor rec = at::zeros({static_cast<int64_t>(bytes)}, at::kByte);
  std::vector<int64_t> head{local_error.empty() ? 1 : 0};
  head.insert(head.end(), values.begin(), values.end());
  std::memcpy(rec.data_ptr(), head.data(), n * 8);
  std::memcpy(static_cast<char*>(rec.data_ptr()) + n * 8, local_error.data(),
              std::min(local_error.size(), kMsgBytes - 1));
  const bool host = c.memory() == comm::DeviceType::kCPU;
  const at::Tensor send = rec.to(host ? at::Device(at::kCPU) : device);
  const at::Tensor recv = at::empty({c.size() * static_cast<int64_t>(bytes)}, send.options());
  c.all_gather(to_buffer(send), to_buffer(recv));
  const at::Tensor all = recv.cpu();
  const char* base = static_cast<const char*>(all.data_ptr());
  auto value = [&](int r, size_t i) {
    int64_t x;
    std::memcpy(&x, base + r * bytes + i * 8, 8);
    return x;
  };
  for (int r = 0; r < c.size(); ++r)
    RAVENSP_CHECK(value(r, 0) == 1, fn, ": ", c.who(), ": rank ", r, " rejected its inputs: ",
                  std::string(base + r * bytes + n * 8));
  for (int r = 1; r < c.size(); ++r)
    for (size_t i = 1; i < n; ++i)
      RAVENSP_CHECK(value(r, i) == value(0, i), fn, ": the ranks of SP group ", c.name(),
                    " disagree on ", names[i - 1], ": rank 0 has ", value(0, i), ", rank ",
                    r, " has ", value(r, i), " (this is rank ", c.rank(), " of ", c.size(),
                    "; every rank must pass the same shapes and options)");
}

}  // namespace ravensp::sp
