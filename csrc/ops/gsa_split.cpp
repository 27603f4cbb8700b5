// The split GSA passes: CUDA tensors take the kernels' phases
// (ops/cuda/gsa_split_cuda.cpp); any other device runs the reference op twice
// (gsa_split.h says why that is right).
#include "ops/gsa_split.h"

#include "ravensp/ops.h"

namespace ravensp::ops {
namespace {

using Tensor = at::Tensor;

std::optional<Tensor> opt(const Tensor& t) {
  return t.defined() ? std::optional<Tensor>(t) : std::nullopt;
}

class RefFwdSplit final : public GsaFwdSplit {
 public:
  RefFwdSplit(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s, const Tensor& g,
              double scale, const Tensor& cu, int64_t chunk)
      : q_(q), k_(k), v_(v), s_(s), g_(g), cu_(cu), scale_(scale), chunk_(chunk) {
    auto r = gsa_chunk_fwd(q_, k_, v_, s_, g_, scale_, std::nullopt, std::nullopt, opt(cu_), chunk_);
    end_k_ = std::get<1>(r);
    end_v_ = std::get<2>(r);
  }
  void overlap() override {}  // the reference has no phases to reorder
  std::tuple<Tensor, Tensor, Tensor> finish(const Tensor& hk_in, const Tensor& hv_in) override {
    auto r = gsa_chunk_fwd(q_, k_, v_, s_, g_, scale_, opt(hk_in), opt(hv_in), opt(cu_), chunk_);
    return {std::get<0>(r), std::get<3>(r), std::get<4>(r)};
  }

 private:
  Tensor q_, k_, v_, s_, g_, cu_;
  double scale_;
  int64_t chunk_;
};

class RefBwdSplit final : public GsaBwdSplit {
 public:
  RefBwdSplit(const Tensor& grad_o, const Tensor& q, const Tensor& k, const Tensor& v,
              const Tensor& s, const Tensor& g, const Tensor& p, const Tensor& lse, double scale,
              const Tensor& hk0, const Tensor& hv0, const Tensor& cu, int64_t chunk)
      : grad_o_(grad_o), q_(q), k_(k), v_(v), s_(s), g_(g), p_(p), lse_(lse), hk0_(hk0),
        hv0_(hv0), cu_(cu), scale_(scale), chunk_(chunk) {
    auto r = run(Tensor(), Tensor());
    grad_in_k_ = std::get<5>(r);
    grad_in_v_ = std::get<6>(r);
  }
  void overlap() override {}
  GsaGrads finish(const Tensor& dhkT, const Tensor& dhvT) override {
    auto [dq, dk, dv, ds, dg, dhk0, dhv0] = run(dhkT, dhvT);
    return {dq, dk, dv, ds, dg};
  }

 private:
  std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> run(const Tensor& dhkT,
                                                                         const Tensor& dhvT) {
    return gsa_chunk_bwd(grad_o_, opt(dhkT), opt(dhvT), q_, k_, v_, s_, g_, p_, opt(lse_), scale_,
                         opt(hk0_), opt(hv0_), opt(cu_), chunk_);
  }
  Tensor grad_o_, q_, k_, v_, s_, g_, p_, lse_, hk0_, hv0_, cu_;
  double scale_;
  int64_t chunk_;
};

}  // namespace

std::unique_ptr<GsaFwdSplit> gsa_fwd_split(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const Tensor& s, const Tensor& g, double scale,
                                           const Tensor& cu, const std::vector<int64_t>& cu_host,
                                           int64_t chunk_size) {
#if defined(RAVENSP_WITH_CUDA)
  if (q.is_cuda()) return gsa_fwd_split_cuda(q, k, v, s, g, scale, cu, cu_host, chunk_size);
#endif
  return std::make_unique<RefFwdSplit>(q, k, v, s, g, scale, cu, chunk_size);
}

std::unique_ptr<GsaBwdSplit> gsa_bwd_split(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                                           const Tensor& v, const Tensor& s, const Tensor& g,
                                           const Tensor& p, const Tensor& lse, double scale,
                                           const Tensor& hk0,
                                           const Tensor& hv0, const Tensor& cu,
                                           const std::vector<int64_t>& cu_host,
                                           int64_t chunk_size) {
#if defined(RAVENSP_WITH_CUDA)
  if (q.is_cuda())
    return gsa_bwd_split_cuda(grad_o, q, k, v, s, g, p, lse, scale, hk0, hv0, cu, cu_host,
                              chunk_size);
#endif
  return std::make_unique<RefBwdSplit>(grad_o, q, k, v, s, g, p, lse, scale, hk0, hv0, cu,
                                       chunk_size);
}

}  // namespace ravensp::ops
