// Where does the decode GEMV lose its bandwidth?  A standalone probe (no torch): the
// GEMV next to kernels that move the same bytes and do nothing else.
//   nvcc -std=c++17 -O3 -Icsrc/include -gencode=arch=compute_90a,code=sm_90a \
//        benchmarks/probe/stream_probe.cu -o /tmp/stream_probe && /tmp/stream_probe
// benchmarks/probe/ab.sh runs it for several versions of the GEMV at once.
// Each kernel reads one of 8 weight buffers in turn (8 × the matrix, well over the 50 MB
// L2), timed with CUDA events over 400 launches; µs per launch and GB/s of weights.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
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

// Linear2bitParams::pdl (launch with PDL, as after the layer's T_in) where the version has
// it: PROBE_PDL=1 sets it (back-to-back GEMVs then overlap); no-op for older versions.
template <typename P>
auto set_pdl(P& p, int) -> decltype(p.pdl = true, void()) {
  static const bool on = getenv("PROBE_PDL") && atoi(getenv("PROBE_PDL")) != 0;
  p.pdl = on;
}
template <typename P>
void set_pdl(P&, long) {}
// fixed_x where the version has it (the fixed-point kernel at M <= 8 with x in shared memory)
template <typename P>
auto set_fixed_x(P& p, int on) -> decltype(p.fixed_x = true, void()) { p.fixed_x = on != 0; }
template <typename P>
void set_fixed_x(P&, long) {}

// The GEMV against a float64 host reference on random data (rows not a multiple of 16,
// several M, both dtypes, symmetric / asymmetric, group and per-row scales), so that a
// version under comparison is checked before it is timed.  Returns the worst relative
// error ||y - ref|| / ||ref||.
template <typename T>
double check_one(int N, int K, int M, int group, bool asym, unsigned seed) {
  srand(seed);
  auto rnd = [] { return rand() / double(RAND_MAX); };
  const int G = K / group;
  std::vector<uint32_t> packed(size_t(N) * K / 16);
  for (auto& w : packed) w = (uint32_t(rand()) << 16) ^ uint32_t(rand());
  std::vector<__half> sc(size_t(N) * G), zr(size_t(N) * G);
  for (auto& v : sc) v = __float2half(float(0.005 + 0.02 * rnd()));
  for (auto& v : zr) v = __float2half(float(0.5 + 2.0 * rnd()));
  std::vector<T> x(size_t(M) * K);
  for (auto& v : x) v = T(float(2 * rnd() - 1));
  std::vector<double> xr(x.size());  // x as the product sees it
  for (size_t i = 0; i < x.size(); ++i) xr[i] = double(float(x[i]));
  std::vector<double> ref(size_t(M) * N, 0.0);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k) {
      const int c = (packed[size_t(n) * (K / 16) + k / 16] >> (2 * (k % 16))) & 3;
      const double z = asym ? double(__half2float(zr[size_t(n) * G + k / group])) : 1.5;
      const double w = double(__half2float(sc[size_t(n) * G + k / group])) * (c - z);
      for (int b = 0; b < M; ++b) ref[size_t(b) * N + n] += w * xr[size_t(b) * K + k];
    }
  uint32_t* dp; __half* ds; __half* dz; T* dx; T* dy;
  cudaMalloc(&dp, packed.size() * 4); cudaMemcpy(dp, packed.data(), packed.size() * 4, cudaMemcpyHostToDevice);
  cudaMalloc(&ds, sc.size() * 2); cudaMemcpy(ds, sc.data(), sc.size() * 2, cudaMemcpyHostToDevice);
  cudaMalloc(&dz, zr.size() * 2); cudaMemcpy(dz, zr.data(), zr.size() * 2, cudaMemcpyHostToDevice);
  cudaMalloc(&dx, x.size() * sizeof(T)); cudaMemcpy(dx, x.data(), x.size() * sizeof(T), cudaMemcpyHostToDevice);
  cudaMalloc(&dy, size_t(M) * N * sizeof(T));
  cudaMemset(dy, 0xff, size_t(M) * N * sizeof(T));  // NaN poison: an unwritten output fails
  quipkern::Linear2bitParams p;
  p.x = dx; p.x_row_stride = K; p.y = dy; p.y_row_stride = N;
  p.packed = reinterpret_cast<const int32_t*>(dp);
  p.scales = reinterpret_cast<const uint16_t*>(ds);
  p.zeros = asym ? reinterpret_cast<const uint16_t*>(dz) : nullptr;
  p.M = M; p.N = N; p.K = K; p.group_size = group;
  p.dtype = std::is_same<T, __half>::value ? quipkern::DType::kF16 : quipkern::DType::kBF16;
  const quipkern::Status st = quipkern::linear_2bit_gemv_launch(p, 0);
  std::vector<T> y(size_t(M) * N);
  cudaMemcpy(y.data(), dy, y.size() * sizeof(T), cudaMemcpyDeviceToHost);
  cudaFree(dp); cudaFree(ds); cudaFree(dz); cudaFree(dx); cudaFree(dy);
  if (st != quipkern::Status::kOk) return 1e9;
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double d = double(float(y[i])) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::isfinite(num) ? std::sqrt(num / den) : 1e9;
}

