// Memory-mapped token files (uint16/uint32) and raw text (bytes as tokens), and
// the batcher that reads only this rank's shard of each sequence.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "train/data.h"

namespace ravensp::train {

TokenFileSource::TokenFileSource(const std::string& path, int width, int64_t seq_len, int64_t vocab)
    : path_(path), width_(width), seq_len_(seq_len), vocab_(vocab) {
  int fd = ::open(path.c_str(), O_RDONLY);
  RAVENSP_CHECK(fd >= 0, "data.path '", path, "': cannot open: ", std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  bytes_ = static_cast<size_t>(st.st_size);
  num_tokens_ = static_cast<int64_t>(bytes_) / width;
  RAVENSP_CHECK(num_tokens_ >= seq_len + 1, "data.path '", path, "' holds ", num_tokens_,
                " tokens, fewer than seq_len + 1 = ", seq_len + 1);
  void* p = ::mmap(nullptr, bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  RAVENSP_CHECK(p != MAP_FAILED, "data.path '", path, "': mmap failed: ", std::strerror(errno));
  base_ = static_cast<const uint8_t*>(p);
  // Windows of seq_len + 1 tokens that overlap by one, so every token is a target once.
  num_seqs_ = (num_tokens_ - 1) / seq_len;
}

TokenFileSource::~TokenFileSource() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), bytes_);
}

int64_t TokenFileSource::token(int64_t i) const {
  int64_t t;
  if (width_ == 1) {
    t = base_[i];
  } else if (width_ == 2) {
    uint16_t v;
    std::memcpy(&v, base_ + 2 * i, 2);
    t = v;
  } else {
    uint32_t v;
    std::memcpy(&v, base_ + 4 * i, 4);
    t = v;
  }
  RAVENSP_CHECK(t < vocab_, "data.path '", path_, "': token ", t, " at index ", i,
                " is outside model.vocab_size=", vocab_);
  return t;
}

void TokenFileSource::read(int64_t seq, const int64_t* positions, int64_t n, int64_t* inputs,
                           int64_t* targets) const {
  const int64_t start = (seq % num_seqs_) * seq_len_;
  for (int64_t i = 0; i < n; ++i) {
    inputs[i] = token(start + positions[i]);
    targets[i] = token(start + positions[i] + 1);
  }
}

std::unique_ptr<DataSource> make_source(const TrainConfig& cfg) {
  switch (cfg.data) {
    case DataKind::kMqar:
      return std::make_unique<MqarSource>(cfg.model.vocab_size, cfg.seq_len, cfg.mqar_pairs,
                                          cfg.seed);
    case DataKind::kText:
      return std::make_unique<TokenFileSource>(cfg.data_path, 1, cfg.seq_len, cfg.model.vocab_size);
    case DataKind::kTokens:
      return std::make_unique<TokenFileSource>(cfg.data_path, cfg.token_dtype == "uint32" ? 4 : 2,
                                               cfg.seq_len, cfg.model.vocab_size);
  }
  RAVENSP_CHECK(false, "unknown data kind");
}

MicroBatch make_micro_batch(const DataSource& src, int64_t micro, int dp_rank, int dp_size,
                            int64_t batch, const at::Tensor& positions) {
  auto pos = positions.to(at::kCPU, at::kLong).contiguous();
  const int64_t L = pos.numel();
  MicroBatch mb;
  mb.inputs = at::empty({batch, L}, at::kLong);
  mb.targets = at::empty({batch, L}, at::kLong);
  mb.rows = at::empty({batch}, at::kLong);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t seq = (micro * dp_size + dp_rank) * batch + b;
    mb.rows[b] = seq;
    src.read(seq, pos.data_ptr<int64_t>(), L, mb.inputs[b].data_ptr<int64_t>(),
             mb.targets[b].data_ptr<int64_t>());
  }
  mb.scored = mb.targets.ne(kIgnoreIndex).sum().item<int64_t>();
  return mb;
}

}  // namespace ravensp::train
