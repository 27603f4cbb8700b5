// Turning the string-valued options into enums and lists (internal to the train room).
#pragma once

#include <string>
#include <vector>

#include "ravensp/train.h"

namespace ravensp::train {

void parse_raw_values(const std::string& data, const std::string& precision,
                      const std::string& layout, const std::string& exchange,
                      const std::string& attn_layers, TrainConfig& cfg,
                      std::vector<std::string>& problems);

}  // namespace ravensp::train