bool check_all() {
  bool ok = true;
  // N = 1000: a partial last block; N = 8200, K = 1024: the wide-N path (two row tiles a
  // warp in v9) with a partial last block; N = 16001 and 20011 (M <= 3 only): more row
  // tiles than fit the GPU at once (persistent blocks in the per-row fixed-point mode; at
  // K = 512 six of the eight warps have no chunk)
  const int shapes[4][2] = {{1000, 4096}, {8200, 1024}, {16001, 1024}, {20011, 512}};
  for (const auto& nk : shapes)
    for (int M : {1, 3, 8, 16})
      for (int v = 0; v < 4; ++v) {
        const int N = nk[0], K = nk[1];
        if (N > 10000 && M > 3) continue;
        const int group = v == 0 ? 128 : v == 1 ? 64 : K;
        const bool asym = v == 1 || v == 2;
        const double e16 = check_one<__half>(N, K, M, group, asym, 11 * M + v + N);
        const double eb = check_one<__nv_bfloat16>(N, K, M, group, asym, 13 * M + v + N);
        const bool good = e16 < 2e-3 && eb < 1e-2;
        ok = ok && good;
        printf("check %5dx%-5d M=%-2d group=%-4d %s  fp16 rel err %.2e  bf16 %.2e  %s\n", N, K, M, group,
               asym ? "asym" : "sym ", e16, eb, good ? "ok" : "FAILED");
      }
  return ok;
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
  // PROBE_M: batch sizes timed (default "1 16"); PROBE_SHAPES (below) the shapes; PROBE_RING=0 skips the memory-only kernels;
  // PROBE_PDL=1 launches the GEMVs with PDL where the version has Linear2bitParams::pdl
  std::vector<int> Ms;
  {
    const char* env = getenv("PROBE_M");
    std::string list = env ? env : "1 16";
    for (size_t i = 0; i < list.size();) {
      size_t j = list.find(' ', i);
      if (j == std::string::npos) j = list.size();
      if (j > i) Ms.push_back(std::max(1, std::min(16, atoi(list.substr(i, j - i).c_str()))));
      i = j + 1;
    }
  }
  const bool ring = !getenv("PROBE_RING") || atoi(getenv("PROBE_RING")) != 0;
  // PROBE_FIXED: 1 (the default kernel choice), 0 (fixed_x off: the float kernel), both
  std::vector<int> fixed_modes{1};
  if (const char* f = getenv("PROBE_FIXED")) fixed_modes = std::string(f) == "both" ? std::vector<int>{1, 0} : std::vector<int>{atoi(f) != 0};
  // PROBE_SHAPES: "NxK NxK ..." (default: the issues' five shapes)
  std::vector<std::pair<int, int>> shapes{{8192, 8192}, {28672, 8192}, {8192, 28672}, {4096, 4096}, {14336, 4096}};
  if (const char* env = getenv("PROBE_SHAPES")) {
    shapes.clear();
    for (const char* c = env; *c;) {
      char* end = nullptr;
      const long n = strtol(c, &end, 10);
      if (end == c || *end != 'x') { fprintf(stderr, "PROBE_SHAPES: cannot read '%s' (want NxK)\n", c); return 2; }
      const long k = strtol(end + 1, &end, 10);
      if (n <= 0 || k <= 0 || k % 128 != 0) { fprintf(stderr, "PROBE_SHAPES: %ldx%ld: want N, K > 0, K %% 128 == 0\n", n, k); return 2; }
      shapes.emplace_back(int(n), int(k));
      while (*end == ' ' || *end == ',') ++end;
      c = end;
    }
  }
  // after reading the options, so that a bad one costs no checking time
  if (!check_all()) printf("the GEMV is WRONG (timings below are of a wrong kernel)\n");
  for (auto& s : shapes) {
    const int N = s.first, K = s.second;
    const size_t bytes = size_t(N) * K / 4;
    // weight sets rotated so that they span >= 3x the 50 MB L2
    const int kSets = int(std::max<size_t>(4, (150u << 20) / (bytes + size_t(N) * (K / 128) * 2) + 1));
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
    cudaMemset(x, 0x3c, size_t(K) * 2 * 16);  // bf16 0x3c3c ~ 0.0115: never time on zeros
    cudaMalloc(&y, size_t(N) * 2 * 16);
    const int iters = 400;
    auto report = [&](const char* name, float us) {
      printf("%-34s %6dx%-6d %8.2f us %7.0f GB/s\n", name, N, K, us, bytes / us / 1e3);
    };
    if (ring) {
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
    }
    for (int M : Ms)
      for (int fixed : fixed_modes)
      for (int group : {128, K}) {  // group scales, or one scale a row (the ternary-2bit layout's mode)
        char name[64];
        snprintf(name, sizeof name, "gemv bf16 %s M=%d%s", group == K ? "row " : "g128", M,
                 fixed_modes.size() > 1 ? (fixed ? " fixed" : " float") : "");
        report(name, time_us([&](int i) {
                 quipkern::Linear2bitParams p;
                 p.x = x; p.x_row_stride = K; p.y = y; p.y_row_stride = N;
                 p.packed = w[i % kSets]; p.scales = sc[i % kSets];
                 p.M = M; p.N = N; p.K = K; p.group_size = group; p.dtype = quipkern::DType::kBF16;
                 set_pdl(p, 0);
                 set_fixed_x(p, fixed);
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
