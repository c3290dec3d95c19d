// quipkern: randomized Hadamard transform kernels (docs/FORMATS.md, "Transforms").
//
// Two kernels.  The main kernel (further below) takes p >= 32 with aligned rows: 32
// values per thread, compile-time passes.  The generic kernel takes every other case
// (p < 32, misaligned or strided rows); it is correct everywhere and simple, not fast.
//
// Generic kernel.  One block owns a tile of whole rows (R rows of n = m·p elements, R·n <= 4096, or one
// row when n is larger) and keeps it in fp32 shared memory between passes:
//
//   pass 0        global --(16-byte loads, S_in)--> registers --H over bits [0, g0)--> smem
//   pass 1..      smem --> registers --H over the next <= 4 bits of b--> smem
//   last H pass   ... --> global (scale, S_out)          when m == 1
//   Q stage       smem --> registers --Q_m along a, 8 outputs per thread--> global
//
// In a pass over the bits [lo, lo + g) of b, a "group" is the 2^g elements that differ
// only in those bits; every thread holds 16 values (1..16 groups) in registers, and
// consecutive threads take groups with consecutive low bits, so that both the global
// accesses and the shared-memory accesses of a warp are contiguous.  The butterflies
// of H_p commute, so the order of the passes is free: pass 0 takes the lowest bits
// because that is the pass whose elements are contiguous in memory (vector loads).
//
// Every global read of a tile happens in pass 0, before the first __syncthreads and
// before any global write, and blocks own disjoint rows: so y may alias x (in-place).
// Padded widths: reads stop at n_in (the rest of the row is zeros), writes at n_out.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

#include "launch.cuh"
#include "ptx.cuh"
#include "quipkern/dequantize_2bit.h"
#include "quipkern/rht.h"

