// quipkern: 2-bit decode GEMV on tensor cores (docs/FORMATS.md, "2-bit weights").
//
// Weights are the A operand of mma.m16n8k16 (16 output rows × 16 k), the M <= 16 rows of
// x the B operand (one or two n8 tiles), so even M = 1 runs on tensor cores and the
// CUDA cores only unpack codes.
//
// Work split.  A block owns 16 output rows and all of K; its 8 warps take chunks of 4
// "units" of K (a unit = 64 columns = 4 words per row) round-robin and reduce through
// shared memory at the end.
//
// Pipeline.  Each warp has its own ring of 4 chunk buffers in shared memory, filled by
// 16-byte cp.async copies (whole 32-byte sectors, 3 chunks in flight while it
// multiplies one; no registers held for loads in flight).  The block's group scales
// are staged in shared memory once, and x of the next unit is loaded while the current
// one is multiplied.  The group size is a template parameter, so a unit's scale index
// is a shift, not a division.  In a unit, lane (g = lane/4, t = lane%4) reads word t of
// rows g and g+8 from the ring:
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
constexpr int kUnits = 4;   // units of K in a warp's chunk: 64 contiguous bytes of each of its 16 rows
constexpr int kStages = 4;  // chunks a warp has in its shared-memory ring: 3 on their way while it computes one

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

