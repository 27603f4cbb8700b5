// The one-rank host communicator (see single_rank.h).
#include "single_rank.h"

namespace ravensp::bench {

std::shared_ptr<comm::Communicator> single_rank_host() {
  comm::TcpStore store("127.0.0.1", 0, true, 0, comm::timeout_from_env());
  return comm::init_tcp(store, 0, 1, "bench-single");
}

}  // namespace ravensp::bench
