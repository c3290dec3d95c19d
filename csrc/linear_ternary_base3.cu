// quipkern: decode GEMV for ternary weights in the base-3 packing (docs/FORMATS.md,
// "Ternary weights", ternary-base3), M <= 16, on mma.m16n8k16 (fp16 / bf16, fp32 sums).
//
// Why the packing suits the tensor cores: byte j of a row's 16-byte block u holds the
// trits of columns 80u + 16i + j for i = 0..4 (digit i, base 3).  Digit i of the 16
// bytes is therefore one 16-column k-step, and the same bytes serve all five k-steps.
// In the fragments of mma.m16n8k16 lane (g, t) = (lane / 4, lane % 4) holds k indices
// {2t, 2t+1} and {2t+8, 2t+9} (A: of rows g and g+8; B: of batch column g).  Any
// permutation of a step's 16 columns that A and B share leaves the sum alone, so k index
// 2t + e stands for column 4t + e and 2t + 8 + e for column 4t + 2 + e (e = 0, 1): the
// lane's A is bytes 4t..4t+3 of each of its two rows' block — word t, one 4-byte read a
// row (the 8 row groups' words fall in distinct banks) — and its B is x's columns
// 16i + 4t .. 16i + 4t + 3 of the step, one 8-byte read.
//
//   block u of rows g, g+8     two 4-byte shared-memory reads (word t of each row)
//        |  bytes 4t, 4t+1 and 4t+2, 4t+3 of each row
//        v
//   table[byte] = its 5 digits, 2 bits each (bits 2i, 2i+1)     8 lookups
//        |  P = table[lo byte] | table[hi byte] << 16           4 pair words
//        v
//   digit i: A = ((P >> (2i - f)) & (3 << f, twice)) | magic    4 registers, 2 ops each
//
// The magic puts the digit d in the mantissa of 4.0 (bf16 0x4080, d at bit f = 5; fp16
// 0x4400, d at bit f = 8): A = 4 + d, one integer step per unit of d, and t = d - 1 =
// A - 5.  So y = sum A·x - 5·sum x, and the second sum is one more mma per k-step with
// A = 1.0 (the same for every row).  The biased values are small (4..6), so the fp32
// sums lose nothing measurable over K = 28672.
//
// Pipeline: a block owns 16 rows, 8 warps; warp w takes the contiguous run of blocks
// [w·B/8, (w+1)·B/8) of the row's B blocks, in chunks of 4 blocks (64 bytes of each of the
// 16 rows), through a 3-stage cp.async ring of its own (rows 80 bytes apart: the 8 row
// groups' words fall in distinct banks).  Contiguous runs keep the warps within one block
// of each other: dealt round robin by chunks, two of the eight warps took 4
// chunks at K = 8192 where the rest took 3, and the whole grid fits on the GPU at once,
// so the slowest warp set the time (ncu, H100, 8192² M = 1: 18 % of the samples were
// warps waiting at the final barrier; benchmarks/NOTES.md, session 14).  Columns past K
// are zero in x (checked per load, or zero-filled in the ring), so the padding trits add
// nothing; blocks past a warp's run are never multiplied.  The warps' partial sums meet
// in shared memory at the end.
//
// M = 1 with x 16-byte aligned (kXRing): x's 320 columns of a chunk travel in the ring with
// the weights (cp.async, zero past K), where the other variants __ldg each k-step's pairs
// as they go: those loads were the mmas' wait (long-scoreboard stalls on HMMA, 18 % of
// the samples at 8192² M = 1).  Every lane reads the same x column pairs (lanes of one t
// share an address: a broadcast), so the B columns 1..7 are copies of column 0, whose sums
// are never stored.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "ptx.cuh"
#include "quipkern/linear_ternary.h"

