// The MPI host backend: nonblocking MPI calls (MPI-3 Iallgather, Iallreduce, Ibcast,
// Ibarrier, Isend/Irecv) completed by polling MPI_Test under the communicator's
// deadline, so a stuck peer ends in an Error naming it instead of a hang.
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

#include "ravensp/comm.h"

namespace ravensp::comm {

// MPI_Init_thread(MPI_THREAD_MULTIPLE) unless already initialized; MPI is then
// finalized at exit. Throws if MPI was already finalized.
void ensure_mpi_initialized();

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `parent` (MPI_Comm_idup, under the deadline) so our traffic never
  // matches the caller's; the duplicate is freed by the destructor.
  static std::unique_ptr<MpiCommunicator> dup(MPI_Comm parent, const std::string& name);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Backend backend() const override { return Backend::kMpi; }
  DeviceType memory() const override { return DeviceType::kCPU; }
  MPI_Comm handle() const { return comm_; }

 protected:
  void all_gather_impl(const Buffer& send, const Buffer& recv) override;
  void all_reduce_impl(const Buffer& send, const Buffer& recv, ReduceOp op) override;
  void broadcast_impl(const Buffer& buf, int root) override;
  void send_recv_impl(const std::vector<P2POp>& ops) override;
  void barrier_impl() override;
  std::unique_ptr<Communicator> split_impl(int color, int key, const std::string& name) override;

 private:
  MpiCommunicator(MPI_Comm owned, const std::string& name);
  // What each pending request waits for, for the timeout message ("all ranks",
  // "recv from rank 2 (8 x fp32)").
  struct Pending {
    MPI_Request req;
    std::string what;
    int peer;  // -1 for collectives
  };
  void wait(std::vector<Pending>& reqs, const std::string& op);
  void check(int rc, const char* call, const std::string& op);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 0;
  // Requests left behind by a timeout. MPI cannot cancel a collective, so they stay
  // allocated (and this communicator poisoned) rather than freed under MPI's feet.
  std::vector<MPI_Request> abandoned_;
};

}  // namespace ravensp::comm
