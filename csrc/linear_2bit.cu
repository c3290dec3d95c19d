// quipkern: 2-bit decode GEMV on tensor cores (docs/FORMATS.md, "2-bit weights").
//
// Two kernels share the work split, the pipeline and the rings described here:
//   gemv_2bit_kernel      fp16/bf16 mma on x as it is (M <= 16; below);
//   gemv_2bit_x16_kernel  int8 mma on x in 15-bit fixed point, where x fits in shared
//                         memory (M <= 8, M·K·2 <= 32 KB; Linear2bitParams::fixed_x); with
//                         int8 x the W1.58A8 decode GEMV (M <= 16), and in its kA8 mode the whole
//                         W1.58A8 decode step (x quantized in the prologue; its header,
//                         further down).
//
// Weights are the A operand of mma.m16n8k16 (16 output rows × 16 k), the M <= 16 rows of
// x the B operand (one or two n8 tiles), so even M = 1 runs on tensor cores and the
// CUDA cores only unpack codes.
//
// Work split.  A block owns 16·kTiles output rows and all of K; its 8 warps take chunks
// of 4 "units" of K (a unit = 64 columns = 4 words per row) round-robin and reduce
// through shared memory at the end.  With kTiles = 2 (N >= 8192) a warp multiplies two
// m16 row tiles with the same x fragments and one correction mma.  The fixed-point
// kernel's per-row modes may run persistent blocks, each taking several row tiles with x
// prepared once (gemv_2bit_x16_kernel, kPersistWaves* for where).
//
// Pipeline.  Each warp has its own ring of kStages chunk buffers in shared memory,
// filled by 16-byte cp.async copies (whole 32-byte sectors, kStages - 1 chunks in flight
// while it multiplies one; no registers held for loads in flight).  The block's group
// scales are copied to shared memory beside its first chunks, and so is all of x when
// M <= 8 and x is at most 32 KB (M·K·2 bytes; kXs, a template flag so that the M > 8
// variants keep the registers of the other path); otherwise x is read from global
// memory, the next unit's while the current one is multiplied.  The group size is a
// template parameter, so a unit's scale index is a shift, not a division.  In a unit, lane (g = lane/4,
// t = lane%4) reads word t of rows g and g+8 from the ring:
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
// Unpacking without converts or arithmetic: one lop3 ORs a pair of 2-bit fields into
// the mantissas of a magic number whose ulp at that field is 1, giving the half2 /
// bfloat162 (M_p + c_j, M_p + c_{j+8}) exactly.  Two field positions p alternate (code
// pair j at p = j % 2), so every mma of a unit has the same magics: M = 128, 32 for bf16
// (fields at mantissa bits 0-1, 2-3), 64, 16 for fp16 (bits 4-5, 6-7).  The mma thus sums
// (M + c)·x; a second mma per k-step with a constant A (the magics in rows 0-7, ones in
// rows 8-15) gives sum(M·x) and sum(x) of the same k-slots, and a group's value is
// s · (sum((M + c)·x) − sum(M·x) − z · sum(x)), z = 1.5 on the symmetric grid.

#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "launch.cuh"
#include "ptx.cuh"
#include "quipkern/linear_2bit.h"

namespace quipkern {
namespace {

// What the kernels take: the public parameters and what only this file's launches set.
struct GemvParams : Linear2bitParams {
  float act_qmax = 0.f;       // kA8 (ternary_a8_gemv_launch): Q of the in-kernel activation quantization
  const float* act_scales = nullptr;  // int8 q with the layer's epilogue: s_b of each row of q
};

constexpr int kWarps = 8;
constexpr int kUnits = 4;   // units of K in a warp's chunk: 64 contiguous bytes of each of its 16 rows
constexpr int kStages = 3;  // chunks a warp has in its shared-memory ring: 2 on their way while it computes one

using ptx::and_or;
using ptx::cp_async16;
using ptx::cp_async_commit;
using ptx::cp_async_wait;

// Unpacking (see the header comment): out[j] = (M_p + c_j, M_p + c_{j+8}) with p = j % 2,
// the codes taken from four shifted copies of the word (codes 2s, 2s+1 from src[s]).  With
// p alternating, every mma of a unit sees the same magics (out[2k] at p = 0, out[2k+1] at
// p = 1), so the correction mma's A operand is one constant for the whole kernel.
template <typename T> struct Ops;

template <> struct Ops<__half> {
  // fields at mantissa bits 4-5 and 6-7 under magics 64 and 16 (one ulp-step per code);
  // the small magics keep the mma's biased sums short
  static __host__ __device__ constexpr uint32_t magic(int p) { return p == 0 ? 0x54005400u : 0x4C004C00u; }
  static constexpr int kField = 4;  // bit of position 0's field
  static constexpr uint32_t kOne = 0x3C003C00u;
  static __device__ __forceinline__ void shifts(uint32_t w, uint32_t (&src)[4]) {
    src[0] = w << 4;
    src[1] = w;
    src[2] = w >> 4;
    src[3] = w >> 8;
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    ptx::mma_f16(c, a, b0, b1);
  }
};

template <> struct Ops<__nv_bfloat16> {
  // fields at mantissa bits 0-1 and 2-3 under magics 128 and 32
  static __host__ __device__ constexpr uint32_t magic(int p) { return p == 0 ? 0x43004300u : 0x42004200u; }
  static constexpr int kField = 0;
  static constexpr uint32_t kOne = 0x3F803F80u;
  static __device__ __forceinline__ void shifts(uint32_t w, uint32_t (&src)[4]) {
    src[0] = w;
    src[1] = w >> 4;
    src[2] = w >> 8;
    src[3] = w >> 12;
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    ptx::mma_bf16(c, a, b0, b1);
  }
};

// Position of code pair j (0..7) in its shifted copy, and the magic it sits under.
__host__ __device__ constexpr int code_pos(int j) { return j % 2; }

template <typename T>
__device__ __forceinline__ void dequant_biased(uint32_t w, uint32_t (&out)[8]) {
  using O = Ops<T>;
  uint32_t src[4];
  O::shifts(w, src);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int p = code_pos(j);
    out[j] = and_or(src[j / 2], 0x00030003u << (O::kField + 2 * p), O::magic(p));
  }
}

__device__ __forceinline__ float half_bits_to_float(uint16_t v) { return __half2float(__ushort_as_half(v)); }

// The scale of `row` in the per-row mode (kGroup = 0): fp16 scales or fp32 row_scales.
__device__ __forceinline__ float row_scale(const Linear2bitParams& p, int row) {
  return p.row_scales != nullptr ? __ldg(p.row_scales + row * p.row_scale_stride) : half_bits_to_float(__ldg(p.scales + row));
}

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
    // __ldg (L1-cached: every warp of the block rereads x) is safe here because the
    // variants that read x from global memory are never launched with PDL (launch_kernel),
    // so the kernel that wrote x has ended.  Through L2 only (__ldcg) M = 16 at 8192²
    // took 33 µs instead of 24.5 (H100, session 6).
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


// Shared memory of a block: each warp's ring of kStages chunk buffers (16·kTiles rows ×
// 16 words, swizzled: see Ring), then the block's group scales (and zeros) as fp16 bits
// [16·kTiles][G], then x (when staged).
constexpr int kRowWords = 4 * kUnits;
__host__ __device__ constexpr int ring_words(int tiles) { return kWarps * kStages * 16 * tiles * kRowWords; }

// A warp's ring of chunk buffers and the cp.async copies that fill it.  Piece u (16 bytes,
// one unit) of ring row r sits at piece u ^ ((r >> 1) & 3) of the row: lane (g, t) reads
// word t of unit j in rows g and g + 8 (+ 16·tile), whose banks 16·(g & 1) +
// 4·(j ^ ((g >> 1) & 3)) + t differ for the 32 lanes without pad words (three blocks of
// the two-tile kernel then fit an SM where padded rows allowed two).  Rows past N read row
// N - 1 (their sums are never stored); units past K are zero-filled.
template <int kTiles>
struct Ring {
  static constexpr int kRows = 16 * kTiles;
  static constexpr int kPieces = kRows * kUnits / 32;  // 16-byte copies of a chunk per lane
  static_assert(kUnits == 4, "a lane's pieces share one unit and one swizzle: lane % 4, (lane >> 3) & 3");
  // piece q of lane: row lane / 4 + 8q, unit lane % 4; its swizzle ((row >> 1) & 3) is the same for every q
  const int32_t* src_row[kPieces];
  uint32_t dst0;  // byte offset in a stage of piece 0 (piece q: + q · 8 rows)
  uint32_t base;  // shared address of the warp's ring
  int unit, warp, chunks, units;

