// Helpers shared by the multi-rank comm tests: a world communicator of either
// host backend (TCP through a store whose port rank 0 picks and broadcasts over
// MPI), a scoped RAVENSP_COMM_TIMEOUT_S, and an error-message matcher.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <string>

#include "ravensp/comm.h"

namespace ravensp::comm::test {

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
inline void world_sync() { MPI_Barrier(MPI_COMM_WORLD); }

// Rank 0 serves a store on a free port; the others learn the port over MPI.
inline std::unique_ptr<TcpStore> make_store(double timeout_s) {
  int port = 0;
  std::unique_ptr<TcpStore> store;
  if (world_rank() == 0) {
    store = std::make_unique<TcpStore>("127.0.0.1", 0, true, 0, timeout_s);
    port = store->port();
  }
  MPI_Bcast(&port, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (world_rank() != 0) store = std::make_unique<TcpStore>("127.0.0.1", port, false, world_rank(), timeout_s);
  return store;
}

inline std::unique_ptr<Communicator> make_world(Backend b) {
  if (b == Backend::kMpi) return init_mpi_world();
  auto store = make_store(timeout_from_env());
  return init_tcp(*store, world_rank(), world_size(), "world");
}

// Sets RAVENSP_COMM_TIMEOUT_S for a scope (communicators read it when created).
class ScopedTimeout {
 public:
  explicit ScopedTimeout(const char* seconds) { setenv(kTimeoutEnv, seconds, 1); }
  ~ScopedTimeout() { unsetenv(kTimeoutEnv); }
};

// Runs `fn`, which must throw ravensp::Error, and returns its message.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected ravensp::Error, nothing was thrown";
  return "";
}

#define EXPECT_HAS(msg, part) EXPECT_NE(std::string(msg).find(part), std::string::npos) << "message: " << (msg)

struct BackendName {
  std::string operator()(const testing::TestParamInfo<Backend>& i) const { return backend_name(i.param); }
};

}  // namespace ravensp::comm::test
