// CUDA phases of the split GSA passes (ops/gsa_split.h): one object per pass
// keeps the checked inputs, the outputs and the kernels' workspace alive from
// the begin phase to finish, and launches each phase on the current stream.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/gsa/gsa_cuda.h"
#include "ops/cuda/gsa_cuda_glue.h"
#include "ops/gsa_split.h"
#include "ravensp/check.h"

namespace ravensp::ops {
namespace {

using Tensor = at::Tensor;
using kernels::SplitPhase;

std::optional<Tensor> opt(const Tensor& t) {
  return t.defined() ? std::optional<Tensor>(t) : std::nullopt;
}

const void* ptr(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

const std::vector<int64_t>* host_of(const Tensor& cu, const std::vector<int64_t>& host) {
  return cu.defined() ? &host : nullptr;
}

// One phase of a split pass on the current stream of the inputs' device.
template <typename Params>
void run_phase(void (*launch)(const Params&, SplitPhase, void*, cudaStream_t), const Params& P,
               SplitPhase phase, const Tensor& ws, const Tensor& like) {
  const c10::cuda::CUDAGuard guard(like.device());
  launch(P, phase, ws.data_ptr(), at::cuda::getCurrentCUDAStream());
}

// An incoming state (or gradient) for finish: checked against its shape, fp32.
Tensor state_arg(const char* fn, const char* name, const Tensor& t, const std::vector<int64_t>& want,
                 const Tensor& like) {
  if (!t.defined()) return t;
  check_like(fn, name, t, want, like);
  return t.to(at::kFloat).contiguous();
}

class CudaFwdSplit final : public GsaFwdSplit {
 public:
  CudaFwdSplit(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
               const Tensor& g, double scale, const Tensor& cu,
               const std::vector<int64_t>& cu_host, int64_t chunk)
      : a_(check_cuda(kFn, q, k, v, s, g, std::nullopt, std::nullopt, opt(cu), chunk,
                      host_of(cu, cu_host))) {
    const c10::cuda::CUDAGuard guard(q.device());
    in_ = device_inputs(q, k, v, s, g, std::nullopt, std::nullopt);
    out_ = alloc_fwd_outputs(a_, in_, at::kFloat, /*with_p=*/true);
    P_ = fwd_params(cuda_shape(a_), in_, out_, at::kFloat, scale, kCudaChunk);
    ws_ = workspace(kernels::gsa_chunk_fwd_split_workspace_bytes(P_), in_.q);
    run(SplitPhase::kBegin);
    end_k_ = out_.hkT;
    end_v_ = out_.hvT;
  }
  void overlap() override { run(SplitPhase::kOverlap); }
  std::tuple<Tensor, Tensor, Tensor> finish(const Tensor& hk_in, const Tensor& hv_in) override {
    in_.hk0 = state_arg(kFn, "incoming hk", hk_in, hk_shape(a_), in_.q);
    in_.hv0 = state_arg(kFn, "incoming hv", hv_in, hv_shape(a_), in_.q);
    P_.hk0 = ptr(in_.hk0);
    P_.hv0 = ptr(in_.hv0);
    run(SplitPhase::kFinish);
    ws_ = Tensor();  // back to the allocator, ordered after the kernels on this stream
    return {out_.o, out_.p, out_.lse};
  }

 private:
  static constexpr const char* kFn = "gsa_chunk_fwd (split)";
  void run(SplitPhase phase) { run_phase(kernels::gsa_chunk_fwd_split_cuda, P_, phase, ws_, in_.q); }
  GsaArgs a_;
  GsaInputs in_;
  GsaFwdOutputs out_;
  kernels::GsaFwdParams P_;
  Tensor ws_;
};

class CudaBwdSplit final : public GsaBwdSplit {
 public:
  CudaBwdSplit(const Tensor& grad_o, const Tensor& q, const Tensor& k, const Tensor& v,
               const Tensor& s, const Tensor& g, const Tensor& p, const Tensor& lse,
               double scale, const Tensor& hk0, const Tensor& hv0, const Tensor& cu,
               const std::vector<int64_t>& cu_host, int64_t chunk)
      : a_(check_cuda(kFn, q, k, v, s, g, opt(hk0), opt(hv0), opt(cu), chunk,
                      host_of(cu, cu_host))) {
    check_bwd_args(kFn, a_, grad_o, &p, opt(lse), std::nullopt, std::nullopt, q, v, s);
    const c10::cuda::CUDAGuard guard(q.device());
    in_ = device_inputs(q, k, v, s, g, opt(hk0), opt(hv0));
    out_ = alloc_bwd_outputs(a_, in_, at::kFloat);
    p_ = p.to(at::kFloat).contiguous();
    if (lse.defined()) lse_ = lse.to(at::kFloat).contiguous();
    d_o_ = grad_o.to(q.scalar_type()).contiguous();
    P_ = bwd_params(cuda_shape(a_), in_, p_, lse_, Tensor(), d_o_, Tensor(), Tensor(), out_,
                    at::kFloat, scale, kCudaChunk);
    ws_ = workspace(kernels::gsa_chunk_bwd_split_workspace_bytes(P_), in_.q);
    run(SplitPhase::kBegin);
    grad_in_k_ = out_.dhk0;
    grad_in_v_ = out_.dhv0;
  }
  void overlap() override { run(SplitPhase::kOverlap); }
  GsaGrads finish(const Tensor& dhkT, const Tensor& dhvT) override {
    dhkT_ = state_arg(kFn, "grad_hkT", dhkT, hk_shape(a_), in_.q);
    dhvT_ = state_arg(kFn, "grad_hvT", dhvT, hv_shape(a_), in_.q);
    P_.dhkT = ptr(dhkT_);
    P_.dhvT = ptr(dhvT_);
    run(SplitPhase::kFinish);
    ws_ = Tensor();
    return {out_.dq, out_.dk, out_.dv, out_.ds, out_.dg};
  }

 private:
  static constexpr const char* kFn = "gsa_chunk_bwd (split)";
  void run(SplitPhase phase) { run_phase(kernels::gsa_chunk_bwd_split_cuda, P_, phase, ws_, in_.q); }
  GsaArgs a_;
  GsaInputs in_;
  GsaBwdOutputs out_;
  Tensor p_, lse_, d_o_, dhkT_, dhvT_;
  kernels::GsaBwdParams P_;
  Tensor ws_;
};

}  // namespace

std::unique_ptr<GsaFwdSplit> gsa_fwd_split_cuda(const Tensor& q, const Tensor& k, const Tensor& v,
                                                const Tensor& s, const Tensor& g, double scale,
                                                const Tensor& cu,
                                                const std::vector<int64_t>& cu_host,
                                                int64_t chunk_size) {
  return std::make_unique<CudaFwdSplit>(q, k, v, s, g, scale, cu, cu_host, chunk_size);
}

std::unique_ptr<GsaBwdSplit> gsa_bwd_split_cuda(const Tensor& grad_o, const Tensor& q,
                                                const Tensor& k, const Tensor& v, const Tensor& s,
                                                const Tensor& g, const Tensor& p,
                                                const Tensor& lse, double scale,
                                                const Tensor& hk0, const Tensor& hv0,
                                                const Tensor& cu,
                                                const std::vector<int64_t>& cu_host,
                                                int64_t chunk_size) {
  return std::make_unique<CudaBwdSplit>(grad_o, q, k, v, s, g, p, lse, scale, hk0, hv0, cu,
                                        cu_host, chunk_size);
}

}  // namespace ravensp::ops