  __device__ __forceinline__ Ring(const uint32_t* ring, int lane, int warp_, const GemvParams& p, int row0)
      : base(uint32_t(__cvta_generic_to_shared(ring))), unit(lane % kUnits), warp(warp_),
        chunks((p.K / 64 + kUnits - 1) / kUnits), units(p.K / 64) {
    const int r = lane / kUnits;
    dst0 = 4 * (r * kRowWords + 4 * (unit ^ ((r >> 1) & 3)));
    aim(p, row0, lane);
  }
  // The rows the copies read: the row tile starting at row0.
  __device__ __forceinline__ void aim(const GemvParams& p, int row0, int lane) {
#pragma unroll
    for (int q = 0; q < kPieces; ++q)
      src_row[q] = p.packed + int64_t(min(row0 + lane / kUnits + 8 * q, p.N - 1)) * (p.K / 16) + 4 * unit;
  }
  // Lane (g, t) reads word t of unit j in rows g + 8k: at (lane_word(g, t) ^ 4j) + 8k·kRowWords
  // ((g + 8k) >> 1 & 3 is g >> 1 & 3, and the XOR touches only the unit bits).
  static __device__ __forceinline__ int lane_word(int g, int t) { return g * kRowWords + 4 * ((g >> 1) & 3) + t; }
  static __device__ __forceinline__ const uint32_t* stage(const uint32_t* ring, int i) {
    return ring + (i % kStages) * kRows * kRowWords;
  }
  // The warp's i-th chunk into stage i % kStages, as one commit group (empty past the end:
  // the group count stays in step).
  __device__ __forceinline__ void issue(int i) const {
    const int c = warp + i * kWarps;
    if (c < chunks) {
      const bool ok = unit < units - c * kUnits;
      const uint32_t st = base + 4 * (i % kStages) * kRows * kRowWords + dst0;
#pragma unroll
      for (int q = 0; q < kPieces; ++q)
        cp_async16(st + q * 32 * kRowWords, ok ? src_row[q] + 16 * c : src_row[q], ok ? 16 : 0);
    }
    cp_async_commit();
  }
};

// The block's group scales (and zeros) into shared memory: its rows are one run of
// kRows·G halves (16-byte aligned), copied in the first commit group, beside chunk 0, so
// their DRAM latency is the one chunk 0 pays anyway.  The run is cut at the tensor's end.
template <bool kAsym>
__device__ __forceinline__ void copy_scales(uint16_t* ssc, const Linear2bitParams& p, int row0, int rows, int G) {
  const uint32_t dst = uint32_t(__cvta_generic_to_shared(ssc));
  const int64_t first = int64_t(row0) * G, total = int64_t(p.N) * G;
  for (int piece = threadIdx.x; piece < rows * G / 8; piece += blockDim.x) {
    const int64_t h = first + 8 * piece;
    const int bytes = 2 * int(max(int64_t(0), min(int64_t(8), total - h)));
    cp_async16(dst + 16 * piece, bytes ? p.scales + h : p.scales, bytes);
    if (kAsym) cp_async16(dst + 2 * rows * G + 16 * piece, bytes ? p.zeros + h : p.zeros, bytes);
  }
}

// Group scales a row: kGroup = 0 is the per-row mode (its scale is read at the end).
__host__ __device__ constexpr int groups_per_row(int K, int kGroup) { return kGroup == 0 ? 0 : K / kGroup; }

// Bytes of group scales (and zeros) of a block, rounded up to 16.
__host__ __device__ inline size_t gemv_scale_bytes(int K, int kGroup, bool asym, int tiles) {
  const size_t G = groups_per_row(K, kGroup);
  return (16 * tiles * G * 2 * (asym ? 2 : 1) + 15) & ~size_t(15);
}

// x is staged in shared memory (M rows of K) when it is at most this big; larger x is
// read from global memory one unit ahead.
constexpr int kXSmemMaxBytes = 32 * 1024;
inline bool x_in_smem(int M, int K) { return int64_t(M) * K * 2 <= kXSmemMaxBytes; }

size_t gemv_smem_bytes(int M, int K, int kGroup, bool asym, int tiles, bool xs) {
  return ring_words(tiles) * 4 + gemv_scale_bytes(K, kGroup, asym, tiles) + (xs ? size_t(M) * K * 2 : 0);
}

// kGroup: 64 or 128 (a scale per group of columns), 0 (one scale per row, applied at the end).
// kTiles: m16 row tiles a warp multiplies with the same x fragments (a block owns 16·kTiles rows).
// kXs: x staged in shared memory (only at NT = 1; a template flag so the M > 8 variants
// keep the registers of the global-x path).
template <typename T, int NT, bool kAsym, int kGroup, int kTiles, bool kXs>
__global__ void __launch_bounds__(kWarps * 32, NT == 2 ? 2 : kTiles == 1 ? 4 : 3)
    gemv_2bit_kernel(const GemvParams p) {
  using O = Ops<T>;
  constexpr bool kGrouped = kGroup != 0;
  constexpr int kRows = 16 * kTiles;  // rows of the block
  constexpr int kH = 2 * kTiles;      // rows of a lane: g + 8h
  // units between two corrections: a group, or (per-row mode) a chunk
  constexpr int kPerGroup = kGrouped ? kGroup / 64 : kUnits;
  extern __shared__ __align__(16) uint32_t smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int row0 = blockIdx.x * kRows;
  const int units = p.K / 64, G = groups_per_row(p.K, kGroup);
  const int chunks = (units + kUnits - 1) / kUnits;
  const uint32_t* ring = smem + warp * (kStages * kRows * kRowWords);
  const Ring<kTiles> copies(ring, lane, warp, p, row0);
  const int lw = Ring<kTiles>::lane_word(g, t);
  uint16_t* ssc = reinterpret_cast<uint16_t*>(smem + ring_words(kTiles));
  uint16_t* szr = ssc + kRows * G;
  // x in shared memory (rows of K elements) when small enough (the launch sized it so)
  constexpr bool xs = kXs;
  const T* xsm = reinterpret_cast<const T*>(reinterpret_cast<const char*>(ssc) +
                                            gemv_scale_bytes(p.K, kGroup, kAsym, kTiles));

  if constexpr (kGrouped) copy_scales<kAsym>(ssc, p, row0, kRows, G);
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) copies.issue(i);
  // Weights only up to here (launch.cuh): with PDL the predecessor (T_in) may still run.
  pdl_wait();
  if constexpr (xs) {  // all of x, in a commit group of its own after the first chunks (rows 16-byte aligned: checked at launch)
    const uint32_t dst = uint32_t(__cvta_generic_to_shared(xsm));
    const int per_row = p.K / 8;
    for (int piece = threadIdx.x; piece < p.M * per_row; piece += blockDim.x) {
      const int b = piece / per_row, off = piece - b * per_row;
      cp_async16(dst + 16 * piece, static_cast<const T*>(p.x) + int64_t(b) * p.x_row_stride + 8 * off, 16);
    }
    cp_async_commit();  // groups: chunk 0 (+ scales), chunk 1, x, then chunk i + 1 for i >= 2
  }

  const T* xptr[NT];
  bool xok[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int b = g + 8 * nt;
    xok[nt] = b < p.M;
    xptr[nt] = static_cast<const T*>(p.x) + int64_t(xok[nt] ? b : 0) * p.x_row_stride + 16 * t;
  }
  const int nc = warp < chunks ? (chunks - warp + kWarps - 1) / kWarps : 0;
  // x of unit columns [off, off + 64) for this lane (16 elements from 16·t), from shared
  // memory or global memory
  auto fetch_x = [&](int nt, int off, bool valid) {
    if constexpr (!xs) return load_x<T>(xptr[nt] + off, valid);
    XRaw r{make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
    if (valid) {
      const uint4* src = reinterpret_cast<const uint4*>(xsm + (g + 8 * nt) * p.K + off + 16 * t);
      r.v0 = src[0];
      r.v1 = src[1];
    }
    return r;
  };
  XRaw xr[NT];  // x of the next unit to multiply
  if constexpr (!xs) {  // from global memory: on its way while the first chunk arrives
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) xr[nt] = fetch_x(nt, 64 * kUnits * warp, xok[nt] && nc > 0);
  }
  if constexpr (xs) {
    cp_async_wait<0>();  // x (and the chunks before it) has landed ...
    __syncthreads();     // ... and every thread's pieces
  } else if constexpr (kGrouped) {
    cp_async_wait<kStages - 2>();  // group 0 (this thread's scale pieces) has landed ...
    __syncthreads();               // ... and every thread's
  }
  if constexpr (xs) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) xr[nt] = fetch_x(nt, 64 * kUnits * warp, xok[nt] && nc > 0);
  }

  // The mma multiplies biased codes M_p + c (see the header); the correction mma (same
  // x, constant A) serves every row tile.  The per-row mode corrects each chunk the same
  // way (s = 1; its scale comes at the end), so no long biased sum builds up.
  const uint32_t ac[4] = {O::magic(0), O::kOne, O::magic(1), O::kOne};
  float zrow[kH];
