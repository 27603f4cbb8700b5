// What a training run holds between steps (internal to train/): the device, the
// communicators and the SP group, the model, the optimizer and the data source.
// Built once by make_session(), which also restores a checkpoint when asked.
#pragma once

#include <atomic>
#include <memory>

#include "ravensp/train.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/dist.h"
#include "train/optim.h"

namespace ravensp::train {

struct Session {
  TrainConfig cfg;
  at::Device device{at::kCPU};
  int rank = 0, world = 1, sp_rank = 0, dp_rank = 0, dp_size = 1;
  std::shared_ptr<comm::Communicator> host;       // scalars, barriers (null: one process)
  std::shared_ptr<TimedCommunicator> dev_world;   // gradients (null: one process)
  std::shared_ptr<std::atomic<int64_t>> comm_ns;  // every timed collective adds here
  int64_t sp_group = 0;                           // sp::register_group handle (0: none)
  model::RavenForCausalLM model{nullptr};
  std::vector<at::Tensor> params;
  std::unique_ptr<AdamW> opt;
  std::unique_ptr<DataSource> data;
  model::ForwardContext ctx;
  ResumePoint start;
  std::string resumed_from;
  ~Session();
};

std::unique_ptr<Session> make_session(const TrainConfig& cfg, std::shared_ptr<comm::Communicator> world);

}  // namespace ravensp::train
