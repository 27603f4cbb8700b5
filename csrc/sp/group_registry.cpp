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
  std::unordered_map<int64_t, std::shared_ptr<comm::Communicator>> controls;
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
  r.controls.erase(handle);
}

void set_control_group(int64_t handle, std::shared_ptr<comm::Communicator> control) {
  RAVENSP_CHECK(control != nullptr, "set_control_group: communicator is null");
  RAVENSP_CHECK(control->memory() == comm::DeviceType::kCPU,
                "set_control_group: the control communicator must move host memory (MPI or TCP), "
                "got a ", comm::backend_name(control->backend()), " communicator");
  auto g = group_ptr(handle);
  RAVENSP_CHECK(control->size() == g->size() && control->rank() == g->rank(),
                "set_control_group: the control communicator is rank ", control->rank(), " of ",
                control->size(), " but SP group ", handle, " is rank ", g->rank(), " of ", g->size());
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.controls[handle] = std::move(control);
}

comm::Communicator& control_group(int64_t handle) {
  auto g = group_ptr(handle);
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.controls.find(handle);
  return it != r.controls.end() ? *it->second : *g;
}

}  // namespace ravensp::sp