#pragma unroll
  for (int h = 0; h < kH; ++h)
    zrow[h] = !kGrouped && kAsym ? half_bits_to_float(__ldg(p.zeros + min(row0 + g + 8 * h, p.N - 1))) : 1.5f;
  float acc[kTiles][NT][4] = {};  // corrected sums, scaled in the grouped mode

  for (int i = 0; i < nc; ++i) {
    copies.issue(i + kStages - 1);
    cp_async_wait<kStages - 1>();  // chunk i has landed (this lane's copies; the x group only shifts which) ...
    __syncwarp();                  // ... and every lane's
    const int c = warp + i * kWarps, left = units - c * kUnits;
    const uint32_t* stage = Ring<kTiles>::stage(ring, i);
    float cu[kTiles][NT][4] = {}, cr[NT][4] = {};  // biased sums and corrections
    const bool more = i + 1 < nc;
#pragma unroll
    for (int j = 0; j < kUnits; ++j) {
      if (j >= left) break;  // the same for the whole warp
      // x of the unit after this one: the next in the chunk, or the first of the warp's next chunk
      const bool last = j + 1 == kUnits;
      const bool load = last ? more : j + 1 < left;
      const int next_off = 64 * kUnits * c + (last ? 64 * kUnits * kWarps : 64 * (j + 1));
      uint32_t bx[NT][8];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const XRaw next = fetch_x(nt, next_off, xok[nt] && load);
        x_pairs(xr[nt], bx[nt]);
        xr[nt] = next;
      }
#pragma unroll
      for (int k = 0; k < 4; ++k)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) O::mma(cr[nt], ac, bx[nt][2 * k], bx[nt][2 * k + 1]);
#pragma unroll
      for (int tile = 0; tile < kTiles; ++tile) {
        uint32_t wa[2][8];
#pragma unroll
        for (int h = 0; h < 2; ++h)
          dequant_biased<T>(stage[(lw ^ (4 * j)) + 8 * (2 * tile + h) * kRowWords], wa[h]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const uint32_t a[4] = {wa[0][2 * k], wa[1][2 * k], wa[0][2 * k + 1], wa[1][2 * k + 1]};
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) O::mma(cu[tile][nt], a, bx[nt][2 * k], bx[nt][2 * k + 1]);
        }
      }
      const bool closes = kGrouped ? j % kPerGroup == kPerGroup - 1 : j + 1 == kUnits || j + 1 >= left;
      if (closes) {  // a group's (per-row: a chunk's) sums are complete
        float sc[kH], zc[kH];
#pragma unroll
        for (int h = 0; h < kH; ++h) {
          sc[h] = 1.f;
          zc[h] = zrow[h];
          if constexpr (kGrouped) {
            const int grp = (c * kUnits + j) / kPerGroup;
            sc[h] = half_bits_to_float(ssc[(g + 8 * h) * G + grp]);
            if (kAsym) zc[h] = half_bits_to_float(szr[(g + 8 * h) * G + grp]);
          }
        }
#pragma unroll
        for (int tile = 0; tile < kTiles; ++tile)
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int h = 2 * tile + (e >> 1), col = e & 1;  // e0, e1: row g + 16·tile; e2, e3: + 8
              const float v = cu[tile][nt][e] - cr[nt][col];
              acc[tile][nt][e] = fmaf(sc[h], fmaf(-zc[h], cr[nt][2 + col], v), acc[tile][nt][e]);
              cu[tile][nt][e] = 0.f;
            }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) cr[nt][e] = 0.f;
      }
    }
    __syncwarp();  // every lane is done with this stage before it is refilled
  }
  // The next kernel (T_out) may be scheduled now, to be resident when this grid ends.  Not
  // earlier: a dependent scheduled early sits on SM slots while it waits (launch.cuh).
  pdl_launch_dependents();
  cp_async_wait<0>();

  // reduce the warps' partial sums (in the rings' space, now free)
  __syncthreads();
  float(*red)[kTiles][NT][4][32] = reinterpret_cast<float(*)[kTiles][NT][4][32]>(smem);
  static_assert(kWarps * kTiles * NT * 4 * 32 <= ring_words(kTiles), "the reduction reuses the rings");
#pragma unroll
  for (int tile = 0; tile < kTiles; ++tile)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) red[warp][tile][nt][e][lane] = acc[tile][nt][e];
  __syncthreads();
  if (warp >= kTiles) return;  // warp `tile` writes that tile's rows
  const int tile = warp;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float v = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) v += red[w][tile][nt][e][lane];
      const int row = row0 + g + 8 * (2 * tile + (e >> 1)), b = 2 * t + (e & 1) + 8 * nt;
      if (row >= p.N || b >= p.M) continue;
      if (!kGrouped) v *= row_scale(p, row);  // one scale per row
      if (p.bias != nullptr) v += to_float(load_cg(static_cast<const T*>(p.bias) + row));
      static_cast<T*>(p.y)[int64_t(b) * p.y_row_stride + row] = from_float<T>(v);
    }
}

// ---------------------------------------------------------------------------------------
// The fixed-point-x GEMV (M <= 8 and x staged in shared memory; Linear2bitParams::fixed_x).
//
// Each block turns x into 15-bit fixed point per row, X = rint(x · 2^e_b) with
// 2^13 <= max|X| < 2^14 (e_b from the row's absmax, so the scaling is exact and elements
// within 2^6 (bf16) / 2^9 (fp16) of the row's largest are exact; the rest round at 2^-15
// of the row max), and stores it as two signed bytes, X = 256·hi + lo with lo in
// [-128, 128) and |hi| <= 64.  The codes c (0..3) are then the A operand of mma.m16n8k32
// as they are, no bias and no float: (w >> 2s) & 0x03030303 puts codes s, s+4, s+8, s+12
// of a word in the four bytes of a register (one shift and one and per 4 codes, against
// one lop3 per 2 codes in the float kernel), and u8·s8 mmas give exact int32 sums Σc·hi
// and Σc·lo.  A group's value is
//     s · (256·Σc·hi + Σc·lo − z·ΣX) · 2^-e_b
// with ΣX (the group's sum of X, per batch row) from the prologue: no correction mma.
//
// B's columns.  M <= 4 ("paired"): column 2b is row b's hi plane and column 2b + 1 its
// lo plane, so one mma per 32 k gives both sums, in the same lane: C (row, 2t) = Σc·hi
// and (row, 2t + 1) = Σc·lo of batch row t.  M = 5..8 ("split"): column b is row b, one
// mma per plane into two accumulator sets.  Both planes being signed is what lets them
// share an mma (its B type is one per instruction); it costs x one bit against an
// unsigned low byte.
//
// x in shared memory, per batch row b (rows xq_row_bytes(K) apart, 16 bytes of pad so
// that the two rows of an 8-lane phase hit different banks), 32 bytes per slice of 16
// columns [16q, 16q + 16):
//   bytes  0..15  hi: register s (s = 0..3) holds columns 16q + {s, s+4, s+8, s+12}
//   bytes 16..31  lo: the same order
// which is the order of the A registers, so lane (g, t) loads its B fragments of unit u
// (slice 4u + t: the word t it multiplies) with 16-byte loads and no shuffling (paired:
// the one plane of its column; split: both).
// k-slots of one mma (pair pp = 0, 1 of a unit): a0 = register 2pp of row g's word,
// a2 = register 2pp + 1, a1 / a3 the same of row g + 8; b0 / b1 = registers 2pp, 2pp + 1
// of x's slice.
//
// The same kernel with T = int8_t is the W1.58A8 decode GEMV (ternary_int8_gemv_launch):
// x is already int8 (q) and is not staged: each lane loads its 16 bytes of a unit (row g,
// columns 64u + 16t ..) from global memory one unit ahead, puts them in the plane's order
// in registers (int8_plane) and adds them to its Σq, which the quad's lanes and the warps
// sum at the end.  So there is no prologue and no limit on M·K: one launch for any K (a
// staged q needed one launch per 32 KB of it: at M = 16, 8192² 39.4 µs against 18.8 on
// the H100, session 12).  One mma per 32 k, and the output is the exact int32
// Σ (c − 1)·q = Σ c·q − Σ q (code = trit + 1), summed over the warps as integers.  It
// takes up to 16 rows (kNT = 2): rows 8..15 are a second n8 tile, one more mma on the
// same unpacked A registers, so the weights are still read and unpacked once.
//
// kA8 (ternary_a8_gemv_launch): the W1.58A8 layer's whole decode step in this kernel: x in
// fp16/bf16 is staged as in the fixed-point mode, each row quantized in the prologue as
// the reference does (s_b = absmax / Q, q = round half-even(x / s_b) clamped to ±Q, every
// float32 step correctly rounded), q stored as the int8 mode's plane in the first 16
// bytes of each 32-byte slice, and the epilogue writes (Σ (c − 1)·q · s_b) · scale_n in
// x's dtype: the integers and float32 steps of quantize_rows + this GEMV + scale_rows_cols
// (quipkern/triton/linear_ternary_a8.py), in one launch.  A row with a NaN or an infinity
// gets s_b = NaN, so its outputs are NaN.
__host__ __device__ inline int xq_row_bytes(int K) { return 2 * K + 16; }
__host__ __device__ constexpr int x16_sums(int K, int kGroup) { return kGroup == 0 ? 1 : K / kGroup; }
constexpr int kXRows = 8;  // batch rows of one n8 tile of x: the float modes take M <= 8
// The int8 mode takes two n8 tiles (kNT = 2, M <= 16): both multiply the same unpacked
// weight registers, so 9-16 rows of q still read the weights once.
static_assert(kTernaryInt8GemvMaxM <= 2 * kXRows, "the int8 GEMV is this kernel");
constexpr int kBadRow = 1 << 20;  // e_b of a row with a NaN or an infinity: its outputs are NaN

