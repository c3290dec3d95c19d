// Where does the decode GEMV lose its bandwidth?  A standalone probe (no torch): the
// GEMV next to kernels that move the same bytes and do nothing else.
//   nvcc -std=c++17 -O3 -Icsrc/include -gencode=arch=compute_90a,code=sm_90a \
//        benchmarks/probe/stream_probe.cu -o /tmp/stream_probe && /tmp/stream_probe
// benchmarks/probe/ab.sh runs it for several versions of the GEMV at once.
// Each kernel reads one of 8 weight buffers in turn (8 × the matrix, well over the 50 MB
// L2), timed with CUDA events over 400 launches; µs per launch and GB/s of weights.
#include <cstdio>
#include <vector>

// the kernel itself, for a side-by-side launch (-DQK_GEMV_SOURCE=<file> compares another version)
#ifndef QK_GEMV_SOURCE
#define QK_GEMV_SOURCE "../../csrc/linear_2bit.cu"
#endif
#include QK_GEMV_SOURCE

namespace quipkern {  // beside the kernel's own helpers (cp_async16, ...)
namespace {

__device__ unsigned sink;

// 1. flat streaming: grid-stride uint4 loads, 4 in flight per thread
__global__ void stream_ldg(const uint4* __restrict__ p, size_t n16) {
  uint32_t acc = 0;
  size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x, stride = size_t(gridDim.x) * blockDim.x;
  for (; i + 3 * stride < n16; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = __ldg(p + i + u * stride);
#pragma unroll
    for (int u = 0; u < 4; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n16; i += stride) { uint4 v = __ldg(p + i); acc ^= v.x ^ v.y ^ v.z ^ v.w; }
  if (acc == 0x12345678u) sink = acc;
}

// 2./3. the GEMV's pipeline without its arithmetic: 16 rows a block, 8 warps, each warp a
// ring of 4 chunks filled by 16-byte cp.async.  kContig = false: a chunk is 64 bytes of
// each of the 16 rows (the GEMV's pattern); true: 1 KB contiguous of the block's rows.
template <bool kContig>
__global__ void __launch_bounds__(256, 4) ring_only(const int32_t* __restrict__ packed, int N, int K) {
  extern __shared__ __align__(16) uint32_t smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wpr = K / 16, units = K / 64, chunks = units / 4;
  const int row0 = blockIdx.x * 16;
  uint32_t* ring = smem + warp * (4 * 16 * 20);
  const uint32_t ring_addr = uint32_t(__cvta_generic_to_shared(ring));
  const int32_t* block_base = packed + int64_t(row0) * wpr;
  auto issue = [&](int i) {
    const int c = warp + i * 8;
    if (c < chunks) {
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        const int piece = lane + 32 * q;
        const int32_t* src;
        if (kContig) src = block_base + int64_t(c) * 256 + 4 * piece;          // 1 KB run
        else src = block_base + int64_t(piece / 4) * wpr + 16 * c + 4 * (piece % 4);  // 16 rows × 64 B
        const uint32_t dst = ring_addr + 4 * (((i % 4) * 16 + piece / 4) * 20 + 4 * (piece % 4));
        cp_async16(dst, src, 16);
      }
    }
    cp_async_commit();
  };
  for (int i = 0; i < 3; ++i) issue(i);
  const int nc = (chunks - warp + 7) / 8;
  uint32_t acc = 0;
  for (int i = 0; i < nc; ++i) {
    issue(i + 3);
    cp_async_wait<3>();
    __syncwarp();
    acc ^= ring[(i % 4) * 16 * 20 + lane];
    __syncwarp();
  }
  cp_async_wait<0>();
  if (acc == 0x12345678u) sink = acc;
}

template <typename F>
float time_us(F launch, int iters) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < 20; ++i) launch(i);
  cudaEventRecord(a);
  for (int i = 0; i < iters; ++i) launch(i);
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  return 1000.f * ms / iters;
}

}  // namespace
}  // namespace quipkern

using namespace quipkern;

int main() {
  const int kSets = 8;
  const int shapes[][2] = {{8192, 8192}, {28672, 8192}, {4096, 4096}};
  for (auto& s : shapes) {
    const int N = s[0], K = s[1];
    const size_t bytes = size_t(N) * K / 4;
    std::vector<int32_t*> w(kSets);
    std::vector<uint16_t*> sc(kSets);
    for (int i = 0; i < kSets; ++i) {
      cudaMalloc(&w[i], bytes);
      cudaMemset(w[i], 0x5a, bytes);
      cudaMalloc(&sc[i], size_t(N) * (K / 128) * 2);
      cudaMemset(sc[i], 0x3c, size_t(N) * (K / 128) * 2);
    }
    void* x;
    void* y;
    cudaMalloc(&x, size_t(K) * 2 * 16);
    cudaMemset(x, 0, size_t(K) * 2 * 16);
    cudaMalloc(&y, size_t(N) * 2 * 16);
    const int iters = 400;
    auto report = [&](const char* name, float us) {
      printf("%-34s %6dx%-6d %8.2f us %7.0f GB/s\n", name, N, K, us, bytes / us / 1e3);
    };
    report("stream_ldg (1056 blocks x 256)", time_us([&](int i) {
             stream_ldg<<<132 * 8, 256>>>(reinterpret_cast<const uint4*>(w[i % kSets]), bytes / 16);
           }, iters));
    const int smem = 8 * 4 * 16 * 20 * 4;
    cudaFuncSetAttribute(ring_only<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    cudaFuncSetAttribute(ring_only<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    report("ring_only, 16 rows x 64 B chunks", time_us([&](int i) {
             ring_only<false><<<N / 16, 256, smem>>>(w[i % kSets], N, K);
           }, iters));
    report("ring_only, 1 KB contiguous chunks", time_us([&](int i) {
             ring_only<true><<<N / 16, 256, smem>>>(w[i % kSets], N, K);
           }, iters));
    for (int M : {1, 16}) {
      char name[64];
      snprintf(name, sizeof name, "gemv bf16 g128 M=%d", M);
      report(name, time_us([&](int i) {
               quipkern::Linear2bitParams p;
               p.x = x; p.x_row_stride = K; p.y = y; p.y_row_stride = N;
               p.packed = w[i % kSets]; p.scales = sc[i % kSets];
               p.M = M; p.N = N; p.K = K; p.group_size = 128; p.dtype = quipkern::DType::kBF16;
               quipkern::linear_2bit_gemv_launch(p, 0);
             }, iters));
    }
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) { printf("CUDA error %s\n", cudaGetErrorString(e)); return 1; }
    for (int i = 0; i < kSets; ++i) { cudaFree(w[i]); cudaFree(sc[i]); }
    cudaFree(x);
    cudaFree(y);
  }
  return 0;
}
