// The NCCL bootstraps: from a unique id (what Python's torch.distributed side
// passes), over a host communicator, or through a TcpStore; or, in a build
// without NCCL, clear errors saying so.
#include <cstring>

#include "ravensp/comm.h"

#if RAVENSP_COMM_WITH_NCCL
#include "comm/nccl_backend.h"
#endif

namespace ravensp::comm {

#if RAVENSP_COMM_WITH_NCCL

bool nccl_enabled() { return true; }

NcclUniqueId nccl_unique_id() {
  ncclUniqueId uid;
  ncclResult_t r = ncclGetUniqueId(&uid);
  RAVENSP_CHECK(r == ncclSuccess, "nccl_unique_id: ncclGetUniqueId failed: ", ncclGetErrorString(r));
  NcclUniqueId id;
  std::memcpy(id.data(), &uid, sizeof(uid));
  return id;
}

std::unique_ptr<Communicator> init_nccl(const NcclUniqueId& id, int rank, int size, int device) {
  return NcclCommunicator::create(id, rank, size, device, "nccl");
}

#else

bool nccl_enabled() { return false; }

NcclUniqueId nccl_unique_id() {
  RAVENSP_CHECK(false, "nccl_unique_id: ravensp was built without NCCL (RAVENSP_WITH_NCCL=OFF)");
}

std::unique_ptr<Communicator> init_nccl(const NcclUniqueId&, int rank, int, int) {
  RAVENSP_CHECK(false, "init_nccl rank ", rank, ": ravensp was built without NCCL (RAVENSP_WITH_NCCL=OFF)");
}

#endif

std::unique_ptr<Communicator> init_nccl(Communicator& host, int device) {
  RAVENSP_CHECK(host.memory() == DeviceType::kCPU, host.who(), " init_nccl: the id travels over a host ",
                "communicator, got a ", backend_name(host.backend()), " one");
  RAVENSP_CHECK(nccl_enabled(), host.who(), " init_nccl: ravensp was built without NCCL (RAVENSP_WITH_NCCL=OFF)");
  NcclUniqueId id{};
  if (host.rank() == 0) id = nccl_unique_id();
  host.broadcast(host_buffer(id.data(), id.size()), 0);
  return init_nccl(id, host.rank(), host.size(), device);
}

std::unique_ptr<Communicator> init_nccl(TcpStore& store, int rank, int size, int device, const std::string& key) {
  RAVENSP_CHECK(nccl_enabled(), "init_nccl rank ", rank, ": ravensp was built without NCCL (RAVENSP_WITH_NCCL=OFF)");
  NcclUniqueId id{};
  if (rank == 0) {
    id = nccl_unique_id();
    store.set(key, std::string(reinterpret_cast<const char*>(id.data()), id.size()));
  } else {
    std::string v = store.get(key);
    RAVENSP_CHECK(v.size() == id.size(), "init_nccl rank ", rank, ": store key '", key, "' holds ", v.size(),
                  " bytes, expected an NCCL unique id of ", id.size());
    std::memcpy(id.data(), v.data(), id.size());
  }
  return init_nccl(id, rank, size, device);
}

}  // namespace ravensp::comm