// staged: rows of x in shared memory (0 for int8 q, read from global memory)
size_t gemv_x16_smem_bytes(int staged, int K, int kGroup, bool asym, int tiles, int nt = 1) {
  const int xr = kXRows * nt;  // ΣX [xr][groups], warp maxima [kWarps][xr], e [xr]
  return ring_words(tiles) * 4 + gemv_scale_bytes(K, kGroup, asym, tiles) + size_t(staged) * xq_row_bytes(K) +
         4 * (xr * x16_sums(K, kGroup) + kWarps * xr + xr);
}

template <typename T> struct Pair;
template <> struct Pair<__half> {
  using T2 = __half2;
  static __device__ __forceinline__ float2 to_float2(uint32_t v) { return __half22float2(*reinterpret_cast<__half2*>(&v)); }
};
template <> struct Pair<__nv_bfloat16> {
  using T2 = __nv_bfloat162;
  static __device__ __forceinline__ float2 to_float2(uint32_t v) {
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
  }
};

// Largest |x| of 8 elements as (nonnegative) float bits; a NaN compares above infinity.
template <typename T>
__device__ __forceinline__ uint32_t absmax_bits(const uint4& v) {
  using T2 = typename Pair<T>::T2;
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
  T2 m = *reinterpret_cast<const T2*>(&w[0]);
  m = __habs2(m);
#pragma unroll
  for (int i = 1; i < 4; ++i) m = __hmax2_nan(m, __habs2(*reinterpret_cast<const T2*>(&w[i])));
  const float2 f = Pair<T>::to_float2(*reinterpret_cast<uint32_t*>(&m));
  if (f.x != f.x || f.y != f.y) return 0x7fc00000u;
  return __float_as_uint(fmaxf(f.x, f.y));
}

// One slice of x (16 elements of T at slot) in place as its hi and lo planes (layout
// above); returns ΣX of the slice.  f = bits of (x·2^e + 1.5·2^23 + 128): the float unit
// rounds x·2^e to an integer (half to even: the offset is an even integer) in the low
// mantissa bits, which hold X + 128 + 2^22; byte 1 is then floor((X + 128) / 256) = hi
// and byte 0 is lo + 128.
template <typename T>
__device__ __forceinline__ int fixed_point_slice(uint4* slot, float scale) {
  const uint4 v0 = slot[0], v1 = slot[1];
  const uint32_t w[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
  uint32_t f[16];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float2 xf = Pair<T>::to_float2(w[i]);
    f[2 * i] = __float_as_uint(fmaf(xf.x, scale, 12583040.f));
    f[2 * i + 1] = __float_as_uint(fmaf(xf.y, scale, 12583040.f));
  }
  uint32_t hi[4], lo[4], acc = 0;
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const uint32_t a = __byte_perm(f[r], f[r + 4], 0x5140), c = __byte_perm(f[r + 8], f[r + 12], 0x5140);
    lo[r] = __byte_perm(a, c, 0x5410) ^ 0x80808080u;
    hi[r] = __byte_perm(a, c, 0x7632);
  }
#pragma unroll
  for (int i = 0; i < 16; ++i) acc += f[i];
  slot[0] = make_uint4(hi[0], hi[1], hi[2], hi[3]);
  slot[1] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
  return int(acc - 16u * 0x4b400080u);  // exact: the offsets cancel mod 2^32 and |ΣX| < 2^18
}

// 16 bytes of int8 q in the plane's order (a 4×4 byte transpose: register r holds columns
// r, r+4, r+8, r+12); adds their Σq to sum.
__device__ __forceinline__ uint4 int8_plane(const uint4& v, int& sum) {
  const uint32_t lo01 = __byte_perm(v.x, v.y, 0x5140), lo23 = __byte_perm(v.z, v.w, 0x5140);
  const uint32_t hi01 = __byte_perm(v.x, v.y, 0x7362), hi23 = __byte_perm(v.z, v.w, 0x7362);
  sum = __dp4a(int(v.x), 0x01010101, __dp4a(int(v.y), 0x01010101, __dp4a(int(v.z), 0x01010101,
                                                                         __dp4a(int(v.w), 0x01010101, sum))));
  return make_uint4(__byte_perm(lo01, lo23, 0x5410), __byte_perm(lo01, lo23, 0x7632), __byte_perm(hi01, hi23, 0x5410),
                    __byte_perm(hi01, hi23, 0x7632));
}


// round_half_even(x / s) clamped to ±qmax, as if x / s were correctly rounded: from x · r
// (r = 1/s rounded; |x·r − x/s| <= 2^-23·|x/s| <= 1.6e-5 for |x/s| <= 128), which rounds
// to the same integer unless x/s is within that of a half-integer: then the division, as
// also for a NaN t (r = inf for s < 2^-128, or s = NaN for a bad row, whose NaN gives
// -qmax: never an undefined conversion).
__device__ __forceinline__ int quantize_one(float x, float s, float r, float qmax) {
  float t = x * r, q = rintf(t);
  if (!(fabsf(t - q) <= 0.4999f)) q = rintf(__fdiv_rn(x, s));
  return int(fminf(fmaxf(q, -qmax), qmax));
}