namespace quipkern {
namespace {

constexpr int kLogV = 4;  // values per thread per pass: 16
constexpr int kV = 1 << kLogV;
constexpr int kTileTarget = 4096;  // elements per block when rows are short
constexpr int kQChunk = 8;         // outputs of the Q stage per thread

template <typename T> struct Cvt;
template <> struct Cvt<float> {
  static __device__ __forceinline__ float load(float v) { return v; }
  static __device__ __forceinline__ float store(float v) { return v; }
};
template <> struct Cvt<__half> {
  static __device__ __forceinline__ float load(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};
template <> struct Cvt<__nv_bfloat16> {
  static __device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

struct Plan {
  int rows_per_block;
  int npass;
  unsigned pass_bits;         // 4 bits a pass: bits of b it handles, pass 0 lowest
  int q_chunks;               // ceil(m / kQChunk)
  uint64_t magic_n;           // ceil(2^32 / n): the row of tile offset e is (e · magic_n) >> 32
  int log2_q_split;           // main kernel, m > 1: blockIdx.y takes 1 / 2^this of the Q stage's columns b
};

// Entry (a, a') of the Q stage's matrix: Q[a][a'], or Q[a'][a] for the transpose.
__device__ __forceinline__ float q_entry(const RhtParams& p, int a, int a2) {
  return p.transpose ? p.q[a2 * p.m + a] : p.q[a * p.m + a2];
}

// Float offset of the Q matrix after the tile, rounded up for its float4 reads.
__host__ __device__ __forceinline__ int q_offset(int tile_floats) { return (tile_floats + 3) & ~3; }

// Flip the sign bit of v when bit `col` of the mask is set.
__device__ __forceinline__ float apply_sign(float v, const uint8_t* __restrict__ s, int col) {
  if (s == nullptr) return v;
  unsigned bit = (__ldg(s + (col >> 3)) >> (col & 7)) & 1u;
  return __uint_as_float(__float_as_uint(v) ^ (bit << 31));
}

// Butterflies over the first g bits of the register index: 2^(4-g) groups of 2^g values.
__device__ __forceinline__ void butterflies(float (&v)[kV], int g) {
#pragma unroll
  for (int s = 0; s < kLogV; ++s) {
    if (s < g) {
#pragma unroll
      for (int i = 0; i < kV; ++i) {
        if (!(i & (1 << s))) {
          const float a = v[i], b = v[i | (1 << s)];
          v[i] = a + b;
          v[i | (1 << s)] = a - b;
        }
      }
    }
  }
}


// One pass over the bits [lo, lo + G) of b.  Register i holds element t = i % 2^G of the
// thread's group j = i / 2^G, so every register index is a compile-time constant.
template <typename T, bool kVec, int G>
__device__ __forceinline__ void run_pass(const RhtParams& p, float* smem, int lo, bool first,
                                         bool direct_out, int tile, int64_t row0, uint64_t magic_n) {
  constexpr int kCnt = 1 << G, kPerItem = kV >> G;
  const int groups = tile >> G;
  const int items = (groups + kPerItem - 1) / kPerItem;
  const int lo_mask = (1 << lo) - 1;
  const float post = rsqrtf(float(1 << p.log2_p)) * p.scale;
  for (int item = threadIdx.x; item < items; item += blockDim.x) {
    float v[kV];
#pragma unroll
    for (int j = 0; j < kPerItem; ++j) {
      const int g = item + items * j;
      if (g >= groups) {
#pragma unroll
        for (int t = 0; t < kCnt; ++t) v[j * kCnt + t] = 0.f;
        continue;
      }
      const int base = ((g >> lo) << (lo + G)) | (g & lo_mask);
      if (first) {  // lo == 0: the group is contiguous in its row
        const int r = int((uint64_t(base) * magic_n) >> 32), col = base - r * p.n;
        const T* src = static_cast<const T*>(p.x) + (row0 + r) * p.x_row_stride + col;
        constexpr int kPerVec = 16 / sizeof(T);
        if (col + kCnt > p.n_in) {  // the group reaches into the zero padding
#pragma unroll
          for (int t = 0; t < kCnt; ++t)
            v[j * kCnt + t] = col + t < p.n_in ? apply_sign(Cvt<T>::load(load_cg(src + t)), p.signs_in, col + t) : 0.f;
        } else if constexpr (kVec && kCnt >= kPerVec) {
#pragma unroll
          for (int c = 0; c < kCnt; c += kPerVec) {
            const uint4 raw = load_cg16(src + c);  // x comes from the kernel before (launch.cuh)
            const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
            for (int u = 0; u < kPerVec; ++u)
              v[j * kCnt + c + u] = apply_sign(Cvt<T>::load(e[u]), p.signs_in, col + c + u);
          }
        } else {
#pragma unroll
          for (int t = 0; t < kCnt; ++t)
            v[j * kCnt + t] = apply_sign(Cvt<T>::load(load_cg(src + t)), p.signs_in, col + t);
        }
      } else {
#pragma unroll
        for (int t = 0; t < kCnt; ++t) v[j * kCnt + t] = smem[base + (t << lo)];
      }
    }
    butterflies(v, G);
#pragma unroll
    for (int j = 0; j < kPerItem; ++j) {
      const int g = item + items * j;
      if (g >= groups) continue;
      const int base = ((g >> lo) << (lo + G)) | (g & lo_mask);
      if (direct_out) {
        const int r = int((uint64_t(base) * magic_n) >> 32), col0 = base - r * p.n;
        T* dst = static_cast<T*>(p.y) + (row0 + r) * p.y_row_stride;
#pragma unroll
        for (int t = 0; t < kCnt; ++t) {
          const int col = col0 + (t << lo);
          if (col < p.n_out) dst[col] = Cvt<T>::store(apply_sign(v[j * kCnt + t] * post, p.signs_out, col));
        }
      } else {
#pragma unroll
        for (int t = 0; t < kCnt; ++t) smem[base + (t << lo)] = v[j * kCnt + t];
      }
    }
  }
}

template <typename T, bool kVec>
__global__ void rht_generic_kernel(RhtParams p, Plan plan) {
  pdl_wait();  // x (and q, signs) may come from the kernel before (launch.cuh)
  pdl_launch_dependents();
  extern __shared__ float smem[];
  const int n = p.n, P = 1 << p.log2_p;
  const int64_t row0 = int64_t(blockIdx.x) * plan.rows_per_block;
  const int R = int(min(int64_t(plan.rows_per_block), p.rows - row0));
  const int tile = R * n;
  float* qs = smem + q_offset(plan.rows_per_block * n);  // Q stage matrix, [a'][chunk*8 + u]
  const bool q_stage = p.m > 1 && p.q != nullptr;  // q == nullptr: Q = I_m

  if (q_stage) {
    const int width = plan.q_chunks * kQChunk;
    for (int i = threadIdx.x; i < p.m * width; i += blockDim.x) {
      const int ap = i / width, a = i % width;
      float v = 0.f;
      if (a < p.m) v = q_entry(p, a, ap);
      qs[i] = v;
    }
  }

  int lo = 0;
  for (int pass = 0; pass < plan.npass; ++pass) {
    const bool first = pass == 0, direct_out = !q_stage && pass == plan.npass - 1;
    if (!first) __syncthreads();
    const int g = (plan.pass_bits >> (4 * pass)) & 15;
    switch (g) {
      case 0: run_pass<T, kVec, 0>(p, smem, lo, first, direct_out, tile, row0, plan.magic_n); break;
      case 1: run_pass<T, kVec, 1>(p, smem, lo, first, direct_out, tile, row0, plan.magic_n); break;
      case 2: run_pass<T, kVec, 2>(p, smem, lo, first, direct_out, tile, row0, plan.magic_n); break;
      case 3: run_pass<T, kVec, 3>(p, smem, lo, first, direct_out, tile, row0, plan.magic_n); break;
      case 4: run_pass<T, kVec, 4>(p, smem, lo, first, direct_out, tile, row0, plan.magic_n); break;
    }
    lo += g;
  }
  if (!q_stage) return;

  // Q stage: y[a, b] = sum_a' Q[a, a'] x[a', b] for every column b of every row.
  __syncthreads();
  const int work = R * P * plan.q_chunks;
  const float post = rsqrtf(float(P)) * p.scale;
  const int width = plan.q_chunks * kQChunk;
  for (int w = threadIdx.x; w < work; w += blockDim.x) {
    const int b = w & (P - 1), rest = w >> p.log2_p;
    const int chunk = rest % plan.q_chunks, r = rest / plan.q_chunks;
    float acc[kQChunk];
#pragma unroll
    for (int u = 0; u < kQChunk; ++u) acc[u] = 0.f;
    const float* xs = smem + r * n + b;
    const float* qrow = qs + chunk * kQChunk;
    for (int ap = 0; ap < p.m; ++ap) {
      const float xv = xs[ap * P];
      const float4 q0 = *reinterpret_cast<const float4*>(qrow + ap * width);
      const float4 q1 = *reinterpret_cast<const float4*>(qrow + ap * width + 4);
      acc[0] += q0.x * xv; acc[1] += q0.y * xv; acc[2] += q0.z * xv; acc[3] += q0.w * xv;
      acc[4] += q1.x * xv; acc[5] += q1.y * xv; acc[6] += q1.z * xv; acc[7] += q1.w * xv;
    }
    T* dst = static_cast<T*>(p.y) + (row0 + r) * p.y_row_stride;
#pragma unroll
    for (int u = 0; u < kQChunk; ++u) {
      const int a = chunk * kQChunk + u, col = a * P + b;
      if (a < p.m && col < p.n_out) dst[col] = Cvt<T>::store(apply_sign(acc[u] * post, p.signs_out, col));
    }
  }
}

// ---------------------------------------------------------------------------------------
// Main kernel, p >= 32: every thread holds 32 values in registers in every pass.
//
//   pass 0   global --(16-byte loads of 32 contiguous elements, S_in)--> registers,
//            butterflies over bits [0, g0) of b, --> shared memory
//   pass i   shared --> registers (32 values whose b differ in the pass's bits, and
//            consecutive lanes on consecutive low bits), butterflies, --> shared memory,
//            or for the last pass of m == 1 straight to global memory (scale, S_out)
//   Q stage  (m > 1) fp16 / bf16: on the tensor cores (below); fp32: as in the generic
//            kernel; with few rows, several blocks split its columns
//
// log2(p) <= 15 bits in at most 3 passes of at most 5 bits: at most two round trips
// through shared memory.  Shared memory holds the tile in fp32 with one padding float
// per 32 within a sub-row (index b -> b + b/32), which keeps both the thread-contiguous
// pass-0 writes and the lane-contiguous later passes free of bank conflicts, and sub-rows
// row_floats() apart (for the Q stage's reads); all in-pass offsets are compile-time
// constants (the kernel is instantiated per log2(p)).

constexpr int kMainValues = 32;

__host__ __device__ constexpr int padded(int a) { return a + (a >> 5); }

// Floats between the sub-rows (a, ·) and (a + 1, ·) in shared memory: the padded p, plus
// up to 15 so that the stride is 4 mod 16.  The tensor-core Q stage has lanes t = 0..3
// read sub-rows 2t apart at the same column: 2·stride = 8 mod 32 puts them 8 banks
// apart, and the 8 lanes g of a quad column read 8 consecutive floats in between.
template <int kLogP>
__host__ __device__ constexpr int row_floats() {
  return padded(1 << kLogP) + ((4 - padded(1 << kLogP)) & 15);
}

__device__ __forceinline__ float xor_sign(float v, uint32_t bit) {
  return __uint_as_float(__float_as_uint(v) ^ (bit << 31));
}

// ---- Q stage on the tensor cores (fp16 / bf16 data) ----------------------------------
// Y[a][b] = sum_a' Qe[a][a'] X[a'][b] per row (Qe = Q, or Qᵀ for transpose), as
// mma.m16n8k16 with A = Qe (16 x 16 tiles, zero past m), B = X (a' along k, 8 columns b
// along n), fp32 sums.  For fp32-like accuracy both sides are split into bf16 hi + lo
// (lo = v - hi, exact in fp32): Qh·Xh + Qh·Xl + Ql·Xh leaves out Ql·Xl, ~2^-16 relative
// at most, below the fp16 / bf16 output rounding.  When every entry of Q has the same
// magnitude c (Q = H_m / sqrt(m), the usual case), Qh = ±bf16(c) is exactly Q scaled by
// bf16(c) / c: the Ql mma is skipped and the output rescaled by c / bf16(c).
// Qe's fragments are built once per block, hi and lo, in lane order ([tile][hi/lo][lane]
// [4 words]: a lane's 16 bytes are contiguous, so the 32 lanes read without conflicts).
// A warp takes items (row r, 16 columns b, one or two row tiles of Qe); with two, X's
// fragments are loaded and split once for both.
// Measured (H100, M = 4096, width 28672 = 28 · 1024): one item per row tile with its
// own division-based index math and three mmas: 428 us, of which two thirds of the
// instructions were this stage (ncu source view, benchmarks/NOTES.md, session 13); the
// many-rows kernel's q_stage_mma_bulk: 387 us (session 14).
constexpr int kQTileWords = 2 * 32 * 4;  // one 16 x 16 tile's A fragments, hi and lo

using ptx::split_bf16;

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint4& a, uint32_t b0, uint32_t b1) {
  const uint32_t r[4] = {a.x, a.y, a.z, a.w};
  ptx::mma_bf16(c, r, b0, b1);
}

// Qe's A fragments into shared memory.  Fragment word j of lane (g, t) holds row
// g + 8·(j & 1), columns 2t + 8·(j >> 1) and the next (low half first) of the tile.
// kVote (the many-rows kernel): returns this thread's vote on "every entry of Q has the
// magnitude c = |Q[0][0]|" over the entries it read (and c in q_mag); the block's AND is
// taken at the barrier before the Q stage (no extra round trip for q).  When it holds,
// the hi fragments are ±bf16(c) exactly, i.e. Q scaled by bf16(c) / c: the Q stage skips
// the lo mma and rescales its output by c / bf16(c).
template <bool kVote>
__device__ __forceinline__ bool build_q_fragments(const RhtParams& p, uint32_t* qf, int kt_count, float& q_mag) {
  const int m = p.m;
  const float c = kVote ? fabsf(__ldg(p.q)) : 0.f;
  bool same = true;
  for (int i = threadIdx.x; i < kt_count * kt_count * 32 * 4; i += blockDim.x) {
    const int j = i & 3, lane = (i >> 2) & 31, tile = i >> 7;
    const int row = (tile / kt_count) * 16 + (lane >> 2) + 8 * (j & 1);
    const int col = (tile % kt_count) * 16 + 2 * (lane & 3) + 8 * (j >> 1);
    float v[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int cc = col + e;
      const bool inside = row < m && cc < m;
      v[e] = inside ? q_entry(p, row, cc) : 0.f;
      if (kVote) same = same && (!inside || fabsf(v[e]) == c);
    }
    uint32_t hi, lo;
    split_bf16(v[0], v[1], hi, lo);
    qf[(tile * 2 + 0) * 128 + lane * 4 + j] = hi;
    qf[(tile * 2 + 1) * 128 + lane * 4 + j] = lo;
  }
  q_mag = c;
  return kVote && same && c > 0.f && isfinite(c);
}

// The Q stage of rows [0, rows_here) of the block over the columns [b0, b0 + span), from
// the H passes' output in shared memory (sub-row stride kRow floats) to y: the few-rows
// (decode) kernel's, one row tile an item and three mmas.  q_stage_mma_bulk below halves
// the many-rows kernel's work but took 0.15-0.45 us more at M = 1 and 16 in every version
// tried (H100, sessions 13-14), so the decode path keeps this one.
template <typename T, int kLogP>
__device__ __forceinline__ void q_stage_mma_few(const RhtParams& p, const float* smem, const uint32_t* qf,
                                            int kt_count, int64_t row0, int rows_here, int b0, int span, float post) {
  constexpr int kP = 1 << kLogP, kRow = row_floats<kLogP>();
  const int m = p.m, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int col_items = span >> 4, items = rows_here * kt_count * col_items;
  // y pairs as one 4-byte store where y's rows keep them aligned
  const bool pair_store = reinterpret_cast<uintptr_t>(p.y) % 4 == 0 && p.y_row_stride % 2 == 0;
  // mma needs whole warps: a block of m·p/32 threads a row (p = 32, odd m) may end in a
  // partial warp, which sits this stage out
  const int warps = blockDim.x >> 5;
  if (int(threadIdx.x >> 5) >= warps) return;
#pragma unroll 1
  for (int it = threadIdx.x >> 5; it < items; it += warps) {
    const int cb = it % col_items, rest = it / col_items;
    const int mt = rest % kt_count, r = rest / kt_count;
    const int bb = b0 + 16 * cb;
    const float* xr = smem + (r * m) * kRow;
    float acc[2][4] = {};
#pragma unroll 1
    for (int kt = 0; kt < kt_count; ++kt) {
      const uint4* qt = reinterpret_cast<const uint4*>(qf + (mt * kt_count + kt) * kQTileWords);
      const uint4 ah = qt[lane], al = qt[32 + lane];
      const int k0 = 16 * kt + 2 * t;  // B rows k0, k0 + 1, k0 + 8, k0 + 9: sub-rows a'
#pragma unroll
      for (int nb = 0; nb < 2; ++nb) {
        const float* xc = xr + padded(bb + 8 * nb + g);
        float v[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int k = k0 + (e & 1) + 8 * (e >> 1);
          v[e] = k < m ? xc[k * kRow] : 0.f;  // past m: zeros (smem there is another row or garbage)
        }
        uint32_t h0, l0, h1, l1;
        split_bf16(v[0], v[1], h0, l0);
        split_bf16(v[2], v[3], h1, l1);
        mma_bf16(acc[nb], ah, h0, h1);
        mma_bf16(acc[nb], ah, l0, l1);
        mma_bf16(acc[nb], al, h0, h1);
      }
    }
    // C fragment: rows g (acc[.][0..1]) and g + 8 (acc[.][2..3]), columns 2t, 2t + 1
    T* dst = static_cast<T*>(p.y) + (row0 + r) * p.y_row_stride;
#pragma unroll
    for (int nb = 0; nb < 2; ++nb)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int a = 16 * mt + g + 8 * h;
        if (a >= m) continue;
        const int col = a * kP + bb + 8 * nb + 2 * t;  // even: both signs sit in one byte
        float r0 = acc[nb][2 * h] * post, r1 = acc[nb][2 * h + 1] * post;
        if (p.signs_out != nullptr) {
          const uint32_t byte = __ldg(p.signs_out + (col >> 3)) >> (col & 7);
          r0 = xor_sign(r0, byte & 1u);
          r1 = xor_sign(r1, (byte >> 1) & 1u);
        }
        if (pair_store && col + 1 < p.n_out) {
          T pair[2] = {Cvt<T>::store(r0), Cvt<T>::store(r1)};
          *reinterpret_cast<uint32_t*>(dst + col) = *reinterpret_cast<const uint32_t*>(pair);
        } else {
          if (col < p.n_out) dst[col] = Cvt<T>::store(r0);
          if (col + 1 < p.n_out) dst[col + 1] = Cvt<T>::store(r1);
        }
      }
  }
}

// Items of the many-rows Q stage: (row r, 16 columns b, chunk of kTiles row tiles of Qe),
// chunk the fastest index.
template <typename T, int kLogP, int kTiles>
__device__ __forceinline__ void q_stage_items(const RhtParams& p, const float* smem, const uint32_t* qf,
                                              int kt_count, int64_t row0, int rows_here, int b0, int log2_cols,
                                              float post, bool uniform) {
  constexpr int kP = 1 << kLogP, kRow = row_floats<kLogP>();
  const int m = p.m, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, warps = blockDim.x >> 5;
  const int chunks = kTiles == 1 ? kt_count : kt_count >> 1;  // 1..4 (m <= 64; kTiles = 2: kt_count even)
  // it / chunks as a multiply-high, exact for it < 2^28 (an integer division an item was a
  // visible share of this stage's instructions)
  const uint32_t chunk_magic = chunks == 2 ? 0x80000000u : chunks == 3 ? 0x55555556u : 0x40000000u;
  const int items = (rows_here << log2_cols) * chunks;
  // y pairs as one 4-byte store where y's rows keep them aligned
  const bool pair_store = reinterpret_cast<uintptr_t>(p.y) % 4 == 0 && p.y_row_stride % 2 == 0;
#pragma unroll 1
  for (int it = threadIdx.x >> 5; it < items; it += warps) {
    const int rc = chunks == 1 ? it : int(__umulhi(uint32_t(it), chunk_magic));
    const int mt0 = (it - rc * chunks) * kTiles, r = rc >> log2_cols;
    const int bb = b0 + ((rc & ((1 << log2_cols) - 1)) << 4);
    // lane's B column in each n-tile, and its first k row (sub-row a' = 2t)
    const float* xc0 = smem + (r * m + 2 * t) * kRow + padded(bb + g);
    const float* xc1 = smem + (r * m + 2 * t) * kRow + padded(bb + 8 + g);
    float acc[kTiles][2][4] = {};
#pragma unroll 1
    for (int kt = 0; kt < kt_count; ++kt) {
      // B fragments: rows k0, k0 + 1, k0 + 8, k0 + 9 (sub-rows a'), zeros past m
      const int k0 = 16 * kt + 2 * t;
      uint32_t bh[2][2], bl[2][2];
#pragma unroll
      for (int nb = 0; nb < 2; ++nb) {
        const float* xc = (nb == 0 ? xc0 : xc1) + 16 * kt * kRow;
        float v[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int dk = (e & 1) + 8 * (e >> 1);
          v[e] = k0 + dk < m ? xc[dk * kRow] : 0.f;  // past m: zeros (smem there is another row or garbage)
        }
        split_bf16(v[0], v[1], bh[nb][0], bl[nb][0]);
        split_bf16(v[2], v[3], bh[nb][1], bl[nb][1]);
      }
#pragma unroll
      for (int u = 0; u < kTiles; ++u) {
        const int mt = mt0 + u;
        if (mt >= kt_count) break;
        const uint4* qt = reinterpret_cast<const uint4*>(qf + (mt * kt_count + kt) * kQTileWords);
        const uint4 ah = qt[lane];
#pragma unroll
        for (int nb = 0; nb < 2; ++nb) {
          mma_bf16(acc[u][nb], ah, bh[nb][0], bh[nb][1]);
          mma_bf16(acc[u][nb], ah, bl[nb][0], bl[nb][1]);
        }
        if (!uniform) {
          const uint4 al = qt[32 + lane];
#pragma unroll
          for (int nb = 0; nb < 2; ++nb) mma_bf16(acc[u][nb], al, bh[nb][0], bh[nb][1]);
        }
      }
    }
    // C fragment: rows g (acc[.][.][0..1]) and g + 8 (acc[.][.][2..3]), columns 2t, 2t + 1
    T* dst = static_cast<T*>(p.y) + (row0 + r) * p.y_row_stride;
#pragma unroll
    for (int u = 0; u < kTiles; ++u)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int a = 16 * (mt0 + u) + g + 8 * h;
        if (a >= m) continue;
        const int col16 = a * kP + bb;  // a multiple of 16: its signs are two whole bytes
        uint32_t sbits = 0;
        if (p.signs_out != nullptr)
          sbits = uint32_t(__ldg(p.signs_out + (col16 >> 3))) | (uint32_t(__ldg(p.signs_out + (col16 >> 3) + 1)) << 8);
#pragma unroll
        for (int nb = 0; nb < 2; ++nb) {
          const int off = 8 * nb + 2 * t, col = col16 + off;
          const float r0 = xor_sign(acc[u][nb][2 * h] * post, (sbits >> off) & 1u);
          const float r1 = xor_sign(acc[u][nb][2 * h + 1] * post, (sbits >> (off + 1)) & 1u);
          if (pair_store && col + 1 < p.n_out) {
            T pair[2] = {Cvt<T>::store(r0), Cvt<T>::store(r1)};
            *reinterpret_cast<uint32_t*>(dst + col) = *reinterpret_cast<const uint32_t*>(pair);
          } else {
            if (col < p.n_out) dst[col] = Cvt<T>::store(r0);
            if (col + 1 < p.n_out) dst[col + 1] = Cvt<T>::store(r1);
          }
        }
      }
  }
}

// The Q stage of rows [0, rows_here) of the block over the columns [b0, b0 + 2^log2_span),
// from the H passes' output in shared memory (sub-row stride kRow floats) to y.  uniform:
// the block's vote of build_q_fragments, q_mag its c.  span >= 32.  Two row tiles an item
// halve the loads and splits of X where the row tiles pair up (m = 17..32, 49..64) and
// there are enough items for every warp; otherwise one (H100, M = 4096: width 11008,
// m = 43, 195 us with one, 215 with a two-and-one split; benchmarks/NOTES.md, session 13).
template <typename T, int kLogP>
__device__ __forceinline__ void q_stage_mma_bulk(const RhtParams& p, const float* smem, const uint32_t* qf,
                                                 int kt_count, int64_t row0, int rows_here, int b0, int log2_span,
                                                 float post, bool uniform, float q_mag) {
  // c / bf16(c) to ~2 ulp of fp32 (far below the output's rounding), without the
  // division's slow path on the way to the first item
  if (uniform) post *= __fdividef(q_mag, __bfloat162float(__float2bfloat16_rn(q_mag)));
  // mma needs whole warps: a block of m·p/32 threads a row (p = 32, odd m) may end in a
  // partial warp, which sits this stage out
  const int warps = blockDim.x >> 5;
  if (int(threadIdx.x >> 5) >= warps) return;
  const int log2_cols = log2_span - 4;
  if (kt_count % 2 == 0 && (rows_here << log2_cols) * (kt_count / 2) >= warps)
    q_stage_items<T, kLogP, 2>(p, smem, qf, kt_count, row0, rows_here, b0, log2_cols, post, uniform);
  else
    q_stage_items<T, kLogP, 1>(p, smem, qf, kt_count, row0, rows_here, b0, log2_cols, post, uniform);
}

template <int kLogP>
struct PassSplit {
  static constexpr int kPasses = (kLogP + 4) / 5;
  __host__ __device__ static constexpr int bits(int i) { return kLogP / kPasses + (i < kLogP % kPasses ? 1 : 0); }
  __host__ __device__ static constexpr int lo(int i) { return i == 0 ? 0 : lo(i - 1) + bits(i - 1); }
};

// Butterflies over register-index bits [0, G): 32 / 2^G groups of 2^G consecutive registers.
template <int G>
__device__ __forceinline__ void butterflies_g(float (&v)[kMainValues]) {
#pragma unroll
  for (int s = 0; s < G; ++s) {
#pragma unroll
    for (int i = 0; i < kMainValues; ++i) {
      if (!(i & (1 << s))) {
        const float a = v[i], b = v[i | (1 << s)];
        v[i] = a + b;
        v[i | (1 << s)] = a - b;
      }
    }
  }
}

// Pass kPass >= 1 of the main kernel over the sub-row `srow` (padded shared memory).
template <typename T, int kLogP, int kPass>
__device__ __forceinline__ void main_pass(const RhtParams& p, float* srow, int t, bool to_global, int64_t row,
                                          int col0, float post) {
  using S = PassSplit<kLogP>;
  constexpr int kLo = S::lo(kPass), kG = S::bits(kPass), kGS = 1 << kG, kPer = kMainValues / kGS;
  constexpr int kTpr = (1 << kLogP) / kMainValues;
  constexpr int kStride = kLo >= 5 ? (1 << kLo) + (1 << (kLo - 5)) : 0;  // padded step of bit kLo
  float v[kMainValues];
  int base[kPer];
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int g = t + kTpr * u;
    base[u] = ((g >> kLo) << (kLo + kG)) | (g & ((1 << kLo) - 1));
#pragma unroll
    for (int i = 0; i < kGS; ++i)
      v[u * kGS + i] = kLo >= 5 ? srow[padded(base[u]) + i * kStride] : srow[padded(base[u] + (i << kLo))];
  }
  butterflies_g<kG>(v);
  if (to_global) {
    T* dst = static_cast<T*>(p.y) + row * p.y_row_stride + col0;
#pragma unroll
    for (int u = 0; u < kPer; ++u)
#pragma unroll
      for (int i = 0; i < kGS; ++i) {
        const int b = base[u] + (i << kLo);
        float r = v[u * kGS + i] * post;
        if (p.signs_out != nullptr) r = xor_sign(r, (__ldg(p.signs_out + ((col0 + b) >> 3)) >> ((col0 + b) & 7)) & 1u);
        if (col0 + b < p.n_out) dst[b] = Cvt<T>::store(r);
      }
  } else {
#pragma unroll
    for (int u = 0; u < kPer; ++u)
#pragma unroll
      for (int i = 0; i < kGS; ++i) {
        if (kLo >= 5) srow[padded(base[u]) + i * kStride] = v[u * kGS + i];
        else srow[padded(base[u] + (i << kLo))] = v[u * kGS + i];
      }
  }
}

