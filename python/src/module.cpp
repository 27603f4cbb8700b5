// ravensp._C: links the op and SP libraries so that `import ravensp` registers
// the torch ops, reports how this build was configured, and exposes the
// communicator bootstraps as integer group handles (the SP ops take handles).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>

#include "ravensp/comm.h"
#include "ravensp/sp.h"

namespace py = pybind11;

#ifndef RAVENSP_BUILT_WITH_CUDA
#define RAVENSP_BUILT_WITH_CUDA 0
#endif
#ifndef RAVENSP_BUILT_WITH_NCCL
#define RAVENSP_BUILT_WITH_NCCL 0
#endif
#ifndef RAVENSP_BUILT_WITH_MPI
#define RAVENSP_BUILT_WITH_MPI 0
#endif

namespace ravensp::ops {
// Defined in the op library; referencing it forces the link (and load) of
// libravensp_ops.so even with --as-needed.
const char* op_library_tag();
}  // namespace ravensp::ops

namespace {

using ravensp::comm::Communicator;

int64_t keep(std::unique_ptr<Communicator> c) {
  return ravensp::sp::register_group(std::shared_ptr<Communicator>(std::move(c)));
}

// Whether h has a host control plane of its own (sp::set_control_group).
bool has_control(int64_t h) { return &ravensp::sp::control_group(h) != &ravensp::sp::group(h); }

}  // namespace

PYBIND11_MODULE(_C, m) {
  namespace comm = ravensp::comm;
  namespace sp = ravensp::sp;
  m.doc() = "ravensp native extension (op library loader, build facts, communicator bootstraps)";
  m.def("build_info", []() {
    py::dict d;
    d["version"] = RAVENSP_VERSION;
    d["cuda"] = bool(RAVENSP_BUILT_WITH_CUDA);
    d["nccl"] = bool(RAVENSP_BUILT_WITH_NCCL);
    d["mpi"] = bool(RAVENSP_BUILT_WITH_MPI);
    d["op_library"] = ravensp::ops::op_library_tag();
    return d;
  });
  m.def("launch_env", []() {
    comm::LaunchEnv e = comm::detect_launch_env();
    const char* names[] = {"none", "mpi", "torchrun"};
    return py::make_tuple(names[int(e.launcher)], e.rank, e.world_size, e.local_rank);
  });
  m.def("group_init_mpi", []() { return keep(comm::init_mpi_world()); },
        "MPI_COMM_WORLD (duplicated) as a host-memory group; returns its handle");
  m.def("group_from_mpi_fortran", [](int64_t f) { return keep(comm::mpi_from_fortran_handle(f)); });
  m.def("group_init_tcp_from_env", []() { return keep(comm::init_tcp_from_env()); });
  m.def("nccl_unique_id", []() {
    comm::NcclUniqueId id = comm::nccl_unique_id();
    return py::bytes(reinterpret_cast<const char*>(id.data()), id.size());
  });
  m.def("group_init_nccl", [](py::bytes id_bytes, int rank, int size, int device) {
    std::string s = id_bytes;
    comm::NcclUniqueId id{};
    if (s.size() != id.size())
      throw std::invalid_argument("nccl unique id must be " + std::to_string(id.size()) +
                                  " bytes, got " + std::to_string(s.size()));
    std::memcpy(id.data(), s.data(), id.size());
    py::gil_scoped_release release;  // init is collective: other ranks may need the GIL-free wait
    return keep(comm::init_nccl(id, rank, size, device));
  });
  m.def("group_info", [](int64_t h) {
    Communicator& c = sp::group(h);
    return py::make_tuple(c.rank(), c.size(), comm::backend_name(c.backend()), c.name());
  });
  // Splits and meshes of a group with a host control plane split it alike, so the
  // sub-groups keep theirs (the control split is collective on the same ranks).
  m.def("group_split", [](int64_t h, int color, int key, const std::string& name) -> int64_t {
    auto c = sp::group(h).split(color, key, name);
    std::shared_ptr<Communicator> ctl;
    if (has_control(h)) ctl = sp::control_group(h).split(color, key, name + ".control");
    if (!c) return -1;
    const int64_t out = keep(std::move(c));
    if (ctl) sp::set_control_group(out, ctl);
    return out;
  });
  m.def("group_mesh", [](int64_t world, int sp_size) {
    comm::Mesh mesh = comm::make_dp_sp_mesh(sp::group(world), sp_size);
    const int64_t dp = keep(std::move(mesh.dp)), sp_h = keep(std::move(mesh.sp));
    if (has_control(world)) {
      comm::Mesh ctl = comm::make_dp_sp_mesh(sp::control_group(world), sp_size);
      sp::set_control_group(dp, std::shared_ptr<Communicator>(std::move(ctl.dp)));
      sp::set_control_group(sp_h, std::shared_ptr<Communicator>(std::move(ctl.sp)));
    }
    return py::make_tuple(dp, sp_h);
  });
  m.def("group_set_control", [](int64_t h, int64_t control) {
    sp::set_control_group(h, sp::group_ptr(control));
  }, "use the host group `control` (same ranks) for group h's control messages");
  m.def("group_has_control", &has_control);
  m.def("group_set_timeout", [](int64_t h, double s) { sp::group(h).set_timeout(s); });
  m.def("group_barrier", [](int64_t h) {
    py::gil_scoped_release release;
    sp::group(h).barrier();
  });
  m.def("group_destroy", &sp::unregister_group);
}