// One slice of x (16 elements of T at slot) quantized in place to the int8 plane (the
// int8 mode's order) in slot[0]; returns Σq of the slice.  s may be NaN (a bad row).
template <typename T>
__device__ __forceinline__ int quantize_slice(uint4* slot, float s, float r, float qmax) {
  const uint4 v0 = slot[0], v1 = slot[1];
  const uint32_t w[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
  int q[16], sum = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float2 xf = Pair<T>::to_float2(w[i]);
    q[2 * i] = quantize_one(xf.x, s, r, qmax);
    q[2 * i + 1] = quantize_one(xf.y, s, r, qmax);
  }
  uint32_t plane[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {  // register j: columns j, j + 4, j + 8, j + 12
    plane[j] = (uint32_t(q[j]) & 0xffu) | (uint32_t(q[j + 4]) & 0xffu) << 8 | (uint32_t(q[j + 8]) & 0xffu) << 16 |
               uint32_t(q[j + 12]) << 24;
    sum += q[j] + q[j + 4] + q[j + 8] + q[j + 12];
  }
  slot[0] = make_uint4(plane[0], plane[1], plane[2], plane[3]);
  return sum;
}

// TY: y's type (and bias's): T, except for int8 q: int32 (the sums) or fp16 / bf16 (the
// W1.58A8 layer's epilogue, as kA8's with s_b from p.act_scales).
template <typename T, bool kAsym, int kGroup, int kTiles, bool kA8 = false, int kNT = 1, typename TY = T>
__global__ void __launch_bounds__(kWarps * 32, kTiles == 1 ? 4 : 3)
    gemv_2bit_x16_kernel(const GemvParams p) {
  constexpr bool kGrouped = kGroup != 0;
  constexpr int kRows = 16 * kTiles;
  constexpr int kH = 2 * kTiles;                         // rows of a lane: g + 8h
  constexpr int kPerGroup = kGrouped ? kGroup / 64 : 1;  // units a group
  extern __shared__ __align__(16) uint32_t smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  int row0 = blockIdx.x * kRows;
  const int units = p.K / 64, G = groups_per_row(p.K, kGroup), S = x16_sums(p.K, kGroup);
  const int chunks = (units + kUnits - 1) / kUnits;
  const uint32_t* ring = smem + warp * (kStages * kRows * kRowWords);
  Ring<kTiles> copies(ring, lane, warp, p, row0);
  const int lw = Ring<kTiles>::lane_word(g, t);
  uint16_t* ssc = reinterpret_cast<uint16_t*>(smem + ring_words(kTiles));
  uint16_t* szr = ssc + kRows * G;
  char* xq = reinterpret_cast<char*>(ssc) + gemv_scale_bytes(p.K, kGroup, kAsym, kTiles);
  constexpr bool kInt8 = sizeof(T) == 1;  // q int8 in, exact int32 out (see above)
  constexpr bool kIntX = kInt8 || kA8;    // x as one int8 plane: exact int32 sums
  static_assert(!kIntX || (!kGrouped && !kAsym), "the int8 modes have no group scales");
  static_assert(!(kInt8 && kA8), "kA8 takes fp16/bf16 x");
  static_assert(kNT == 1 || kInt8, "two n8 tiles of x (M <= 16): the int8 mode only");
  constexpr int kXr = kXRows * kNT;  // batch rows the block's ΣX, maxima and exponents hold
  const int xrow = xq_row_bytes(p.K);
  int* sx = reinterpret_cast<int*>(xq + (kInt8 ? 0 : p.M) * xrow);  // ΣX [kXr][S]
  uint32_t* wmax = reinterpret_cast<uint32_t*>(sx + kXr * S);
  int* ex = reinterpret_cast<int*>(wmax + kWarps * kXr);

  // The scales are a commit group of their own, ahead of the chunks, so that the block
  // can wait for them without waiting for its first chunks: x is prepared (plain loads,
  // it is in L2) while those are on their way.
  if constexpr (kGrouped) {
    copy_scales<kAsym>(ssc, p, row0, kRows, G);
    cp_async_commit();
  }
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) copies.issue(i);
  pdl_wait();  // weights only up to here (launch.cuh)
  if constexpr (!kInt8) {  // x as it is into its place in xq (slice q of row b at b·xrow + 32q)
    constexpr int kPer = 16 / sizeof(T);                        // elements a 16-byte piece
    constexpr int kMaxPieces = kXSmemMaxBytes / 16 / (kWarps * 32);  // a thread's: the launch keeps x <= 32 KB
    const int per_row = p.K / kPer, total = p.M * per_row;
    constexpr int kBatch = 4;  // loads in flight a thread, then their stores
    static_assert(kMaxPieces % kBatch == 0, "x pieces come in batches");
#pragma unroll
    for (int k0 = 0; k0 < kMaxPieces; k0 += kBatch) {
      if (threadIdx.x + k0 * kWarps * 32 >= total) break;
      uint4 v[kBatch];
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        const int piece = threadIdx.x + (k0 + k) * kWarps * 32, b = piece / per_row;
        if (piece < total)
          v[k] = load_cg16(static_cast<const T*>(p.x) + int64_t(b) * p.x_row_stride + kPer * (piece - b * per_row));
      }
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        const int piece = threadIdx.x + (k0 + k) * kWarps * 32, b = piece / per_row;
        if (piece < total) *reinterpret_cast<uint4*>(xq + b * xrow + 16 * (piece - b * per_row)) = v[k];
      }
    }
  }
  for (int i = threadIdx.x; i < kXr * S; i += blockDim.x) sx[i] = 0;  // batch rows >= M stay 0
  if constexpr (kGrouped) cp_async_wait<kStages - 1>();  // the scales' group (this thread's pieces) ...
  __syncthreads();                                       // ... and every thread's; x staged

  if constexpr (!kInt8) {  // e_b per row from its absmax
    for (int b = 0; b < p.M; ++b) {
      uint32_t m = 0;
      for (int off = threadIdx.x; off < p.K / 8; off += blockDim.x)
        m = max(m, absmax_bits<T>(*reinterpret_cast<const uint4*>(xq + b * xrow + 16 * off)));
      m = __reduce_max_sync(0xffffffffu, m);
      if (lane == 0) wmax[warp * kXr + b] = m;
    }
    __syncthreads();
    if (threadIdx.x < p.M) {
      uint32_t m = 0;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) m = max(m, wmax[w * kXr + threadIdx.x]);
      if constexpr (kA8) {  // s_b = absmax / Q (1 for a zero row, NaN for a bad one), as float bits
        const float s = m >= 0x7f800000u ? __uint_as_float(0x7fc00000u) : m == 0 ? 1.f : __fdiv_rn(__uint_as_float(m), p.act_qmax);
        ex[threadIdx.x] = __float_as_int(s);
      } else {
        // max·2^e in [2^13, 2^14): e = 13 − exponent(max); capped so that 2^e stays a normal
        // float (only rows below 2^-113 lose bits).  A zero row takes e = 0.
        ex[threadIdx.x] = m >= 0x7f800000u ? kBadRow : m == 0 ? 0 : min(13 - (int(m >> 23) - 127), 126);
      }
    }
    __syncthreads();
  }

  // x's planes in place of x: slice q of row b (16 elements) by lane q % 32 of warp
  // (q / 32) % kWarps, and ΣX of each group (per-row mode: of the row) by the lanes that
  // hold its slices.
  if constexpr (!kInt8) for (int b = 0; b < p.M; ++b) {
    float scale = 0.f;
    if constexpr (kA8) scale = __int_as_float(ex[b]);
    else scale = ex[b] == kBadRow ? 0.f : __uint_as_float(uint32_t(127 + ex[b]) << 23);
    const int slices = p.K / 16;
    for (int q0 = 32 * warp; q0 < slices; q0 += 32 * kWarps) {  // the same trip count for a whole warp
      const int q = q0 + lane;
      int sum = 0;
      if (q < slices) {
        uint4* slot = reinterpret_cast<uint4*>(xq + b * xrow + 32 * q);
        if constexpr (kA8)
          sum = quantize_slice<T>(slot, scale, __frcp_rn(scale), p.act_qmax);
        else
          sum = fixed_point_slice<T>(slot, scale);
      }
      if constexpr (kGrouped) {  // a group's kGroup / 16 slices sit in consecutive lanes (K/16 is a multiple of them)
#pragma unroll
        for (int o = 1; o < kGroup / 16; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (q < slices && lane % (kGroup / 16) == 0) sx[b * S + q / (kGroup / 16)] = sum;
      } else {
        sum = __reduce_add_sync(0xffffffffu, sum);
        if (lane == 0) atomicAdd(&sx[b * S], sum);
      }
    }
  }
  __syncthreads();

  // The main loop, for paired or split columns (see the header).  A chunk always runs all
  // kUnits units, without a branch between them: units past K have zero codes (the ring
  // zero-fills them) and read x of the last unit, and only their group closes are skipped.
  const bool paired = !kIntX && p.M <= kXRows / 2;
  constexpr int kSlice = 32;  // bytes of a slice in xq
  float acc[kNT][kTiles][4] = {};  // [n8 tile of x]
  auto main_loop = [&](auto paired_c) {
    constexpr bool kPaired = decltype(paired_c)::value;
    constexpr bool kSplitLo = !kIntX && !kPaired;  // a second plane, a second mma
    constexpr bool kSecond = kSplitLo || kNT == 2;  // a second mma per A: lo plane, or batch rows 8..15
    const int xb = kPaired ? g >> 1 : g;            // lane's batch row in B (its column g)
    const bool xok = xb < p.M;
    [[maybe_unused]] const char* xl = xq + (xok ? xb : 0) * xrow + kSlice * t + (kPaired ? 16 * (g & 1) : 0);  // + 4·kSlice·u
    // open group: Σc·hi (paired: and Σc·lo); split: clo = Σc·lo; int8 with kNT = 2: clo =
    // the sums of batch rows 8..15
    int chi[kTiles][4] = {}, clo[kTiles][4] = {};
    // int8: lane (g, t) loads row 8·nt + g, columns 64u + 16t .. + 16 of unit u (n8 tile nt)
    [[maybe_unused]] const int8_t* qg[kNT];
    [[maybe_unused]] bool qok[kNT];
    [[maybe_unused]] uint4 qnext[kNT];  // the next unit's, loaded while this one is multiplied
    [[maybe_unused]] int qsum[kNT] = {};
    auto load_q = [&](int u) {
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
        qnext[nt] = qok[nt] && u < units ? load_cg16(qg[nt] + 64 * u) : make_uint4(0, 0, 0, 0);
    };
    if constexpr (kInt8) {
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        const int b = kXRows * nt + g;
        qok[nt] = b < p.M;
        qg[nt] = static_cast<const int8_t*>(p.x) + int64_t(qok[nt] ? b : 0) * p.x_row_stride + 16 * t;
      }
      load_q(warp * kUnits);
    }
    const int nc = warp < chunks ? (chunks - warp + kWarps - 1) / kWarps : 0;
    for (int i = 0; i < nc; ++i) {
      copies.issue(i + kStages - 1);
      cp_async_wait<kStages - 1>();  // chunk i has landed (this lane's copies) ...
      __syncwarp();                  // ... and every lane's
      const int c = warp + i * kWarps, left = units - c * kUnits;
      const uint32_t* stage = Ring<kTiles>::stage(ring, i);
#pragma unroll
      for (int j = 0; j < kUnits; ++j) {
        const int u = c * kUnits + j;
        uint4 bh = make_uint4(0, 0, 0, 0), bl = bh;
        if constexpr (kInt8) {  // zeros past K and past M: they add nothing to Σc·q or Σq
          [[maybe_unused]] const uint4 q0 = qnext[0], q1 = qnext[kNT - 1];
          load_q(j + 1 < kUnits ? u + 1 : (c + kWarps) * kUnits);
          bh = int8_plane(q0, qsum[0]);
          if constexpr (kNT == 2) bl = int8_plane(q1, qsum[1]);
        } else if (xok) {
          const uint4* src = reinterpret_cast<const uint4*>(xl + 4 * kSlice * min(u, units - 1));
          bh = src[0];
          if constexpr (kSplitLo) bl = src[1];
        }
        const uint32_t xh[4] = {bh.x, bh.y, bh.z, bh.w}, xo[4] = {bl.x, bl.y, bl.z, bl.w};
#pragma unroll
        for (int tile = 0; tile < kTiles; ++tile) {
          uint32_t wa[2][4];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const uint32_t w = stage[(lw ^ (4 * j)) + 8 * (2 * tile + h) * kRowWords];
#pragma unroll
            for (int r = 0; r < 4; ++r) wa[h][r] = (w >> (2 * r)) & 0x03030303u;
          }
#pragma unroll
          for (int pp = 0; pp < 2; ++pp) {
            const uint32_t a[4] = {wa[0][2 * pp], wa[1][2 * pp], wa[0][2 * pp + 1], wa[1][2 * pp + 1]};
            ptx::mma_u8s8(chi[tile], a, xh[2 * pp], xh[2 * pp + 1]);
            if constexpr (kSecond) ptx::mma_u8s8(clo[tile], a, xo[2 * pp], xo[2 * pp + 1]);
          }
        }
        if (kGrouped && j % kPerGroup == kPerGroup - 1 && j < left) {  // a group is complete
          const int grp = u / kPerGroup;
          float sc[kH], zc[kH];
#pragma unroll
          for (int h = 0; h < kH; ++h) {
            sc[h] = half_bits_to_float(ssc[(g + 8 * h) * G + grp]);
            zc[h] = kAsym ? half_bits_to_float(szr[(g + 8 * h) * G + grp]) : 1.5f;
          }
          // |Σc·X| < 3·2^14·128 < 2^23: exact as a float too
          if constexpr (kPaired) {  // lane's batch row t: elements 2h' (hi) and 2h' + 1 (lo) of row g + 8h'
            const float sxc = float(sx[t * S + grp]);
#pragma unroll
            for (int tile = 0; tile < kTiles; ++tile)
#pragma unroll
              for (int e = 0; e < 4; e += 2) {
                const int h = 2 * tile + (e >> 1), ci = chi[tile][e] * 256 + chi[tile][e + 1];
                acc[0][tile][e] = fmaf(sc[h], fmaf(-zc[h], sxc, float(ci)), acc[0][tile][e]);
                chi[tile][e] = chi[tile][e + 1] = 0;
              }
          } else {  // element e: batch row 2t + (e & 1)
            const float sxc[2] = {float(sx[(2 * t) * S + grp]), float(sx[(2 * t + 1) * S + grp])};
#pragma unroll
            for (int tile = 0; tile < kTiles; ++tile)
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                const int h = 2 * tile + (e >> 1), ci = chi[tile][e] * 256 + clo[tile][e];
                acc[0][tile][e] = fmaf(sc[h], fmaf(-zc[h], sxc[e & 1], float(ci)), acc[0][tile][e]);
                chi[tile][e] = clo[tile][e] = 0;
              }
          }
        }
      }
      __syncwarp();  // every lane is done with this stage before it is refilled
    }
    if constexpr (kInt8) {  // Σq of this warp's units: the quad's lanes, then the warps (sx is 0 from the prologue)
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        int sum = qsum[nt];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        if (t == 0 && qok[nt]) atomicAdd(&sx[kXRows * nt + g], sum);
      }
    }
    if constexpr (!kGrouped) {  // the row is one group (int sums below 3·2^14·K: K <= 16384 here); z·ΣX comes once, after the warps' sum
#pragma unroll
      for (int tile = 0; tile < kTiles; ++tile)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if constexpr (kIntX) {  // int bits: the warps' sums are added as integers (exact for any K)
            acc[0][tile][e] = __int_as_float(chi[tile][e]);
            if constexpr (kNT == 2) acc[1][tile][e] = __int_as_float(clo[tile][e]);
          } else if constexpr (kPaired) {
            acc[0][tile][e] = e & 1 ? 0.f : fmaf(256.f, float(chi[tile][e]), float(chi[tile][e + 1]));
          } else {
            acc[0][tile][e] = fmaf(256.f, float(chi[tile][e]), float(clo[tile][e]));
          }
        }
    }
  };
  // Persistent blocks (the per-row modes with x staged; launch_gemv may cut their grid to
  // one wave, kPersistWaves*): a block takes row tiles blockIdx.x, + gridDim.x, ... with x
  // prepared once.  With one block a tile the loop runs once.  At a
  // tile's end each warp starts the next tile's first two chunks (stages 0 and 1) before the
  // reduction and the epilogue, which then use stage 2 of every warp's ring (free until
  // the next tile's first iteration, after the barrier below).  The main loop is the
  // one-tile kernel's: nothing of this is live across it (more registers there made the
  // compiler recompute addresses in the loop: +44 % instructions a chunk, session 18).
  constexpr bool kPersist = !kGrouped && !kInt8;
  const int ntiles = (p.N + kRows - 1) / kRows;
  for (int tile_id = blockIdx.x;;) {
    if constexpr (kIntX) {
      main_loop(std::false_type{});
    } else {
      if (paired)
        main_loop(std::true_type{});
      else
        main_loop(std::false_type{});
    }
    const int next = tile_id + gridDim.x;
    const bool more = kPersist && next < ntiles;
    if (!more) pdl_launch_dependents();
    cp_async_wait<0>();  // only empty groups are pending here
    if (more) {
      copies.aim(p, next * kRows, lane);
#pragma unroll
      for (int i = 0; i < kStages - 1; ++i) copies.issue(i);
    }

    // reduce the warps' partial sums: one tile, in the rings' space (free now); persistent,
    // in stage 2 of each warp's ring
    constexpr int kRed = kNT * kTiles * 4 * 32;
    constexpr int kRedStride = kPersist ? kStages * kRows * kRowWords : kRed;
    static_assert(kWarps * kRed <= ring_words(kTiles) && kRed <= kRows * kRowWords, "the reduction reuses the rings");
    static_assert(kStages == 3, "persistent blocks reduce in stage 2");
    float* red = reinterpret_cast<float*>(smem) + (kPersist ? 2 * kRows * kRowWords : 0);
    if constexpr (!kPersist) __syncthreads();  // every warp is done with the rings
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int tile = 0; tile < kTiles; ++tile)
#pragma unroll
        for (int e = 0; e < 4; ++e) red[warp * kRedStride + ((nt * kTiles + tile) * 4 + e) * 32 + lane] = acc[nt][tile][e];
    __syncthreads();
    if (warp < kNT * kTiles) {  // warp nt·kTiles + tile writes that tile's rows for that n8 tile of x
      const int tile = warp % kTiles, nt = warp / kTiles;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float v = 0.f;
        int vi = 0;  // kIntX
#pragma unroll
        for (int w = 0; w < kWarps; ++w) {
          const float r = red[w * kRedStride + ((nt * kTiles + tile) * 4 + e) * 32 + lane];
          if constexpr (kIntX) vi += __float_as_int(r);
          else v += r;
        }
        if (paired && (e & 1)) continue;  // paired: element 2h' holds batch row t
        const int row = row0 + g + 8 * (2 * tile + (e >> 1)), b = kXRows * nt + (paired ? t : 2 * t + (e & 1));
        if (row >= p.N || b >= p.M) continue;
        if constexpr (kInt8 && std::is_same<TY, int32_t>::value) {  // |Σc·q| <= 3·127·K < 2^31 (K <= 2^22)
          static_cast<int32_t*>(p.y)[int64_t(b) * p.y_row_stride + row] = vi - sx[b];
        } else if constexpr (kIntX) {  // scale_rows_cols's float32 steps: (acc · s_b) · scale_n, then + bias
          const float sb = kA8 ? __int_as_float(ex[b]) : load_cg(p.act_scales + b);
          float r = (float(vi - sx[b]) * sb) * row_scale(p, row);
          if (p.bias != nullptr) r += to_float(load_cg(static_cast<const TY*>(p.bias) + row));
          static_cast<TY*>(p.y)[int64_t(b) * p.y_row_stride + row] = from_float<TY>(r);
        } else {
          const int eb = ex[b];
          if (!kGrouped) {
            const float z = kAsym ? half_bits_to_float(__ldg(p.zeros + row)) : 1.5f;
            v = (v - z * float(sx[b])) * row_scale(p, row);
          }
          v = eb == kBadRow ? __uint_as_float(0x7fc00000u) : v * __uint_as_float(uint32_t(127 - eb) << 23);  // · 2^-e_b
          if (p.bias != nullptr) v += to_float(load_cg(static_cast<const T*>(p.bias) + row));
          static_cast<T*>(p.y)[int64_t(b) * p.y_row_stride + row] = from_float<T>(v);
        }
      }
    }
    if (!more) break;
    __syncthreads();  // the reduction is read before stage 2 is refilled
    tile_id = next;
    row0 = next * kRows;
  }
}