// Where the main kernel's rows come from (its pass 0).  XRows: the rows of x (RhtParams).
// Rows2bit: the rows of a 2-bit weight (docs/FORMATS.md, "2-bit weights"), dequantized in
// registers: row n is s · (c − z) over its K columns, so the kernel writes
// S_out · (H_K / sqrt(K)) · ŵ[n] without ŵ ever reaching memory in bf16 (the prefill path
// folds the input transform into the weight this way: dequantize_2bit_hadamard_launch).
struct XRows {};
struct Rows2bit {
  const uint32_t* packed;   // (N, K/16) words, 8-byte aligned rows
  const uint16_t* scales;   // fp16 bits, (N, K/g)
  const uint16_t* zeros;    // fp16 bits, (N, K/g), or nullptr: z = 1.5
  int words;                // K / 16
  int groups;               // K / g
  int log2_group;           // g is a power of two (64, 128 or K = 2^k)
};

// kBulk: the many-rows variant (the grid covers the GPU; fp16 / bf16, m > 1), whose Q stage
// is q_stage_mma_bulk; the decode path (few rows) keeps q_stage_mma_few.
// kChunks: Q = I_m (q == nullptr, m > 1): the m chunks of a row are independent, so a
// block takes blockDim.x / kTpr consecutive (row, chunk) pairs instead of whole rows, and
// there is no Q stage.  The prefill path of the 2-bit layer uses it after folding Q_m
// into the dequantized weight (quipkern/ops/linear_2bit.py).
// kChunks blocks have chunk_block_threads<kLogP>() threads, also their launch bound (under
// 1024 the p = 2048 instantiation spilled).
template <int kLogP>
constexpr int chunk_block_threads() {  // whole chunks of kMainValues-value threads, >= 256
  return std::max(256, (1 << kLogP) / kMainValues);
}