namespace quipkern {
namespace {

constexpr int kWarps = 8;
constexpr int kStages = 3;                          // chunks in a warp's ring: 2 in flight while it computes one
constexpr int kChunkBlocks = 4;                     // 80-column blocks a chunk: 64 bytes of each row
constexpr int kRowBytes = 16 * kChunkBlocks + 16;   // a row's bytes in the ring, 16 of them padding
constexpr int kStageBytes = 16 * kRowBytes;         // 16 rows
constexpr int kDigits = 5;
constexpr int kXChunkBytes = 2 * 80 * kChunkBlocks;  // x of a chunk's 320 columns (M = 1, kXRing)

using ptx::and_or;
using ptx::cp_async16;
using ptx::cp_async_commit;
using ptx::cp_async_wait;

template <typename T> struct Tern;
template <> struct Tern<__half> {
  static constexpr int kBit = 8;                  // d at mantissa bits 8-9 of 4.0
  static constexpr uint32_t kMagic = 0x44004400u;  // (4.0, 4.0)
  static constexpr uint32_t kOne = 0x3C003C00u;
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    ptx::mma_f16(c, a, b0, b1);
  }
  static __device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half from_float(float v) { return __float2half_rn(v); }
};
template <> struct Tern<__nv_bfloat16> {
  static constexpr int kBit = 5;                  // d at mantissa bits 5-6 of 4.0
  static constexpr uint32_t kMagic = 0x40804080u;  // (4.0, 4.0)
  static constexpr uint32_t kOne = 0x3F803F80u;
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    ptx::mma_bf16(c, a, b0, b1);
  }
  static __device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
};

// Digit I of both halves of a pair word, moved to the mantissa field at bit kBit of each
// half (the mask keeps only those bits: nothing of the other half leaks in).
template <typename T, int I>
__device__ __forceinline__ uint32_t digit_pair(uint32_t P) {
  constexpr int s = 2 * I - Tern<T>::kBit;
  uint32_t v;
  if constexpr (s >= 0) {
    v = P >> s;
  } else {
    v = P << -s;
  }
  return and_or(v, 0x00030003u << Tern<T>::kBit, Tern<T>::kMagic);
}

// k-step D (columns 16·D .. 16·D + 15 of the block): the weights' digit D times x, and the
// sum of x (A = 1) that takes the bias of 5 off at the end.
template <typename T, int NT, int D>
__device__ __forceinline__ void step(float (&acc)[NT][4], float (&sx)[NT][4], const uint32_t (&P)[4],
                                     const uint32_t (&xb)[NT][kDigits][2]) {
  const uint32_t a[4] = {digit_pair<T, D>(P[0]), digit_pair<T, D>(P[1]), digit_pair<T, D>(P[2]),
                         digit_pair<T, D>(P[3])};
  const uint32_t ones[4] = {Tern<T>::kOne, Tern<T>::kOne, Tern<T>::kOne, Tern<T>::kOne};
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    Tern<T>::mma(acc[nt], a, xb[nt][D][0], xb[nt][D][1]);
    Tern<T>::mma(sx[nt], ones, xb[nt][D][0], xb[nt][D][1]);
  }
}

