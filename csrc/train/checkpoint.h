// Checkpoints (internal to train/): one torch-pickle file per save (torch.load
// reads it; see docs/launcher.md for the keys), written to a temporary file, synced
// and renamed, then named in `latest` the same way, so a crash never leaves a torn file.
#pragma once

#include <string>

#include "ravensp/model.h"
#include "train/optim.h"

namespace ravensp::train {

inline constexpr const char* kCheckpointFormat = "ravensp-checkpoint/1";

struct ResumePoint {
  int64_t step = 0;            // optimizer steps done
  int64_t data_position = 0;   // micro-steps consumed
};

// Writes <dir>/ckpt-<step>.pt and updates <dir>/latest; returns the file's path.
std::string save_checkpoint(const std::string& dir, model::RavenForCausalLMImpl& model,
                            AdamW& opt, const ResumePoint& at, const std::string& config_text);
// Restores weights (and, when opt is given, the optimizer and the CPU RNG); returns
// where training stopped. Names and shapes must match the model exactly.
ResumePoint load_checkpoint(const std::string& path, model::RavenForCausalLMImpl& model,
                            AdamW* opt);
// <dir>/latest's checkpoint, or "" when there is none.
std::string latest_checkpoint(const std::string& dir);
// Writes bytes to path atomically (temporary file in the same directory, fsync, rename).
void write_atomically(const std::string& path, const std::vector<char>& bytes);

}  // namespace ravensp::train