template <typename T, int kLogP, bool kBulk, bool kChunks = false, typename Src = XRows>
__global__ void __launch_bounds__(kChunks ? chunk_block_threads<kLogP>() : 1024)
    rht_main_kernel(const RhtParams p, Plan plan, const Src src) {
  pdl_wait();  // x (and q, signs) may come from the kernel before (launch.cuh)
  pdl_launch_dependents();
  using S = PassSplit<kLogP>;
  constexpr int kP = 1 << kLogP, kTpr = kP / kMainValues, kG0 = S::bits(0);
  extern __shared__ float smem[];
  const int m = p.m, R = plan.rows_per_block;
  const int sub = threadIdx.x / kTpr, t = threadIdx.x % kTpr;
  int r_local, a;
  int64_t row0, row;
  if constexpr (kChunks) {
    const int64_t pair = int64_t(blockIdx.x) * (blockDim.x / kTpr) + sub;
    row = pair / m;
    a = int(pair - row * m);
    r_local = 0;
    row0 = row;
  } else {
    r_local = sub / m;
    a = sub % m;
    row0 = int64_t(blockIdx.x) * R;
    row = row0 + r_local;
  }
  const bool active = row < p.rows;
  const int col0 = a * kP;
  constexpr int kRow = row_floats<kLogP>();
  constexpr bool kTensorQ = !std::is_same<T, float>::value;  // fp32 data keeps fp32 FMAs
  float* srow = smem + sub * kRow;
  const float post = rsqrtf(float(kP)) * p.scale;
  const bool q_stage = !kChunks && m > 1;
  const int kt_count = (m + 15) / 16;
  float* qs = smem + q_offset(R * m * kRow);
  bool q_vote = false;  // kBulk: build_q_fragments' vote and c
  float q_mag = 1.f;
  if (q_stage) {
    if constexpr (kTensorQ) {
      q_vote = build_q_fragments<kBulk>(p, reinterpret_cast<uint32_t*>(qs), kt_count, q_mag);
    } else {  // Q stage matrix, [a'][chunk*8 + u], as in the generic kernel
      const int width = plan.q_chunks * kQChunk;
      for (int i = threadIdx.x; i < m * width; i += blockDim.x) {
        const int ap = i / width, aa = i % width;
        qs[i] = aa < m ? q_entry(p, aa, ap) : 0.f;
      }
    }
  }

  // pass 0: 32 contiguous elements
  float v[kMainValues];
  if constexpr (std::is_same<Src, Rows2bit>::value) {
    // 32 codes (two words) and their group's scale and zero: g >= 64 holds all 32
    if (active) {
      const int c0 = col0 + kMainValues * t;
      // __ldg: weights do not change between calls (x, which a kernel before writes, does)
      const uint2 w = __ldg(reinterpret_cast<const uint2*>(src.packed + row * src.words + (c0 >> 4)));
      const int64_t gi = row * src.groups + (c0 >> src.log2_group);
      const float s = __half2float(__ushort_as_half(__ldg(src.scales + gi)));
      const float z = src.zeros != nullptr ? __half2float(__ushort_as_half(__ldg(src.zeros + gi))) : 1.5f;
      const float zs = -z * s;
#pragma unroll
      for (int i = 0; i < kMainValues; ++i) {
        // code as a float: 2^23 + c read as fp32, minus 2^23 (exact)
        const uint32_t c = ((i < 16 ? w.x : w.y) >> (2 * (i & 15))) & 3u;
        v[i] = fmaf(__uint_as_float(0x4B000000u | c) - 8388608.f, s, zs);
      }
    } else {
#pragma unroll
      for (int i = 0; i < kMainValues; ++i) v[i] = 0.f;
    }
  } else if (active) {
    const int c0 = col0 + kMainValues * t;
    const T* xr = static_cast<const T*>(p.x) + row * p.x_row_stride + c0;
    constexpr int kPerVec = 16 / sizeof(T);
    if (c0 + kMainValues <= p.n_in) {
#pragma unroll
      for (int c = 0; c < kMainValues; c += kPerVec) {
        const uint4 raw = load_cg16(xr + c);  // not __ldg: x comes from the kernel before (launch.cuh)
        const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int u = 0; u < kPerVec; ++u) v[c + u] = Cvt<T>::load(e[u]);
      }
    } else {  // the zero padding of a padded width
#pragma unroll
      for (int i = 0; i < kMainValues; ++i) v[i] = c0 + i < p.n_in ? Cvt<T>::load(load_cg(xr + i)) : 0.f;
    }
    if (p.signs_in != nullptr) {
      const uint32_t w = __ldg(reinterpret_cast<const uint32_t*>(p.signs_in) + ((col0 + kMainValues * t) >> 5));
#pragma unroll
      for (int i = 0; i < kMainValues; ++i) v[i] = xor_sign(v[i], (w >> i) & 1u);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kMainValues; ++i) v[i] = 0.f;
  }
  butterflies_g<kG0>(v);
  if (S::kPasses == 1 && !q_stage) {
    if (active) {
      T* dst = static_cast<T*>(p.y) + row * p.y_row_stride + col0 + kMainValues * t;
#pragma unroll
      for (int i = 0; i < kMainValues; ++i) {
        float r = v[i] * post;
        const int c = col0 + kMainValues * t + i;
        if (p.signs_out != nullptr) r = xor_sign(r, (__ldg(p.signs_out + (c >> 3)) >> (c & 7)) & 1u);
        if (c < p.n_out) dst[i] = Cvt<T>::store(r);
      }
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < kMainValues; ++i) srow[(kMainValues + 1) * t + i] = v[i];  // padded(32 t + i)

  if constexpr (S::kPasses >= 2) {
    __syncthreads();
    main_pass<T, kLogP, 1>(p, srow, t, !q_stage && S::kPasses == 2 && active, row, col0, post);
  }
  if constexpr (S::kPasses >= 3) {
    __syncthreads();
    main_pass<T, kLogP, 2>(p, srow, t, !q_stage && active, row, col0, post);
  }
  if (!q_stage) return;

  // Few rows (decode): 2^log2_q_split blocks share a row.  Each one redoes the cheap H
  // passes of the whole row and then takes its slice of the columns b in the Q stage,
  // which is where the time goes (m multiply-adds per element).
  bool q_uniform = false;
  if constexpr (kBulk) {
    q_uniform = __syncthreads_and(q_vote);  // the barrier the Q stage needs anyway
  } else {
    __syncthreads();
  }
  const int rows_here = int(min(int64_t(R), p.rows - row0));
  const int log2_span = kLogP - plan.log2_q_split, b0 = int(blockIdx.y) << log2_span;
  if constexpr (kTensorQ) {
    if constexpr (kBulk) {
      q_stage_mma_bulk<T, kLogP>(p, smem, reinterpret_cast<const uint32_t*>(qs), kt_count, row0, rows_here, b0,
                                 log2_span, post, q_uniform, q_mag);
    } else {
      q_stage_mma_few<T, kLogP>(p, smem, reinterpret_cast<const uint32_t*>(qs), kt_count, row0, rows_here, b0,
                                1 << log2_span, post);
    }
    return;
  }
  const int work = (rows_here * plan.q_chunks) << log2_span, width = plan.q_chunks * kQChunk;
  for (int w = threadIdx.x; w < work; w += blockDim.x) {
    const int b = b0 + (w & ((1 << log2_span) - 1)), rest = w >> log2_span;
    const int chunk = rest % plan.q_chunks, r = rest / plan.q_chunks;
    float acc[kQChunk];
#pragma unroll
    for (int u = 0; u < kQChunk; ++u) acc[u] = 0.f;
    const float* xs = smem + r * m * kRow + padded(b);
    const float* qrow = qs + chunk * kQChunk;
    for (int ap = 0; ap < m; ++ap) {
      const float xv = xs[ap * kRow];
      const float4 q0 = *reinterpret_cast<const float4*>(qrow + ap * width);
      const float4 q1 = *reinterpret_cast<const float4*>(qrow + ap * width + 4);
      acc[0] += q0.x * xv; acc[1] += q0.y * xv; acc[2] += q0.z * xv; acc[3] += q0.w * xv;
      acc[4] += q1.x * xv; acc[5] += q1.y * xv; acc[6] += q1.z * xv; acc[7] += q1.w * xv;
    }
    T* dst = static_cast<T*>(p.y) + (row0 + r) * p.y_row_stride;
#pragma unroll
    for (int u = 0; u < kQChunk; ++u) {
      const int aa = chunk * kQChunk + u, col = aa * kP + b;
      if (aa < m && col < p.n_out) dst[col] = Cvt<T>::store(apply_sign(acc[u] * post, p.signs_out, col));
    }
  }
}

