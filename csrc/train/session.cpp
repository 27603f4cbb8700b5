// make_session: device choice, communicators and the DP x SP mesh, the model
// (initialised identically on every rank from the seed), AdamW groups, data, and
// resume (see session.h).
#include "train/session.h"

#include <sstream>

#include "ravensp/ring_attention.h"

namespace ravensp::train {
namespace {

at::Device pick_device(const TrainConfig& cfg) {
  const bool have_cuda = torch::cuda::is_available();
  RAVENSP_CHECK(cfg.device != "cuda" || have_cuda, "train.device=cuda but no CUDA device is visible");
  if (cfg.device == "cpu" || !have_cuda) return at::Device(at::kCPU);
  const int n = static_cast<int>(torch::cuda::device_count());
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(comm::detect_launch_env().local_rank % n));
}

}  // namespace

Session::~Session() {
  if (sp_group != sp::kNoGroup) sp::unregister_group(sp_group);
}

std::unique_ptr<Session> make_session(const TrainConfig& cfg, std::shared_ptr<comm::Communicator> world) {
  auto s = std::make_unique<Session>();
  s->cfg = cfg;
  s->world = world ? world->size() : 1;
  s->rank = world ? world->rank() : 0;
  auto problems = config_problems(cfg, s->world);
  if (!problems.empty()) {
    std::ostringstream os;
    for (const auto& p : problems) os << "\n  " << p;
    RAVENSP_CHECK(false, "ravensp-train: invalid configuration:", os.str());
  }
  if (cfg.threads > 0) at::set_num_threads(static_cast<int>(cfg.threads));
  s->device = pick_device(cfg);
  s->comm_ns = std::make_shared<std::atomic<int64_t>>(0);
  s->host = world;
  if (s->world > 1) {
    std::shared_ptr<comm::Communicator> base = world;
    if (s->device.is_cuda()) base = comm::init_nccl(*world, s->device.index());
    s->dev_world = std::make_shared<TimedCommunicator>(base, s->comm_ns);
  }
  const int sp = static_cast<int>(cfg.sp_size);
  s->sp_rank = s->rank % sp;
  s->dp_rank = s->rank / sp;
  s->dp_size = s->world / sp;
  if (sp > 1) {
    auto mesh = comm::make_dp_sp_mesh(*s->dev_world, sp);
    s->sp_group = sp::register_group(std::shared_ptr<comm::Communicator>(std::move(mesh.sp)));
    if (s->device.is_cuda()) {
      // The host world, split alike, carries the SP ops' shape handshakes: no wait
      // for the GPU to drain at every layer.
      auto host_mesh = comm::make_dp_sp_mesh(*s->host, sp);
      sp::set_control_group(s->sp_group, std::shared_ptr<comm::Communicator>(std::move(host_mesh.sp)));
    }
  }

  torch::manual_seed(cfg.seed);  // identical initial weights on every rank
  s->model = model::RavenForCausalLM(cfg.model);
  if (cfg.precision == Precision::kFp64) s->model->to(at::kDouble);
  s->model->to(s->device);
  s->model->train();
  std::vector<AdamW::Slot> slots;
  for (const auto& p : s->model->named_parameters()) {
    s->params.push_back(p.value());
    slots.push_back({p.key(), p.value(), {}, {},
                     !model::RavenForCausalLMImpl::no_weight_decay(p.key(), p.value())});
  }
  s->opt = std::make_unique<AdamW>(std::move(slots),
                                   AdamWOptions{cfg.beta1, cfg.beta2, cfg.adam_eps, cfg.weight_decay});
  s->data = make_source(cfg);

  std::string resume = cfg.resume == "auto" ? latest_checkpoint(cfg.out_dir)
                       : cfg.resume == "none" ? std::string() : cfg.resume;
  if (!resume.empty()) {
    s->start = load_checkpoint(resume, *s->model, s->opt.get());
    s->resumed_from = resume;
  } else if (!cfg.init_from.empty()) {
    load_checkpoint(cfg.init_from, *s->model, nullptr);
  }

  const int64_t L = cfg.seq_len / sp;
  s->ctx.positions = sp > 1 ? sp::global_positions(cfg.layout, s->sp_rank, sp, L, s->device)
                            : at::arange(cfg.seq_len, at::TensorOptions().dtype(at::kLong).device(s->device));
  s->ctx.sp_group = s->sp_group;
  s->ctx.sp_size = sp;
  s->ctx.layout = cfg.layout;
  s->ctx.exchange = cfg.exchange;
  s->ctx.gumbel_seed = static_cast<int64_t>(cfg.seed);
  s->ctx.checkpoint_blocks = cfg.checkpoint_blocks;
  s->ctx.offload_checkpoints = cfg.offload_checkpoints;
  return s;
}

}  // namespace ravensp::train
