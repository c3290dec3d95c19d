// quipkern: 2-bit decode GEMV on tensor cores (docs/FORMATS.md, "2-bit weights").
//
// Weights are the A operand of mma.m16n8k16 (16 output rows × 16 k), the M <= 16 rows of
// x the B operand (one or two n8 tiles), so even M = 1 runs on tensor cores and the
// CUDA cores only unpack codes.
//
// Work split.  A block owns 16 output rows and all of K; its 8 warps take pairs of
// "units" of K (64 columns = 4 words per row) round-robin, several pairs of loads in
// flight, and reduce through shared memory at the end.  In a unit, lane (g = lane/4, t = lane%4) loads word t of rows g and g+8:
//
//        unit u of rows row0..row0+15 (4 words of 16 codes per row)
//        word:    0      1      2      3
//   row g      [t=0]  [t=1]  [t=2]  [t=3]     <- the four lanes of quad g
//   row g+8    [t=0]  [t=1]  [t=2]  [t=3]
//
// A quad reads 16 contiguous bytes per row.  One word feeds four mmas: mma i takes the
// code pairs (2i, 2i+8) and (2i+1, 2i+9) of every lane's word as its k-slots
// (2t, 2t+1) and (2t+8, 2t+9).  The k order inside an mma is free as long as B uses the
// same one, so lane (g, t) loads x[b][64u + 16t .. +16] and pairs it up the same way.
// Thus every mma covers exactly one unit, and a group scale (g = 64 or 128) is applied
// to the unit's fp32 partial sum: no scale multiplies per weight.
//
// Unpacking a pair of codes into a half2 / bfloat162 without converts: OR the 2-bit
// field into the mantissa of a magic number, M + c·4^p, then one fma with (4^-p,
// -(M·4^-p + z0)) gives c - z0 exactly (z0 = 1.5 for the symmetric grid, 0 otherwise).
// Fields sit at mantissa positions p >= 1 (fp16: p = 1..4, bf16: p = 1..2) so that
// the fma's constant is exact.  The asymmetric grid subtracts z · sum(x) per unit,
// where sum(x) comes from one more mma with an all-ones A.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "quipkern/linear_2bit.h"

namespace quipkern {
namespace {

constexpr int kWarps = 8;
constexpr int kPairs = 4;   // pairs of adjacent units whose loads a warp has in flight together

__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t mask, uint32_t magic) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "r"(mask), "r"(magic));  // (a & mask) | magic
  return r;
}

template <typename T> struct Ops;