Plan make_plan(const RhtParams& p) {
  Plan plan{};
  plan.rows_per_block = p.n >= kTileTarget ? 1 : kTileTarget / p.n;
  const int k = p.log2_p;
  plan.npass = std::max(1, (k + kLogV - 1) / kLogV);
  for (int i = 0; i < plan.npass; ++i)
    plan.pass_bits |= unsigned(k / plan.npass + (i < k % plan.npass ? 1 : 0)) << (4 * i);
  plan.q_chunks = (p.m + kQChunk - 1) / kQChunk;
  // exact for every tile offset e < 2^32 / n; tiles hold < 2 · max(n, kTileTarget) <= 2^16
  plan.magic_n = ((uint64_t(1) << 32) + p.n - 1) / p.n;
  return plan;
}

size_t smem_bytes(const RhtParams& p, const Plan& plan) {
  if (p.m == 1 && plan.npass == 1) return 0;  // the tile never leaves registers
  size_t floats = size_t(plan.rows_per_block) * p.n;
  if (p.m > 1 && p.q != nullptr) floats = q_offset(int(floats)) + size_t(p.m) * plan.q_chunks * kQChunk;
  return floats * sizeof(float);
}

template <typename T>
Status launch_generic(const RhtParams& p, const Plan& plan, cudaStream_t stream);