template <typename T, int NT, bool kXRing>
__global__ void __launch_bounds__(kWarps * 32) gemv_ternary_base3_kernel(const LinearTernaryBase3Params p) {
  using O = Tern<T>;
  constexpr int kXBytes = kXRing ? kXChunkBytes : 0;
  constexpr int kSlotBytes = kStageBytes + kXBytes;  // a stage: 16 rows of weights, then x
  constexpr int kWarpRing = kStages * kSlotBytes;
  static_assert(!kXRing || NT == 1, "x in the ring is the M = 1 variant");
  __shared__ __align__(16) uint8_t ring[kWarps * kWarpRing];
  __shared__ uint32_t table[256];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int row0 = blockIdx.x * 16;
  const int blocks = (p.K + 79) / 80;  // 16-byte blocks a row
  const int64_t row_bytes = int64_t(blocks) * 16;
  // this warp's run of blocks [ub_begin, ub_end), in chunks of kChunkBlocks
  const int ub_begin = int(int64_t(blocks) * warp / kWarps), ub_end = int(int64_t(blocks) * (warp + 1) / kWarps);

  // byte -> its five base-3 digits, 2 bits each (bytes above 242 are invalid input)
  for (int v = threadIdx.x; v < 256; v += blockDim.x) {
    uint32_t e = 0;
    int r = v;
#pragma unroll
    for (int i = 0; i < kDigits; ++i) {
      e |= uint32_t(r % 3) << (2 * i);
      r /= 3;
    }
    table[v] = e;
  }

  // Copies: lane l brings piece l % 4 (16 bytes) of rows l / 4 and l / 4 + 8 of each chunk.
  // Rows past N read row N - 1 (their sums are never stored); blocks past the row are
  // zero-filled.
  uint8_t* wring = ring + warp * kWarpRing;
  const uint32_t wring_addr = uint32_t(__cvta_generic_to_shared(wring));
  const int prow = lane >> 2, piece = lane & 3;
  const uint8_t* src0 = p.packed + int64_t(min(row0 + prow, p.N - 1)) * row_bytes + 16 * piece;
  const uint8_t* src1 = p.packed + int64_t(min(row0 + prow + 8, p.N - 1)) * row_bytes + 16 * piece;
  const int nc = (ub_end - ub_begin + kChunkBlocks - 1) / kChunkBlocks;
  auto issue = [&](int i) {  // the warp's i-th chunk into stage i % kStages
    if (i < nc) {
      const int ub0 = ub_begin + i * kChunkBlocks;
      const bool ok = ub0 + piece < ub_end;
      const int64_t off = int64_t(ub0) * 16;
      const uint32_t dst = wring_addr + (i % kStages) * kSlotBytes + prow * kRowBytes + 16 * piece;
      cp_async16(dst, ok ? src0 + off : src0, ok ? 16 : 0);
      cp_async16(dst + 8 * kRowBytes, ok ? src1 + off : src1, ok ? 16 : 0);
      if constexpr (kXRing) {  // 40 pieces of 8 columns: lanes 0..7 take two; zeros past K
        const T* x = static_cast<const T*>(p.x);
        const uint32_t xdst = wring_addr + (i % kStages) * kSlotBytes + kStageBytes;
#pragma unroll
        for (int q = lane; q < kXChunkBytes / 16; q += 32) {
          const int col = 80 * ub0 + 8 * q;
          const int bytes = col < p.K ? 2 * min(8, p.K - col) : 0;
          cp_async16(xdst + 16 * q, bytes > 0 ? x + col : x, bytes);
        }
      }
    }
    cp_async_commit();  // also when empty: the group count stays in step
  };
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) issue(i);
  __syncthreads();  // the table

  const T* xrow[NT];  // the per-k-step loads' rows of x (kXRing: x comes through the ring)
  bool xok[NT];
  if constexpr (!kXRing) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int b = g + 8 * nt;
      xok[nt] = b < p.M;
      xrow[nt] = static_cast<const T*>(p.x) + int64_t(xok[nt] ? b : 0) * p.x_row_stride;
    }
  }
  // the digits of a word's two low bytes (k 2t, 2t+1) or two high bytes (k 2t+8, 2t+9)
  auto pair_lo = [&](uint32_t w) { return table[w & 0xffu] | (table[(w >> 8) & 0xffu] << 16); };
  auto pair_hi = [&](uint32_t w) { return table[(w >> 16) & 0xffu] | (table[w >> 24] << 16); };
  float acc[NT][4] = {}, sx[NT][4] = {};  // sum of (4 + d)·x, and sum of x

  for (int i = 0; i < nc; ++i) {
    issue(i + kStages - 1);
    cp_async_wait<kStages - 1>();  // chunk i has landed (this lane's copies) ...
    __syncwarp();                  // ... and every lane's
    const uint8_t* stage = wring + (i % kStages) * kSlotBytes;
#pragma unroll
    for (int ub = 0; ub < kChunkBlocks; ++ub) {
      const int u = ub_begin + i * kChunkBlocks + ub;
      if (u >= ub_end) break;  // the same for the whole warp
      // x of the five k-steps first (its latency overlaps the unpacking)
      uint32_t xb[NT][kDigits][2];
      // x's columns 16d + 4t .. 16d + 4t + 3 (k 2t, 2t+1 | 2t+8, 2t+9)
      if constexpr (kXRing) {
        const uint2* xs = reinterpret_cast<const uint2*>(stage + kStageBytes) + 20 * ub + t;
#pragma unroll
        for (int d = 0; d < kDigits; ++d) {
          const uint2 v = xs[4 * d];
          xb[0][d][0] = v.x;
          xb[0][d][1] = v.y;
        }
      } else {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int d = 0; d < kDigits; ++d) {
            const int col = 80 * u + 16 * d + 4 * t;  // even, and K is even: a pair is all in or all out
            xb[nt][d][0] = xok[nt] && col < p.K ? __ldg(reinterpret_cast<const uint32_t*>(xrow[nt] + col)) : 0u;
            xb[nt][d][1] = xok[nt] && col + 2 < p.K ? __ldg(reinterpret_cast<const uint32_t*>(xrow[nt] + col + 2)) : 0u;
          }
      }
      const uint32_t w0 = *reinterpret_cast<const uint32_t*>(stage + g * kRowBytes + 16 * ub + 4 * t);
      const uint32_t w1 = *reinterpret_cast<const uint32_t*>(stage + (g + 8) * kRowBytes + 16 * ub + 4 * t);
      // A registers: (row g, k 2t..), (row g+8, k 2t..), (row g, k 2t+8..), (row g+8, k 2t+8..)
      const uint32_t P[4] = {pair_lo(w0), pair_lo(w1), pair_hi(w0), pair_hi(w1)};
      step<T, NT, 0>(acc, sx, P, xb);
      step<T, NT, 1>(acc, sx, P, xb);
      step<T, NT, 2>(acc, sx, P, xb);
      step<T, NT, 3>(acc, sx, P, xb);
      step<T, NT, 4>(acc, sx, P, xb);
    }
    __syncwarp();  // every lane is done with this stage before it is refilled
  }
  cp_async_wait<0>();

  // the warps' partial sums, through the rings' space (now free)
  __syncthreads();
  float(*red)[NT][4][32] = reinterpret_cast<float(*)[NT][4][32]>(ring);
  static_assert(kWarps * NT * 4 * 32 * 4 <= kWarps * kWarpRing, "the reduction reuses the rings");
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) red[warp][nt][e][lane] = acc[nt][e] - 5.f * sx[nt][e];
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float v = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) v += red[w][nt][e][lane];
      // C fragment: rows g (e < 2) and g + 8, batch columns 2t and 2t + 1 of tile nt
      const int row = row0 + g + 8 * (e >> 1), b = 2 * t + (e & 1) + 8 * nt;
      if (row >= p.N || b >= p.M) continue;
      v *= __ldg(p.scale + (p.per_row_scale ? row : 0));
      if (p.bias != nullptr) v += O::to_float(static_cast<const T*>(p.bias)[row]);
      static_cast<T*>(p.y)[int64_t(b) * p.y_row_stride + row] = O::from_float(v);
    }
}