template <> struct Ops<__half> {
  static constexpr uint32_t kMagic = 0x64006400u;  // 1024.0 in both halves
  static constexpr uint32_t kOne = 0x3C003C00u;
  static __device__ __forceinline__ uint32_t fma2(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t r;
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
  }
  // out[j] = (c_j - z0, c_{j+8} - z0), j = 0..7: codes 0..3 from w << 2, 4..7 from w >> 6,
  // each at mantissa position p = 1..4 (value 1024 + c·4^p).
  template <bool kSym>
  static __device__ __forceinline__ void dequant(uint32_t w, uint32_t (&out)[8]) {
    constexpr uint32_t kScale[4] = {0x34003400u, 0x2C002C00u, 0x24002400u, 0x1C001C00u};  // 4^-p
    constexpr uint32_t kBias[4] = {kSym ? 0xDC06DC06u : 0xDC00DC00u, kSym ? 0xD418D418u : 0xD400D400u,
                                   kSym ? 0xCC60CC60u : 0xCC00CC00u, kSym ? 0xC580C580u : 0xC400C400u};
    const uint32_t lo = w << 2, hi = w >> 6;
#pragma unroll
    for (int p = 1; p <= 4; ++p) {
      const uint32_t mask = 0x00030003u << (2 * p);
      out[p - 1] = fma2(and_or(lo, mask, kMagic), kScale[p - 1], kBias[p - 1]);
      out[p + 3] = fma2(and_or(hi, mask, kMagic), kScale[p - 1], kBias[p - 1]);
    }
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <> struct Ops<__nv_bfloat16> {
  static constexpr uint32_t kMagic = 0x43004300u;  // 128.0
  static constexpr uint32_t kOne = 0x3F803F80u;
  static __device__ __forceinline__ uint32_t fma2(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t r;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
  }
  // bf16 has 7 mantissa bits: positions p = 1, 2 only (128 + 48 < 256), two codes per shift.
  template <bool kSym>
  static __device__ __forceinline__ void dequant(uint32_t w, uint32_t (&out)[8]) {
    constexpr uint32_t kScale[2] = {0x3E803E80u, 0x3D803D80u};
    constexpr uint32_t kBias[2] = {kSym ? 0xC206C206u : 0xC200C200u, kSym ? 0xC118C118u : 0xC100C100u};
    const uint32_t src[4] = {w << 2, w >> 2, w >> 6, w >> 10};  // codes (0,1), (2,3), (4,5), (6,7)
#pragma unroll
    for (int s = 0; s < 4; ++s) {
#pragma unroll
      for (int p = 1; p <= 2; ++p)
        out[2 * s + p - 1] = fma2(and_or(src[s], 0x00030003u << (2 * p), kMagic), kScale[p - 1], kBias[p - 1]);
    }
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

__device__ __forceinline__ float half_bits_to_float(uint16_t v) { return __half2float(__ushort_as_half(v)); }

template <typename T> __device__ __forceinline__ float to_float(T v);
template <> __device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ __half from_float(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }

// B fragments of one unit for batch row b: pairs (x_j, x_{j+8}) of x[b][base .. base+16).
template <typename T>
__device__ __forceinline__ void load_x_pairs(const T* __restrict__ src, bool valid, uint32_t (&pair)[8]) {
  uint4 v0 = make_uint4(0, 0, 0, 0), v1 = v0;
  if (valid) {
    v0 = __ldg(reinterpret_cast<const uint4*>(src));
    v1 = __ldg(reinterpret_cast<const uint4*>(src) + 1);
  }
  const uint32_t w[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};  // w[m] = (x_2m, x_2m+1)
#pragma unroll
  for (int m = 0; m < 4; ++m) {
    pair[2 * m] = __byte_perm(w[m], w[m + 4], 0x5410);      // (x_2m, x_2m+8)
    pair[2 * m + 1] = __byte_perm(w[m], w[m + 4], 0x7632);  // (x_2m+1, x_2m+9)
  }
}

template <typename T, int NT, bool kAsym, bool kGrouped>
__global__ void __launch_bounds__(kWarps * 32, 2) gemv_2bit_kernel(const Linear2bitParams p) {
  using O = Ops<T>;
  __shared__ float red[kWarps][2][NT][4][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int row0 = blockIdx.x * 16;
  const int rows[2] = {row0 + g, row0 + g + 8};
  const int wpr = p.K / 16, units = p.K / 64, G = p.K / p.group_size;
  const int32_t* wptr[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) wptr[h] = p.packed + int64_t(min(rows[h], p.N - 1)) * wpr + t;
  const T* xptr[NT];
  bool xok[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int b = g + 8 * nt;
    xok[nt] = b < p.M;
    xptr[nt] = static_cast<const T*>(p.x) + int64_t(xok[nt] ? b : 0) * p.x_row_stride + 16 * t;
  }

  float acc[NT][4] = {};
  float xsum[NT][4] = {};  // asymmetric per-row mode: sum of x over this warp's units
  constexpr uint32_t kOnes[4] = {O::kOne, O::kOne, O::kOne, O::kOne};

  // A warp takes pairs of adjacent units (one full 32-byte sector of each row) and
  // keeps kPairs pairs of loads in flight.
  const int pairs = (units + 1) / 2;
  for (int c0 = warp; c0 < pairs; c0 += kWarps * kPairs) {
    constexpr int kUnroll = 2 * kPairs;
    uint32_t q[kUnroll][2];
#pragma unroll
    for (int r = 0; r < kUnroll; ++r) {
      const int u = 2 * (c0 + (r >> 1) * kWarps) + (r & 1);
#pragma unroll
      for (int h = 0; h < 2; ++h) q[r][h] = u < units ? uint32_t(__ldg(wptr[h] + 4 * u)) : 0u;
    }
#pragma unroll
    for (int r = 0; r < kUnroll; ++r) {
      const int u = 2 * (c0 + (r >> 1) * kWarps) + (r & 1);
      if (u >= units) continue;
      uint32_t bx[NT][8];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) load_x_pairs<T>(xptr[nt] + 64 * u, xok[nt], bx[nt]);
      uint32_t wa[2][8];
#pragma unroll
      for (int h = 0; h < 2; ++h) O::template dequant<!kAsym>(q[r][h], wa[h]);
      float cu[NT][4] = {}, su[NT][4] = {};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t a[4] = {wa[0][2 * i], wa[1][2 * i], wa[0][2 * i + 1], wa[1][2 * i + 1]};
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          O::mma(kGrouped ? cu[nt] : acc[nt], a, bx[nt][2 * i], bx[nt][2 * i + 1]);
          if (kAsym) O::mma(kGrouped ? su[nt] : xsum[nt], kOnes, bx[nt][2 * i], bx[nt][2 * i + 1]);
        }
      }
      if (kGrouped) {
        const int grp = (64 * u) / p.group_size;
        float s[2], z[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t idx = int64_t(min(rows[h], p.N - 1)) * G + grp;
          s[h] = half_bits_to_float(__ldg(p.scales + idx));
          z[h] = kAsym ? half_bits_to_float(__ldg(p.zeros + idx)) : 0.f;
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            const int h = c >> 1;  // c0, c1: row g; c2, c3: row g + 8
            acc[nt][c] += s[h] * (kAsym ? cu[nt][c] - z[h] * su[nt][c] : cu[nt][c]);
          }
      }
    }
  }

  // reduce the warps' partial sums
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      red[warp][0][nt][c][lane] = acc[nt][c];
      if (kAsym && !kGrouped) red[warp][1][nt][c][lane] = xsum[nt][c];
    }
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      float v = 0.f, xs = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        v += red[w][0][nt][c][lane];
        if (kAsym && !kGrouped) xs += red[w][1][nt][c][lane];
      }
      const int row = rows[c >> 1], b = 2 * t + (c & 1) + 8 * nt;
      if (row >= p.N || b >= p.M) continue;
      if (!kGrouped) {  // one scale (and zero) per row
        const float s = half_bits_to_float(__ldg(p.scales + row));
        v = s * (kAsym ? v - half_bits_to_float(__ldg(p.zeros + row)) * xs : v);
      }
      if (p.bias != nullptr) v += to_float(static_cast<const T*>(p.bias)[row]);
      static_cast<T*>(p.y)[int64_t(b) * p.y_row_stride + row] = from_float<T>(v);
    }
}