// The main kernel needs p >= 32, 16-byte aligned rows of x and a 4-byte aligned S_in.
bool main_kernel_fits(const RhtParams& p, int elem_size) {
  return p.log2_p >= 5 && reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && (p.x_row_stride * elem_size) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(p.signs_in) % 4 == 0 && p.n / kMainValues <= 1024;
}

// Q = I_m: blocks of ~256 threads over (row, chunk) pairs, whatever m is.
template <typename T, int kLogP>
Status launch_chunks(const RhtParams& p, const Plan& plan, cudaStream_t stream) {
  constexpr int kTpc = (1 << kLogP) / kMainValues;  // threads a chunk
  constexpr int subs = chunk_block_threads<kLogP>() / kTpc;
  const size_t smem = PassSplit<kLogP>::kPasses == 1 ? 0 : size_t(subs) * row_floats<kLogP>() * sizeof(float);
  const int64_t blocks = (p.rows * p.m + subs - 1) / subs;
  if (blocks > int64_t(0x7fffffff)) return Status::kUnsupported;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return Status::kCudaError;
  auto kernel = rht_main_kernel<T, kLogP, false, true>;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) != cudaSuccess)
    return Status::kCudaError;
  const cudaError_t e =
      launch_on(device, true, kernel, dim3(unsigned(blocks)), dim3(subs * kTpc), smem, stream, p, plan, XRows{});
  return e == cudaSuccess && cudaGetLastError() == cudaSuccess ? Status::kOk : Status::kCudaError;
}