// x of one unit for batch row b: x[b][base .. base + 16) as two 16-byte loads (zeros
// for a batch row past M).  Loaded one unit ahead of its use: its latency is what
// the warp would otherwise wait on in every unit.
struct XRaw {
  uint4 v0, v1;
};
template <typename T>
__device__ __forceinline__ XRaw load_x(const T* __restrict__ src, bool valid) {
  XRaw r{make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
  if (valid) {
    r.v0 = __ldg(reinterpret_cast<const uint4*>(src));
    r.v1 = __ldg(reinterpret_cast<const uint4*>(src) + 1);
  }
  return r;
}

// B fragments of the unit: pairs (x_j, x_{j+8}).
__device__ __forceinline__ void x_pairs(const XRaw& r, uint32_t (&pair)[8]) {
  const uint32_t w[8] = {r.v0.x, r.v0.y, r.v0.z, r.v0.w, r.v1.x, r.v1.y, r.v1.z, r.v1.w};  // (x_2m, x_2m+1)
#pragma unroll
  for (int m = 0; m < 4; ++m) {
    pair[2 * m] = __byte_perm(w[m], w[m + 4], 0x5410);      // (x_2m, x_2m+8)
    pair[2 * m + 1] = __byte_perm(w[m], w[m + 4], 0x7632);  // (x_2m+1, x_2m+9)
  }
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  // src_bytes = 0 fills the 16 bytes with zeros and reads nothing
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

// Shared memory of a block: each warp's ring of kStages chunk buffers (16 rows ×
// kRowWords words; 4 pad words a row make the fragment reads of a unit conflict-free),
// then the block's group scales (and zeros) as fp16 bits [16][G].
constexpr int kRowWords = 4 * kUnits + 4;
constexpr int kRingWords = kWarps * kStages * 16 * kRowWords;

// Group scales a row: kGroup = 0 is the per-row mode (its scale is read at the end).
__host__ __device__ constexpr int groups_per_row(int K, int kGroup) { return kGroup == 0 ? 0 : K / kGroup; }

size_t gemv_smem_bytes(int K, int kGroup, bool asym) {
  const size_t G = groups_per_row(K, kGroup);
  return kRingWords * 4 + ((16 * G * 2 * (asym ? 2 : 1) + 15) & ~size_t(15));
}

// kGroup: 64 or 128 (a scale per group of columns), 0 (one scale per row, applied at the end).
template <typename T, int NT, bool kAsym, int kGroup>
__global__ void __launch_bounds__(kWarps * 32) gemv_2bit_kernel(const Linear2bitParams p) {
  using O = Ops<T>;
  constexpr bool kGrouped = kGroup != 0;
  constexpr int kPerGroup = kGrouped ? kGroup / 64 : 1;  // units a group
  extern __shared__ __align__(16) uint32_t smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int row0 = blockIdx.x * 16;
  const int rows[2] = {row0 + g, row0 + g + 8};
  const int wpr = p.K / 16, units = p.K / 64, G = groups_per_row(p.K, kGroup);
  const int chunks = (units + kUnits - 1) / kUnits;
  uint32_t* ring = smem + warp * (kStages * 16 * kRowWords);
  const uint32_t ring_addr = uint32_t(__cvta_generic_to_shared(ring));
  uint16_t* ssc = reinterpret_cast<uint16_t*>(smem + kRingWords);
  uint16_t* szr = ssc + 16 * G;

  // Copies of one chunk: 16 rows × kUnits 16-byte pieces, two per lane.  Rows past N
  // read row N - 1 (their sums are never stored); units past K are zero-filled.
  const int32_t* src_row[2];
  int piece_row[2], piece_unit[2];
#pragma unroll
  for (int q = 0; q < 2; ++q) {
    const int piece = lane + 32 * q;
    piece_row[q] = piece / kUnits;
    piece_unit[q] = piece % kUnits;
    src_row[q] = p.packed + int64_t(min(row0 + piece_row[q], p.N - 1)) * wpr + 4 * piece_unit[q];
  }
  auto issue = [&](int i) {  // the warp's i-th chunk into stage i % kStages
    const int c = warp + i * kWarps;
    if (c < chunks) {
      const int left = units - c * kUnits;
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        const uint32_t dst =
            ring_addr + 4 * (((i % kStages) * 16 + piece_row[q]) * kRowWords + 4 * piece_unit[q]);
        const bool ok = piece_unit[q] < left;
        cp_async16(dst, ok ? src_row[q] + 16 * c : src_row[q], ok ? 16 : 0);
      }
    }
    cp_async_commit();  // also when empty: the group count stays in step
  };
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) issue(i);

  // The block's scales (and zeros), while the first chunks are on their way.
  if constexpr (kGrouped) {
    for (int i = threadIdx.x; i < 16 * G; i += blockDim.x) {
      const int r = i / G;
      const int64_t src = int64_t(min(row0 + r, p.N - 1)) * G + (i - r * G);
      ssc[i] = __ldg(p.scales + src);
      if (kAsym) szr[i] = __ldg(p.zeros + src);
    }
  }
  __syncthreads();

  const T* xptr[NT];
  bool xok[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int b = g + 8 * nt;
    xok[nt] = b < p.M;
    xptr[nt] = static_cast<const T*>(p.x) + int64_t(xok[nt] ? b : 0) * p.x_row_stride + 16 * t;
  }

  // Two accumulators (even and odd mma of a unit) halve the chain of dependent mmas.
  float acc[NT][4] = {}, acc_b[NT][4] = {};
  float xsum[NT][4] = {};  // asymmetric per-row mode: sum of x over this warp's units
  constexpr uint32_t kOnes[4] = {O::kOne, O::kOne, O::kOne, O::kOne};

  const int nc = warp < chunks ? (chunks - warp + kWarps - 1) / kWarps : 0;
  XRaw xr[NT];  // x of the next unit to multiply
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) xr[nt] = load_x<T>(xptr[nt] + 64 * kUnits * warp, xok[nt] && nc > 0);
  for (int i = 0; i < nc; ++i) {
    issue(i + kStages - 1);
    cp_async_wait<kStages - 1>();  // chunk i has landed (this lane's copies) ...
    __syncwarp();                  // ... and every lane's
    const int c = warp + i * kWarps, left = units - c * kUnits;
    const uint32_t* stage = ring + (i % kStages) * 16 * kRowWords;
    float cu[2][NT][4] = {}, su[NT][4] = {};
    const bool more = i + 1 < nc;
#pragma unroll
    for (int j = 0; j < kUnits; ++j) {
      if (j >= left) break;  // the same for the whole warp
      // the unit after this one: the next in the chunk, or the first of the warp's next chunk
      const bool in_chunk = j + 1 < kUnits && j + 1 < left;
      const int un = in_chunk ? c * kUnits + j + 1 : (c + kWarps) * kUnits;
      uint32_t bx[NT][8];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const XRaw next = load_x<T>(xptr[nt] + 64 * un, xok[nt] && (in_chunk || more));
        x_pairs(xr[nt], bx[nt]);
        xr[nt] = next;
      }
      uint32_t wa[2][8];
#pragma unroll
      for (int h = 0; h < 2; ++h) O::template dequant<!kAsym>(stage[(g + 8 * h) * kRowWords + 4 * j + t], wa[h]);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const uint32_t a[4] = {wa[0][2 * k], wa[1][2 * k], wa[0][2 * k + 1], wa[1][2 * k + 1]};
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          O::mma(kGrouped ? cu[k & 1][nt] : (k & 1 ? acc_b[nt] : acc[nt]), a, bx[nt][2 * k], bx[nt][2 * k + 1]);
          if (kAsym) O::mma(kGrouped ? su[nt] : xsum[nt], kOnes, bx[nt][2 * k], bx[nt][2 * k + 1]);
        }
      }
      if (kGrouped && j % kPerGroup == kPerGroup - 1) {  // a group's partial sum is complete
        const int grp = (c * kUnits + j) / kPerGroup;
        float sc[2], zc[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          sc[h] = half_bits_to_float(ssc[(g + 8 * h) * G + grp]);
          zc[h] = kAsym ? half_bits_to_float(szr[(g + 8 * h) * G + grp]) : 0.f;
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int h = e >> 1;  // e0, e1: row g; e2, e3: row g + 8
            const float v = cu[0][nt][e] + cu[1][nt][e];
            acc[nt][e] += sc[h] * (kAsym ? v - zc[h] * su[nt][e] : v);
            cu[0][nt][e] = cu[1][nt][e] = 0.f;
            su[nt][e] = 0.f;
          }
      }
    }
    __syncwarp();  // every lane is done with this stage before it is refilled
  }
  cp_async_wait<0>();

  // reduce the warps' partial sums (in the rings' space, now free)
  __syncthreads();
  float(*red)[2][NT][4][32] = reinterpret_cast<float(*)[2][NT][4][32]>(smem);
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      red[warp][0][nt][c][lane] = acc[nt][c] + acc_b[nt][c];
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
static_assert(kWarps * 2 * 2 * 4 * 32 <= kRingWords, "the reduction reuses the rings");

