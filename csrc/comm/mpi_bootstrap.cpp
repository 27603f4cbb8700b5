// The MPI bootstraps (mpirun, srun, or a communicator handed over by Python),
// or, in a build without MPI, clear errors saying so.
#include "ravensp/comm.h"

#if RAVENSP_COMM_WITH_MPI
#include "comm/mpi_backend.h"
#endif

namespace ravensp::comm {

#if RAVENSP_COMM_WITH_MPI

bool mpi_enabled() { return true; }

std::unique_ptr<Communicator> init_mpi_world() {
  ensure_mpi_initialized();
  return MpiCommunicator::dup(MPI_COMM_WORLD, "world");
}

std::unique_ptr<Communicator> mpi_from_fortran_handle(int64_t handle) {
  ensure_mpi_initialized();
  MPI_Comm c = MPI_Comm_f2c(static_cast<MPI_Fint>(handle));
  RAVENSP_CHECK(c != MPI_COMM_NULL, "mpi_from_fortran_handle: handle ", handle, " is MPI_COMM_NULL");
  return MpiCommunicator::dup(c, "mpi" + std::to_string(handle));
}

#else

bool mpi_enabled() { return false; }

std::unique_ptr<Communicator> init_mpi_world() {
  RAVENSP_CHECK(false, "init_mpi_world: ravensp was built without MPI (RAVENSP_WITH_MPI=OFF)");
}

std::unique_ptr<Communicator> mpi_from_fortran_handle(int64_t) {
  RAVENSP_CHECK(false, "mpi_from_fortran_handle: ravensp was built without MPI (RAVENSP_WITH_MPI=OFF)");
}

#endif

}  // namespace ravensp::comm