// Where persistent blocks pay (H100, session 18, M = 1, one scale a row; µs with / without).
// The fixed-point GEMV's prologue is cheap, so the gain is the second, partial wave it
// saves, and past two waves the static split of tiles (3 for some blocks, 2 for others)
// costs more than that: 14336×4096 (1.13 waves) 12.8 / 13.4, 28672×8192 (2.26) 29.8 / 29.0.
// The W1.58A8 step quantizes all of x in every block: 14.9 -> 12.7 and 33.0 -> 29.6.
constexpr int kPersistWavesFixedX = 2;
constexpr int kPersistWavesA8 = 1 << 20;  // any number of waves: always

// Whether persistent instances get a grid of at most one wave (QUIPKERN_GEMV_PERSISTENT=0
// in the environment: one block a tile, e.g. to measure what it gains; read once).
inline bool persistent_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("QUIPKERN_GEMV_PERSISTENT");
    return !(e != nullptr && e[0] == '0');
  }();
  return on;
}

// One launch of a GEMV kernel instance with `smem` bytes of shared memory.  xs: the
// instance copies x to shared memory with cp.async after pdl_wait (only those may be
// PDL-launched; the others read x with __ldg, see load_x).  persist_waves: the instance
// loops over row tiles (gemv_2bit_x16_kernel's kPersist), and its grid is cut to the
// blocks that the GPU holds at once where it has fewer than persist_waves times that many
// tiles (0: never).
template <auto kKernel>
Status launch_gemv(const GemvParams& p, size_t smem, int tiles, bool xs, cudaStream_t stream,
                   int persist_waves = 0) {
  // Above 48 KB the kernel needs the attribute, set once per device and size (a host call
  // on every launch would cost more than the kernel at M = 1 in eager mode).
  static int allowed[64] = {};  // per device: the largest size set so far
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return Status::kCudaError;
  if (smem > 48 * 1024 && int(smem) > allowed[dev]) {
    if (cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) != cudaSuccess)
      return Status::kUnsupported;  // more group scales than shared memory holds
    allowed[dev] = int(smem);
  }
  const int blocks = (p.N + 16 * tiles - 1) / (16 * tiles);
  // PDL only for the variants that copy x to shared memory with cp.async (through L2,
  // after pdl_wait).  And not for a long single-wave grid (K >= 16384, at most two blocks
  // an SM): its blocks, placed early beside the predecessor's, can end up three on some
  // SMs and one on others, and those SMs set the time (H100, session 6: 8192×28672 38.8 ->
  // 44.6 µs, while 8192², 4096², 14336×4096 and 28672×8192 gained ~2 µs each).
  const bool pdl = p.pdl && xs && (p.K < 16384 || blocks > 2 * sm_count(dev));
  int grid = blocks;
  if (persist_waves > 0 && persistent_enabled()) {
    static int known_smem[64] = {}, known_blocks[64] = {};  // per device: blocks an SM at that size
    if (known_smem[dev] != int(smem)) {
      int n = 0;
      if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kKernel, kWarps * 32, smem) != cudaSuccess) n = 0;
      known_blocks[dev] = n;
      known_smem[dev] = int(smem);
    }
    const int slots = known_blocks[dev] * sm_count(dev);
    if (slots > 0 && blocks < int64_t(persist_waves) * slots) grid = std::min(blocks, slots);
  }
  const cudaError_t e = launch_on(dev, pdl, kKernel, dim3(grid), dim3(kWarps * 32), smem, stream, p);
  return e == cudaSuccess && cudaGetLastError() == cudaSuccess ? Status::kOk : Status::kCudaError;
}

