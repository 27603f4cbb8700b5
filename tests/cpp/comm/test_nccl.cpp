// The NCCL backend on GPUs, one per rank (skipped where there are fewer GPUs than
// ranks): collectives with rank-named data ordered after the caller's stream, the
// store and host-communicator bootstraps, split, and a stuck peer ending in the
// watchdog's abort with a message naming the op.
#include <cuda_runtime.h>

#include <chrono>

#include "comm_test_util.h"

namespace ravensp::comm::test {
namespace {

#define CUDA_OK(x) ASSERT_EQ((x), cudaSuccess) << #x

class Nccl : public testing::Test {
 protected:
  void SetUp() override {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess) ndev = 0;
    if (ndev < world_size()) GTEST_SKIP() << ndev << " GPUs for " << world_size() << " ranks";
    device = world_rank();
    cudaSetDevice(device);
    cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    host = init_mpi_world();
  }
  void TearDown() override {
    if (stream) cudaStreamDestroy(stream);
  }
  // Uploads `h` on the caller stream: the collective must wait for this copy.
  template <typename T>
  T* upload(const std::vector<T>& h) {
    T* d = nullptr;
    cudaMalloc(&d, h.size() * sizeof(T) + 1);
    cudaMemcpyAsync(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice, stream);
    allocs.push_back(d);
    return d;
  }
  template <typename T>
  std::vector<T> download(const T* d, size_t n) {
    std::vector<T> h(n);
    cudaMemcpyAsync(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost, stream);  // ordered after the comm
    cudaStreamSynchronize(stream);
    return h;
  }
  ~Nccl() override {
    for (void* p : allocs) cudaFree(p);
  }
  int device = 0;
  cudaStream_t stream = nullptr;
  std::unique_ptr<Communicator> host;
  std::vector<void*> allocs;
};

TEST_F(Nccl, CollectivesOverHostBootstrap) {
  auto comm = init_nccl(*host, device);
  int r = comm->rank(), n = comm->size();
  ASSERT_EQ(comm->backend(), Backend::kNccl);
  const size_t count = 1 << 20;
  std::vector<float> mine(count);
  for (size_t i = 0; i < count; ++i) mine[i] = r * 1000.0f + (i % 1000);
  float* d_mine = upload(mine);
  std::vector<float> zeros(count * n, -1.0f);
  float* d_all = upload(zeros);
  comm->all_gather(cuda_buffer(d_mine, count, DType::kFloat32, device, stream),
                   cuda_buffer(d_all, count * n, DType::kFloat32, device, stream));
  auto all = download(d_all, count * n);
  for (int src = 0; src < n; ++src)
    for (size_t i = 0; i < count; i += 997) ASSERT_EQ(all[src * count + i], src * 1000.0f + (i % 1000));

  comm->all_reduce(cuda_buffer(d_mine, count, DType::kFloat32, device, stream),
                   cuda_buffer(d_mine, count, DType::kFloat32, device, stream), ReduceOp::kMax);
  auto mx = download(d_mine, count);
  for (size_t i = 0; i < count; i += 997) ASSERT_EQ(mx[i], (n - 1) * 1000.0f + (i % 1000));

  std::vector<int64_t> b(9, r == 1 ? 1001 : -1);
  int64_t* d_b = upload(b);
  comm->broadcast(cuda_buffer(d_b, 9, DType::kInt64, device, stream), 1);
  for (int64_t v : download(d_b, 9)) ASSERT_EQ(v, 1001);

  int next = (r + 1) % n, prev = (r + n - 1) % n;
  std::vector<int32_t> s(1000, r * 1000 + 7), z(1000, -1);
  int32_t* d_s = upload(s);
  int32_t* d_r = upload(z);
  comm->send_recv({send_op(cuda_buffer(d_s, 1000, DType::kInt32, device, stream), next),
                   recv_op(cuda_buffer(d_r, 1000, DType::kInt32, device, stream), prev)});
  for (int32_t v : download(d_r, 1000)) ASSERT_EQ(v, prev * 1000 + 7);
  comm->barrier();
  comm->synchronize();
}

TEST_F(Nccl, StoreBootstrapAndSplit) {
  auto store = make_store(60.0);
  auto comm = init_nccl(*store, world_rank(), world_size(), device, "nccl-test-id");
  int r = comm->rank();
  auto sub = comm->split(r % 2, r, "parity");
  ASSERT_NE(sub, nullptr);
  std::vector<int64_t> x(4, r * 1000);
  int64_t* d = upload(x);
  sub->all_reduce(cuda_buffer(d, 4, DType::kInt64, device, stream), cuda_buffer(d, 4, DType::kInt64, device, stream));
  int64_t want = 0;
  for (int j = 0; j < world_size(); ++j)
    if (j % 2 == r % 2) want += j * 1000;
  for (int64_t v : download(d, 4)) ASSERT_EQ(v, want);
  store->wait_all("nccl-split-done", world_size());
}

TEST_F(Nccl, WrongDeviceAndHostBuffersAreRejected) {
  auto comm = init_nccl(*host, device);
  std::vector<float> h(4);
  std::string m = error_of([&] { comm->all_reduce(host_buffer(h.data(), 4), host_buffer(h.data(), 4)); });
  EXPECT_HAS(m, "send is on cpu but the nccl backend moves cuda memory");
  m = error_of([&] {
    comm->all_reduce(cuda_buffer(h.data(), 4, DType::kFloat32, device + 1, stream),
                     cuda_buffer(h.data(), 4, DType::kFloat32, device + 1, stream));
  });
  EXPECT_HAS(m, "but this communicator runs on cuda:" + std::to_string(device));
  comm->barrier();
}

TEST_F(Nccl, StuckPeerEndsInWatchdogAbort) {
  ScopedTimeout timeout("3");
  auto comm = init_nccl(*host, device);
  int r = comm->rank(), n = comm->size();
  std::vector<float> x(16, 1.0f);
  float* d = upload(x);
  if (r != n - 1) {
    auto t0 = std::chrono::steady_clock::now();
    comm->all_reduce(cuda_buffer(d, 16, DType::kFloat32, device, stream),
                     cuda_buffer(d, 16, DType::kFloat32, device, stream));
    std::string m = error_of([&] { comm->synchronize(); });
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_HAS(m, "rank " + std::to_string(r) + "/" + std::to_string(n));
    EXPECT_HAS(m, "all_reduce (sum, 16 x fp32) with all ranks did not complete within");
    EXPECT_HAS(m, "communicator aborted");
    EXPECT_LT(waited, 10.0);
    cudaStreamSynchronize(stream);  // the abort released the stuck kernel
  }
  host->barrier();
}

}  // namespace
}  // namespace ravensp::comm::test
