// ravensp._C: links the op library so that `import ravensp` registers the ops,
// and reports how this build was configured.
#include <pybind11/pybind11.h>

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

PYBIND11_MODULE(_C, m) {
  m.doc() = "ravensp native extension (op library loader and build facts)";
  m.def("build_info", []() {
    py::dict d;
    d["version"] = RAVENSP_VERSION;
    d["cuda"] = bool(RAVENSP_BUILT_WITH_CUDA);
    d["nccl"] = bool(RAVENSP_BUILT_WITH_NCCL);
    d["mpi"] = bool(RAVENSP_BUILT_WITH_MPI);
    d["op_library"] = ravensp::ops::op_library_tag();
    return d;
  });
}