template <typename T, int NT, bool kAsym, int kGroup, int kTiles, bool kXs>
Status launch_kernel(const GemvParams& p, cudaStream_t stream) {
  if constexpr (kXs) {
    if (p.fixed_x)
      return launch_gemv<gemv_2bit_x16_kernel<T, kAsym, kGroup, kTiles>>(
          p, gemv_x16_smem_bytes(p.M, p.K, kGroup, kAsym, kTiles), kTiles, true, stream,
          kGroup == 0 ? kPersistWavesFixedX : 0);
  }
  return launch_gemv<gemv_2bit_kernel<T, NT, kAsym, kGroup, kTiles, kXs>>(
      p, gemv_smem_bytes(p.M, p.K, kGroup, kAsym, kTiles, kXs), kTiles, kXs, stream);
}

// Two row tiles a warp halve the x work per weight but also the number of blocks: only
// where the grid still covers the GPU twice (N >= 8192 on an H100).  At M > 8 x is read
// from global memory by every block (M·K·2 bytes each: 256 KB at K = 8192, 128 MB over
// the 8192² grid against 16 MB of weights), so halving the blocks halves the L2 traffic
// that bounds those sizes if the estimate holds (128 MB at ~5.5 TB/s of L2 ≈ 23 µs; the
// kernel takes 24.6 µs at 8192², M = 16).
inline bool two_row_tiles(int N) { return N >= 8192; }