template <typename T, int NT>
Status launch_nt(const Linear2bitParams& p, cudaStream_t stream) {
  const bool grouped = p.group_size != p.K, asym = p.zeros != nullptr;
  const dim3 grid((p.N + 15) / 16), block(kWarps * 32);
  if (grouped && asym) gemv_2bit_kernel<T, NT, true, true><<<grid, block, 0, stream>>>(p);
  else if (grouped) gemv_2bit_kernel<T, NT, false, true><<<grid, block, 0, stream>>>(p);
  else if (asym) gemv_2bit_kernel<T, NT, true, false><<<grid, block, 0, stream>>>(p);
  else gemv_2bit_kernel<T, NT, false, false><<<grid, block, 0, stream>>>(p);
  return cudaGetLastError() == cudaSuccess ? Status::kOk : Status::kCudaError;
}

template <typename T>
Status launch_typed(const Linear2bitParams& p, cudaStream_t stream) {
  return p.M <= 8 ? launch_nt<T, 1>(p, stream) : launch_nt<T, 2>(p, stream);
}

}  // namespace

Status linear_2bit_gemv_launch(const Linear2bitParams& p, cudaStream_t stream) {
  if (p.x == nullptr || p.y == nullptr || p.packed == nullptr || p.scales == nullptr)
    return Status::kInvalidArgument;
  if (p.M < 1 || p.M > kGemv2bitMaxM || p.N < 1 || p.K < 64 || p.K % 64) return Status::kInvalidArgument;
  if (!(p.group_size == 64 || p.group_size == 128 || p.group_size == p.K)) return Status::kUnsupported;
  if (p.x_row_stride < p.K || p.y_row_stride < p.N) return Status::kInvalidArgument;
  // x is read as 16-byte vectors; weights as aligned words
  if (reinterpret_cast<uintptr_t>(p.x) % 16 || (p.x_row_stride * 2) % 16 || reinterpret_cast<uintptr_t>(p.packed) % 16)
    return Status::kMisaligned;
  if (int64_t(p.N + 15) / 16 > int64_t(0x7fffffff)) return Status::kUnsupported;
  switch (p.dtype) {
    case DType::kF16: return launch_typed<__half>(p, stream);
    case DType::kBF16: return launch_typed<__nv_bfloat16>(p, stream);
    default: return Status::kUnsupported;
  }
}

}  // namespace quipkern
