// Training data (internal to the train room). A source answers "tokens of global
// sequence i at these positions" so each rank touches only its own shard; the
// batcher turns a step into [B, L] inputs/targets for this rank's DP row and SP shard.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "ravensp/train.h"

namespace ravensp::train {

inline constexpr int64_t kIgnoreIndex = -100;  // targets that carry no loss

class DataSource {
 public:
  virtual ~DataSource() = default;
  // For sequence `seq` (any non-negative index; sources wrap around), the input
  // token at each of the n global positions and the target (the next token, or
  // kIgnoreIndex where no loss is taken).
  virtual void read(int64_t seq, const int64_t* positions, int64_t n, int64_t* inputs,
                    int64_t* targets) const = 0;
};

// Built-in multi-query associative recall: n key-value pairs (keys from
// [1, V/2), values from [V/2, V)) at random places in a context of zeros, then
// the n keys again in random order, each followed by its value, at the end.
// Loss and recall accuracy are taken only where a query key must predict its value.
class MqarSource : public DataSource {
 public:
  MqarSource(int64_t vocab, int64_t seq_len, int64_t pairs, uint64_t seed);
  void read(int64_t seq, const int64_t* positions, int64_t n, int64_t* inputs,
            int64_t* targets) const override;
  // The whole sequence (seq_len + 1 tokens incl. the final target) and its loss mask.
  void generate(int64_t seq, std::vector<int64_t>& tokens, std::vector<uint8_t>& scored) const;

 private:
  int64_t vocab_, seq_len_, pairs_;
  uint64_t seed_;
};

// A memory-mapped file of uint8 (raw text bytes), uint16 or uint32 tokens, cut
// into non-overlapping windows of seq_len + 1 tokens. Only the pages holding the
// requested positions are read.
class TokenFileSource : public DataSource {
 public:
  TokenFileSource(const std::string& path, int width, int64_t seq_len, int64_t vocab);
  ~TokenFileSource() override;
  void read(int64_t seq, const int64_t* positions, int64_t n, int64_t* inputs,
            int64_t* targets) const override;
  int64_t num_sequences() const { return num_seqs_; }

 private:
  int64_t token(int64_t i) const;
  std::string path_;
  int width_;
  int64_t seq_len_, vocab_, num_tokens_, num_seqs_;
  const uint8_t* base_ = nullptr;
  size_t bytes_ = 0;
};

std::unique_ptr<DataSource> make_source(const TrainConfig& cfg);

struct MicroBatch {
  at::Tensor inputs;   // [B, L] int64, this rank's shard
  at::Tensor targets;  // [B, L] int64, kIgnoreIndex where unscored
  at::Tensor rows;     // [B] global sequence indices (Gumbel keys)
  int64_t scored = 0;  // targets != kIgnoreIndex in this micro-batch
};

// Micro-step `micro` (0-based, counted over the whole run: step * grad_accum + k)
// for data-parallel rank dp_rank of dp_size; `positions` are this SP rank's global
// positions. Sequence indices run (micro * dp_size + dp_rank) * B + b.
MicroBatch make_micro_batch(const DataSource& src, int64_t micro, int dp_rank, int dp_size,
                            int64_t batch, const at::Tensor& positions);

}  // namespace ravensp::train