// Src = Rows2bit: m == 1 only (dequantize_2bit_hadamard_launch).
template <typename T, int kLogP, typename Src = XRows>
Status launch_main(const RhtParams& p, cudaStream_t stream, const Src src = Src{}) {
  constexpr bool kX = std::is_same<Src, XRows>::value;
  Plan plan = make_plan(p);
  if (!kX && p.m != 1) return Status::kUnsupported;
  if constexpr (kX) {
    if (p.m > 1 && p.q == nullptr) {  // Q = I_m; p = 32 (one pass, registers only) goes to the generic kernel
      if constexpr (PassSplit<kLogP>::kPasses > 1) return launch_chunks<T, kLogP>(p, plan, stream);
      else return launch_generic<T>(p, plan, stream);
    }
  }
  const int per_row = p.m * ((1 << kLogP) / kMainValues);  // threads per row
  plan.rows_per_block = std::max(1, 256 / per_row);
  const int threads = plan.rows_per_block * per_row;
  size_t floats = size_t(plan.rows_per_block) * p.m * row_floats<kLogP>();
  if (p.m > 1) {
    const int kt_count = (p.m + 15) / 16;
    floats = q_offset(int(floats)) + (std::is_same<T, float>::value ? size_t(p.m) * plan.q_chunks * kQChunk
                                                                    : size_t(kt_count) * kt_count * kQTileWords);
  }
  const size_t smem = (PassSplit<kLogP>::kPasses == 1 && p.m == 1) ? 0 : floats * sizeof(float);
  const int64_t blocks = (p.rows + plan.rows_per_block - 1) / plan.rows_per_block;
  if (blocks > int64_t(0x7fffffff)) return Status::kUnsupported;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return Status::kCudaError;
  const int sms = p.m > 1 ? sm_count(device) : 1;  // cached (launch.cuh)
  if (sms == 0) return Status::kCudaError;
  // Split the Q stage over blocks while the grid is smaller than the GPU, down to 32
  // columns a block.  Not in place: a block writes its slice while another still reads x.
  if (p.m > 1 && p.x != p.y)
    while (plan.log2_q_split < kLogP - 5 && (blocks << (plan.log2_q_split + 1)) <= sms) ++plan.log2_q_split;
  auto kernel = rht_main_kernel<T, kLogP, false, false, Src>;
  if constexpr (!std::is_same<T, float>::value && kX) {
    if (p.m > 1 && blocks >= sms) kernel = rht_main_kernel<T, kLogP, true>;
  }
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) != cudaSuccess)
    return Status::kCudaError;
  const cudaError_t e = launch_on(device, true, kernel, dim3(unsigned(blocks), 1u << plan.log2_q_split),
                                  dim3(threads), smem, stream, p, plan, src);
  return e == cudaSuccess && cudaGetLastError() == cudaSuccess ? Status::kOk : Status::kCudaError;
}

