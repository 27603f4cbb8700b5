// Process-wide table of SP communicators, named by integer handles so torch op
// schemas (and torch.compile graphs) can carry them.
#include <mutex>
#include <unordered_map>

#include "ravensp/check.h"
#include "ravensp/sp.h"

namespace ravensp::sp {
namespace {

struct Registry {
  std::mutex mu;
  std::unordered_map<int64_t, std::shared_ptr<comm::Communicator>> groups;
  int64_t next = 1;
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: ops may run during exit
  return *r;
}

}  // namespace

int64_t register_group(std::shared_ptr<comm::Communicator> comm) {
  RAVENSP_CHECK(comm != nullptr, "register_group: communicator is null");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  const int64_t h = r.next++;
  r.groups.emplace(h, std::move(comm));
  return h;
}

std::shared_ptr<comm::Communicator> group_ptr(int64_t handle) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.groups.find(handle);
  RAVENSP_CHECK(it != r.groups.end(), "SP group handle ", handle,
                " is not registered (was the group destroyed, or created in another process?)");
  return it->second;
}

comm::Communicator& group(int64_t handle) { return *group_ptr(handle); }

void unregister_group(int64_t handle) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  RAVENSP_CHECK(r.groups.erase(handle) == 1, "unregister_group: handle ", handle,
                " is not registered");
}

}  // namespace ravensp::sp
