// Implementation of the SP shape handshake (see handshake.h).
#include "sp/handshake.h"

#include <sstream>

#include "ravensp/check.h"
#include "sp/comm_tensor.h"

namespace ravensp::sp {

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
               const std::vector<Field>& fields) {
  if (c.size() == 1) return;
  const int64_t n = static_cast<int64_t>(fields.size());
  std::vector<int64_t> mine;
  for (const Field& f : fields) mine.push_back(f.second);
  const bool host = c.memory() == comm::DeviceType::kCPU;
  at::Tensor send = at::tensor(mine, at::kLong).to(host ? at::Device(at::kCPU) : device);
  at::Tensor recv = at::empty({c.size(), n}, send.options());
  c.all_gather(to_buffer(send), to_buffer(recv));
  at::Tensor all = recv.cpu();
  const int64_t* a = all.data_ptr<int64_t>();
  for (int r = 1; r < c.size(); ++r)
    for (int64_t i = 0; i < n; ++i)
      if (a[r * n + i] != a[i]) {
        std::ostringstream os;
        os << fn << ": the ranks of SP group " << c.name() << " disagree on " << fields[i].first
           << ": rank 0 has " << a[i] << ", rank " << r << " has " << a[r * n + i]
           << " (this is rank " << c.rank() << " of " << c.size() << ")";
        throw Error(os.str());
      }
}

}  // namespace ravensp::sp