template <typename T, int NT, bool kAsym, int kGroup>
Status launch_kernel(const Linear2bitParams& p, cudaStream_t stream) {
  auto kernel = gemv_2bit_kernel<T, NT, kAsym, kGroup>;
  const size_t smem = gemv_smem_bytes(p.K, kGroup, kAsym);
  if (smem > 48 * 1024 &&
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) != cudaSuccess)
    return Status::kUnsupported;  // more group scales than shared memory holds
  kernel<<<dim3((p.N + 15) / 16), dim3(kWarps * 32), smem, stream>>>(p);
  return cudaGetLastError() == cudaSuccess ? Status::kOk : Status::kCudaError;
}

template <typename T, int NT, int kGroup>
Status launch_group(const Linear2bitParams& p, cudaStream_t stream) {
  return p.zeros != nullptr ? launch_kernel<T, NT, true, kGroup>(p, stream)
                            : launch_kernel<T, NT, false, kGroup>(p, stream);
}

template <typename T, int NT>
Status launch_nt(const Linear2bitParams& p, cudaStream_t stream) {
  if (p.group_size == p.K) return launch_group<T, NT, 0>(p, stream);  // K == 64 or 128 included
  if (p.group_size == 64) return launch_group<T, NT, 64>(p, stream);
  return launch_group<T, NT, 128>(p, stream);
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
