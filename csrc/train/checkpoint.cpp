// Checkpoint save/load (see checkpoint.h). Tensors are copied to the CPU; the
// model's master weights keep their dtype (fp32, or fp64 in fp64 runs).
#include "train/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <sstream>

namespace ravensp::train {
namespace fs = std::filesystem;

namespace {

void fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

c10::Dict<std::string, at::Tensor> tensor_dict() { return c10::Dict<std::string, at::Tensor>(); }
// str -> any: what Python sees as a plain dict.
c10::impl::GenericDict any_dict() {
  return c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
}

c10::impl::GenericDict model_config_dict(const model::ModelConfig& m) {
  auto d = any_dict();
  d.insert(std::string("vocab_size"), m.vocab_size);
  d.insert(std::string("hidden_size"), m.hidden_size);
  d.insert(std::string("num_hidden_layers"), m.num_layers);
  d.insert(std::string("num_heads"), m.num_heads);
  d.insert(std::string("num_kv_heads"), m.kv_heads());
  d.insert(std::string("num_slots"), m.slots());
  d.insert(std::string("topk"), m.topk);
  d.insert(std::string("expand_k"), m.expand_k);
  d.insert(std::string("expand_v"), m.expand_v);
  d.insert(std::string("decay_type"), m.decay_type);
  d.insert(std::string("feature_map"), m.feature_map);
  d.insert(std::string("router_score"), m.router_score);
  d.insert(std::string("router_type"), m.router_type);
  d.insert(std::string("bias_rmm"), m.bias_rmm);
  d.insert(std::string("add_gumbel_noise"), m.add_gumbel_noise);
  d.insert(std::string("router_fp32"), m.router_fp32);
  d.insert(std::string("use_output_gate"), m.use_output_gate);
  d.insert(std::string("use_rope"), m.use_rope);
  d.insert(std::string("gate_logit_normalizer"), m.gate_logit_normalizer);
  d.insert(std::string("scale"), m.scale);
  d.insert(std::string("norm_eps"), m.norm_eps);
  d.insert(std::string("intermediate_size"), m.mlp_size());
  d.insert(std::string("attn_layers"), c10::List<int64_t>(m.attn_layers));
  d.insert(std::string("attn_num_heads"), m.attn_num_heads);
  d.insert(std::string("attn_num_kv_heads"), m.attn_kv_heads());
  d.insert(std::string("attn_window"), m.attn_window);
  d.insert(std::string("rope_theta"), m.rope_theta);
  d.insert(std::string("tie_word_embeddings"), m.tie_word_embeddings);
  return d;
}

}  // namespace

void write_atomically(const std::string& path, const std::vector<char>& bytes) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    RAVENSP_CHECK(out.good(), "checkpoint: cannot create '", tmp, "': ", std::strerror(errno));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    RAVENSP_CHECK(out.good(), "checkpoint: writing '", tmp, "' failed: ", std::strerror(errno));
  }
  fsync_path(tmp, O_RDONLY);
  RAVENSP_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "checkpoint: rename '", tmp,
                "' -> '", path, "' failed: ", std::strerror(errno));
  fsync_path(fs::path(path).parent_path().string(), O_RDONLY | O_DIRECTORY);
}

std::string save_checkpoint(const std::string& dir, model::RavenForCausalLMImpl& model, AdamW& opt,
                            const ResumePoint& at, const std::string& config_text) {
  fs::create_directories(dir);
  auto root = any_dict();
  root.insert(std::string("format"), std::string(kCheckpointFormat));
  root.insert(std::string("step"), at.step);
  root.insert(std::string("data_position"), at.data_position);
  auto weights = tensor_dict();
  for (const auto& p : model.named_parameters()) weights.insert(p.key(), p.value().detach().cpu().clone());
  root.insert(std::string("model"), weights);
  auto m = tensor_dict(), v = tensor_dict();
  for (auto& s : opt.slots()) {
    m.insert(s.name, s.exp_avg.cpu().clone());
    v.insert(s.name, s.exp_avg_sq.cpu().clone());
  }
  auto o = any_dict();
  o.insert(std::string("step"), opt.steps());
  o.insert(std::string("exp_avg"), m);
  o.insert(std::string("exp_avg_sq"), v);
  root.insert(std::string("optimizer"), o);
  auto rng = any_dict();
  rng.insert(std::string("torch_cpu"), at::detail::getDefaultCPUGenerator().get_state());
  root.insert(std::string("rng"), rng);
  root.insert(std::string("model_config"), model_config_dict(model.config()));
  root.insert(std::string("config"), config_text);

  std::ostringstream name;
  name << "ckpt-" << std::setw(7) << std::setfill('0') << at.step << ".pt";
  const std::string path = (fs::path(dir) / name.str()).string();
  write_atomically(path, torch::pickle_save(c10::IValue(root)));
  const std::string latest = name.str() + "\n";
  write_atomically((fs::path(dir) / "latest").string(), std::vector<char>(latest.begin(), latest.end()));
  return path;
}

std::string latest_checkpoint(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "latest");
  std::string name;
  if (!(in >> name)) return "";
  const auto path = fs::path(dir) / name;
  RAVENSP_CHECK(fs::exists(path), "checkpoint: '", (fs::path(dir) / "latest").string(),
                "' names '", name, "', which does not exist");
  return path.string();
}

ResumePoint load_checkpoint(const std::string& path, model::RavenForCausalLMImpl& model, AdamW* opt) {
  std::ifstream in(path, std::ios::binary);
  RAVENSP_CHECK(in.good(), "checkpoint '", path, "' cannot be read");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto root = torch::pickle_load(bytes).toGenericDict();
  RAVENSP_CHECK(root.contains("format") && root.at("format").toStringRef() == kCheckpointFormat,
                "checkpoint '", path, "' is not a ", kCheckpointFormat, " file");
  auto weights = root.at("model").toGenericDict();
  torch::NoGradGuard no_grad;
  auto params = model.named_parameters();
  RAVENSP_CHECK(static_cast<size_t>(weights.size()) == params.size(), "checkpoint '", path,
                "' holds ", weights.size(), " tensors, the model has ", params.size(),
                " parameters: the model options differ from the run that wrote it");
  for (auto& p : params) {
    RAVENSP_CHECK(weights.contains(p.key()), "checkpoint '", path, "' lacks parameter '", p.key(), "'");
    auto t = weights.at(p.key()).toTensor();
    RAVENSP_CHECK(t.sizes() == p.value().sizes(), "checkpoint '", path, "': '", p.key(), "' is ",
                  shape_str(t.sizes()), ", the model wants ", shape_str(p.value().sizes()));
    p.value().copy_(t);
  }
  ResumePoint at;
  if (!opt) return at;  // weights only (init_from)
  at.step = root.at("step").toInt();
  at.data_position = root.at("data_position").toInt();
  auto o = root.at("optimizer").toGenericDict();
  auto m = o.at("exp_avg").toGenericDict(), v = o.at("exp_avg_sq").toGenericDict();
  for (auto& s : opt->slots()) {
    RAVENSP_CHECK(m.contains(s.name) && v.contains(s.name), "checkpoint '", path,
                  "' lacks optimizer state for '", s.name, "'");
    s.exp_avg.copy_(m.at(s.name).toTensor());
    s.exp_avg_sq.copy_(v.at(s.name).toTensor());
  }
  opt->set_steps(o.at("step").toInt());
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(root.at("rng").toGenericDict().at("torch_cpu").toTensor());
  return at;
}

}  // namespace ravensp::train