template <typename T, int NT, bool kXRing>
Status launch_kernel(const LinearTernaryBase3Params& p, cudaStream_t stream) {
  gemv_ternary_base3_kernel<T, NT, kXRing><<<dim3((p.N + 15) / 16), dim3(kWarps * 32), 0, stream>>>(p);
  return cudaGetLastError() == cudaSuccess ? Status::kOk : Status::kCudaError;
}

template <typename T>
Status launch_typed(const LinearTernaryBase3Params& p, cudaStream_t stream) {
  // x in the ring needs 16-byte pieces of it (cp.async); otherwise the k-steps load it
  if (p.M == 1 && reinterpret_cast<uintptr_t>(p.x) % 16 == 0) return launch_kernel<T, 1, true>(p, stream);
  return p.M <= 8 ? launch_kernel<T, 1, false>(p, stream) : launch_kernel<T, 2, false>(p, stream);
}

}  // namespace

Status linear_ternary_base3_gemv_launch(const LinearTernaryBase3Params& p, cudaStream_t stream) {
  if (p.x == nullptr || p.y == nullptr || p.packed == nullptr || p.scale == nullptr) return Status::kInvalidArgument;
  if (p.M < 1 || p.M > kGemvTernaryMaxM || p.N < 1 || p.K < 2 || p.K % 2) return Status::kInvalidArgument;
  if (p.x_row_stride < p.K || p.y_row_stride < p.N) return Status::kInvalidArgument;
  // x is read as 4-byte pairs, the weight as 16-byte pieces
  if (reinterpret_cast<uintptr_t>(p.x) % 4 || p.x_row_stride % 2 || reinterpret_cast<uintptr_t>(p.packed) % 16)
    return Status::kMisaligned;
  if (int64_t(p.N) + 15 > int64_t(0x7fffffff)) return Status::kUnsupported;
  switch (p.dtype) {
    case DType::kF16: return launch_typed<__half>(p, stream);
    case DType::kBF16: return launch_typed<__nv_bfloat16>(p, stream);
    default: return Status::kUnsupported;
  }
}

}  // namespace quipkern