template <typename T, int NT, bool kAsym, int kGroup, bool kXs>
Status launch_tiles(const GemvParams& p, cudaStream_t stream) {
  if (two_row_tiles(p.N)) return launch_kernel<T, NT, kAsym, kGroup, 2, kXs>(p, stream);
  return launch_kernel<T, NT, kAsym, kGroup, 1, kXs>(p, stream);
}

template <typename T, int NT, bool kAsym, int kGroup>
Status launch_xs(const GemvParams& p, cudaStream_t stream) {
  if constexpr (NT == 1) {
    if (x_in_smem(p.M, p.K)) return launch_tiles<T, NT, kAsym, kGroup, true>(p, stream);
  }
  return launch_tiles<T, NT, kAsym, kGroup, false>(p, stream);
}

template <typename T, int NT, int kGroup>
Status launch_group(const GemvParams& p, cudaStream_t stream) {
  return p.zeros != nullptr ? launch_xs<T, NT, true, kGroup>(p, stream)
                            : launch_xs<T, NT, false, kGroup>(p, stream);
}

template <typename T, int NT>
Status launch_nt(const GemvParams& p, cudaStream_t stream) {
  if (p.group_size == p.K) return launch_group<T, NT, 0>(p, stream);  // K == 64 or 128 included
  if (p.group_size == 64) return launch_group<T, NT, 64>(p, stream);
  return launch_group<T, NT, 128>(p, stream);
}

template <typename T>
Status launch_typed(const GemvParams& p, cudaStream_t stream) {
  return p.M <= 8 ? launch_nt<T, 1>(p, stream) : launch_nt<T, 2>(p, stream);
}

// The integer modes (per-row, symmetric): the W1.58A8 decode step (kA8, fp16 / bf16 x,
// staged) or the int8 GEMV (T = int8_t, kNT n8 tiles of q, read from global memory and
// so never PDL-launched: xs = false); row tiles as in launch_tiles.
template <typename T, bool kA8, int kNT = 1, typename TY = T>
Status launch_integer(const GemvParams& p, cudaStream_t stream) {
  constexpr bool kInt8 = sizeof(T) == 1;
  const int staged = kInt8 ? 0 : p.M;
  if (two_row_tiles(p.N))
    return launch_gemv<gemv_2bit_x16_kernel<T, false, 0, 2, kA8, kNT, TY>>(
        p, gemv_x16_smem_bytes(staged, p.K, 0, false, 2, kNT), 2, !kInt8, stream, kInt8 ? 0 : kPersistWavesA8);
  return launch_gemv<gemv_2bit_x16_kernel<T, false, 0, 1, kA8, kNT, TY>>(
      p, gemv_x16_smem_bytes(staged, p.K, 0, false, 1, kNT), 1, !kInt8, stream, kInt8 ? 0 : kPersistWavesA8);
}

// The int8 GEMV with y of type TY: up to 8 rows are one n8 tile of the mma, 9-16 two.
template <typename TY>
Status launch_int8(const GemvParams& p, cudaStream_t stream) {
  return p.M <= kXRows ? launch_integer<int8_t, false, 1, TY>(p, stream)
                       : launch_integer<int8_t, false, 2, TY>(p, stream);
}

}  // namespace

Status ternary_int8_gemv_launch(const TernaryInt8Params& t, cudaStream_t stream) {
  if (t.q == nullptr || t.y == nullptr || t.packed == nullptr) return Status::kInvalidArgument;
  if (t.M < 1 || t.M > kTernaryInt8GemvMaxM || t.N < 1 || t.K < 64 || t.K % 64) return Status::kInvalidArgument;
  if (t.q_row_stride < t.K || t.q_row_stride % 16 || t.y_row_stride < t.N) return Status::kInvalidArgument;
  if (reinterpret_cast<uintptr_t>(t.q) % 16 || reinterpret_cast<uintptr_t>(t.packed) % 16) return Status::kMisaligned;
  if (int64_t(t.N) + 31 > int64_t(0x7fffffff) || t.K > kTernaryInt8GemvMaxK) return Status::kUnsupported;
  GemvParams p;  // the kernel's parameters: no scales, one "group" a row
  p.x = t.q;
  p.x_row_stride = t.q_row_stride;
  p.y = t.y;
  p.y_row_stride = t.y_row_stride;
  p.packed = t.packed;
  p.M = t.M;
  p.N = t.N;
  p.K = p.group_size = t.K;
  if (t.act_scale == nullptr) return launch_int8<int32_t>(p, stream);
  if (t.scale == nullptr || t.scale_stride < 0) return Status::kInvalidArgument;
  p.act_scales = t.act_scale;
  p.row_scales = t.scale;
  p.row_scale_stride = t.scale_stride;
  p.bias = t.bias;
  switch (t.dtype) {
    case DType::kF16: return launch_int8<__half>(p, stream);
    case DType::kBF16: return launch_int8<__nv_bfloat16>(p, stream);
    default: return Status::kUnsupported;
  }
}

Status ternary_a8_gemv_launch(const TernaryA8Params& t, cudaStream_t stream) {
  if (t.x == nullptr || t.y == nullptr || t.packed == nullptr || t.scale == nullptr) return Status::kInvalidArgument;
  if (t.M < 1 || t.M > kTernaryA8GemvMaxM || t.N < 1 || t.K < 64 || t.K % 64 || !x_in_smem(t.M, t.K))
    return Status::kInvalidArgument;
  if (!(t.qmax == 127 || t.qmax == 7) || t.scale_stride < 0) return Status::kInvalidArgument;
  if (t.x_row_stride < t.K || t.x_row_stride % 8 || t.y_row_stride < t.N) return Status::kInvalidArgument;
  if (reinterpret_cast<uintptr_t>(t.x) % 16 || reinterpret_cast<uintptr_t>(t.packed) % 16) return Status::kMisaligned;
  if (int64_t(t.N) + 31 > int64_t(0x7fffffff)) return Status::kUnsupported;
  GemvParams p;  // the kernel's parameters: one "group" a row, fp32 row scales
  p.x = t.x;
  p.x_row_stride = t.x_row_stride;
  p.y = t.y;
  p.y_row_stride = t.y_row_stride;
  p.packed = t.packed;
  p.row_scales = t.scale;
  p.row_scale_stride = t.scale_stride;
  p.bias = t.bias;
  p.M = t.M;
  p.N = t.N;
  p.K = t.K;
  p.group_size = t.K;
  p.dtype = t.dtype;
  p.pdl = t.pdl;
  p.act_qmax = float(t.qmax);
  switch (t.dtype) {
    case DType::kF16: return launch_integer<__half, true>(p, stream);
    case DType::kBF16: return launch_integer<__nv_bfloat16, true>(p, stream);
    default: return Status::kUnsupported;
  }
}

Status linear_2bit_gemv_launch(const Linear2bitParams& p, cudaStream_t stream) {
  if (p.x == nullptr || p.y == nullptr || p.packed == nullptr || (p.scales == nullptr) == (p.row_scales == nullptr))
    return Status::kInvalidArgument;
  if (p.row_scales != nullptr && (p.group_size != p.K || p.row_scale_stride < 0)) return Status::kInvalidArgument;
  if (p.M < 1 || p.M > kGemv2bitMaxM || p.N < 1 || p.K < 64 || p.K % 64) return Status::kInvalidArgument;
  if (!(p.group_size == 64 || p.group_size == 128 || p.group_size == p.K)) return Status::kUnsupported;
  if (p.x_row_stride < p.K || p.y_row_stride < p.N) return Status::kInvalidArgument;
  // x is read as 16-byte vectors; weights as aligned words
  if (reinterpret_cast<uintptr_t>(p.x) % 16 || (p.x_row_stride * 2) % 16 || reinterpret_cast<uintptr_t>(p.packed) % 16)
    return Status::kMisaligned;
  // group scales and zeros are copied to shared memory as 16-byte pieces
  if (p.group_size != p.K &&
      (reinterpret_cast<uintptr_t>(p.scales) % 16 || reinterpret_cast<uintptr_t>(p.zeros) % 16))
    return Status::kMisaligned;
  if (int64_t(p.N) + 15 > int64_t(0x7fffffff)) return Status::kUnsupported;
  GemvParams k;
  static_cast<Linear2bitParams&>(k) = p;
  switch (p.dtype) {
    case DType::kF16: return launch_typed<__half>(k, stream);
    case DType::kBF16: return launch_typed<__nv_bfloat16>(k, stream);
    default: return Status::kUnsupported;
  }
}

}  // namespace quipkern