template <typename T>
Status launch_typed(const RhtParams& p, const Plan& plan, cudaStream_t stream) {
  if (main_kernel_fits(p, sizeof(T))) {
    switch (p.log2_p) {
      case 5: return launch_main<T, 5>(p, stream);
      case 6: return launch_main<T, 6>(p, stream);
      case 7: return launch_main<T, 7>(p, stream);
      case 8: return launch_main<T, 8>(p, stream);
      case 9: return launch_main<T, 9>(p, stream);
      case 10: return launch_main<T, 10>(p, stream);
      case 11: return launch_main<T, 11>(p, stream);
      case 12: return launch_main<T, 12>(p, stream);
      case 13: return launch_main<T, 13>(p, stream);
      case 14: return launch_main<T, 14>(p, stream);
      case 15: return launch_main<T, 15>(p, stream);
      default: break;
    }
  }
  return launch_generic<T>(p, plan, stream);
}

template <typename T>
Status launch_generic(const RhtParams& p, const Plan& plan, cudaStream_t stream) {
  const size_t smem = smem_bytes(p, plan);
  const bool vec = (reinterpret_cast<uintptr_t>(p.x) % 16 == 0) &&
                   (p.x_row_stride * int64_t(sizeof(T))) % 16 == 0;
  auto kernel = vec ? rht_generic_kernel<T, true> : rht_generic_kernel<T, false>;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) != cudaSuccess)
    return Status::kCudaError;
  const int tile = plan.rows_per_block * p.n;
  const int threads = std::min(1024, std::max(32, ((tile / kV + 31) / 32) * 32));
  const int64_t blocks = (p.rows + plan.rows_per_block - 1) / plan.rows_per_block;
  if (blocks > int64_t(0x7fffffff)) return Status::kUnsupported;
  const cudaError_t e = launch(kernel, dim3(unsigned(blocks)), dim3(threads), smem, stream, p, plan);
  return e == cudaSuccess && cudaGetLastError() == cudaSuccess ? Status::kOk : Status::kCudaError;
}


template <typename T>
Status launch_rows_2bit(const RhtParams& p, const Rows2bit& src, cudaStream_t stream) {
  switch (p.log2_p) {
    case 8: return launch_main<T, 8>(p, stream, src);
    case 9: return launch_main<T, 9>(p, stream, src);
    case 10: return launch_main<T, 10>(p, stream, src);
    case 11: return launch_main<T, 11>(p, stream, src);
    case 12: return launch_main<T, 12>(p, stream, src);
    case 13: return launch_main<T, 13>(p, stream, src);
    case 14: return launch_main<T, 14>(p, stream, src);
    case 15: return launch_main<T, 15>(p, stream, src);
    default: return Status::kUnsupported;
  }
}

}  // namespace

Status rht_launch(const RhtParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.n < 1 || p.m < 1 || p.log2_p < 0) return Status::kInvalidArgument;
  if (p.m > kRhtMaxM || p.log2_p > kRhtMaxLog2P || p.n > kRhtMaxRowElems) return Status::kUnsupported;
  if (int64_t(p.m) << p.log2_p != p.n) return Status::kInvalidArgument;
  if (p.rows == 0) return Status::kOk;
  if (p.x == nullptr || p.y == nullptr) return Status::kInvalidArgument;
  RhtParams q = p;
  if (q.n_in == 0) q.n_in = q.n;
  if (q.n_out == 0) q.n_out = q.n;
  if (q.n_in < 1 || q.n_in > q.n || q.n_out < 1 || q.n_out > q.n) return Status::kInvalidArgument;
  if (q.x_row_stride < q.n_in || q.y_row_stride < q.n_out) return Status::kInvalidArgument;
  if (q.x == q.y && (q.x_row_stride != q.y_row_stride || q.n_in != q.n || q.n_out != q.n))
    return Status::kInvalidArgument;
  const Plan plan = make_plan(q);
  switch (q.dtype) {
    case DType::kF16: return launch_typed<__half>(q, plan, stream);
    case DType::kBF16: return launch_typed<__nv_bfloat16>(q, plan, stream);
    case DType::kF32: return launch_typed<float>(q, plan, stream);
  }
  return Status::kUnsupported;
}

Status dequantize_2bit_hadamard_launch(const Dequantize2bitParams& d, cudaStream_t stream) {
  if (d.packed == nullptr || d.scales == nullptr || d.out == nullptr) return Status::kInvalidArgument;
  if (d.N < 1 || d.K < 64 || d.K % 64 || d.out_row_stride < d.K) return Status::kInvalidArgument;
  if (d.q != nullptr) return Status::kUnsupported;  // m = 1 only
  int log2_k = 0;
  while ((1 << log2_k) < d.K) ++log2_k;
  if ((1 << log2_k) != d.K || log2_k < 8 || log2_k > kRhtMaxLog2P) return Status::kUnsupported;
  if (!(d.group_size == 64 || d.group_size == 128 || d.group_size == d.K)) return Status::kUnsupported;
  // two words a thread as one 8-byte load; the signs as 32-bit words
  if (reinterpret_cast<uintptr_t>(d.packed) % 8 || reinterpret_cast<uintptr_t>(d.signs_in) % 4)
    return Status::kMisaligned;
  RhtParams p;
  p.x = d.packed;  // not read as x: the rows come from src
  p.y = d.out;
  p.rows = d.N;
  p.x_row_stride = d.K;
  p.y_row_stride = d.out_row_stride;
  p.n = p.n_in = p.n_out = d.K;
  p.m = 1;
  p.log2_p = log2_k;
  p.signs_out = d.signs_in;  // row form of W · T_K · S_in: S_in · T_K · w (T_K symmetric)
  p.dtype = d.dtype;
  int log2_g = 0;
  while ((1 << log2_g) < d.group_size) ++log2_g;
  const Rows2bit src{reinterpret_cast<const uint32_t*>(d.packed), d.scales, d.zeros, d.K / 16, d.K / d.group_size,
                     log2_g};
  switch (d.dtype) {
    case DType::kF16: return launch_rows_2bit<__half>(p, src, stream);
    case DType::kBF16: return launch_rows_2bit<__nv_bfloat16>(p, src, stream);
    default: return Status::kUnsupported;
  }
}

}  // namespace quipkern
