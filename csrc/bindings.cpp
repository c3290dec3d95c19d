// quipkern: the only file in csrc/ that includes torch.  It registers the CUDA kernels
// as private ops (torch.ops.quipkern._<name>_cuda) that the public ops in
// quipkern/ops/ dispatch to; it checks what the kernels assume and turns their status
// codes into torch errors.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <Python.h>

#include "quipkern/dequantize_2bit.h"
#include "quipkern/linear_2bit.h"
#include "quipkern/linear_ternary.h"
#include "quipkern/rht.h"

namespace {

using quipkern::DType;
using quipkern::Status;

// Error messages are built here from std::string pieces and handed to TORCH_CHECK as one
// string, which torch passes on unformatted and throws from libc10.  Why not TORCH_CHECK's
// own formatting: some toolchains link libstdc++ statically into the extension, and that
// copy's iostreams crash inside a process that runs another copy (H100 machine, device
// run 4, 2026-11-23: a failing check with an integer argument segfaulted in
// std::ostream::operator<<(long) of the extension's own libstdc++).
std::string to_text(const char* s) { return s; }
std::string to_text(const std::string& s) { return s; }
template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
std::string to_text(T v) { return std::to_string(v); }
std::string to_text(at::IntArrayRef a) {
  std::string s = "(";
  for (size_t i = 0; i < a.size(); ++i) s += (i ? ", " : "") + std::to_string(a[i]);
  return s + ")";
}
std::string to_text(c10::ScalarType t) { return c10::toString(t); }
std::string to_text(const c10::Device& d) { return d.str(); }
template <typename... A>
std::string text(const A&... a) {
  std::string s;
  ((s += to_text(a)), ...);
  return s;
}
#define QK_CHECK(cond, ...) TORCH_CHECK(cond, text(__VA_ARGS__))
#define QK_CHECK_TYPE(cond, ...) TORCH_CHECK_TYPE(cond, text(__VA_ARGS__))

void check_status(Status s, const char* op) {
  QK_CHECK(s == Status::kOk, op, ": kernel refused the call: ", quipkern::status_string(s),
              s == Status::kCudaError ? std::string(" (") + cudaGetErrorString(cudaGetLastError()) + ")" : "");
}

DType to_dtype(const at::Tensor& t, const char* op, const char* name) {
  switch (t.scalar_type()) {
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    case at::kFloat: return DType::kF32;
    default: QK_CHECK_TYPE(false, op, ": '", name, "' must be float16, bfloat16 or float32; got ", t.scalar_type());
  }
}

void check_cuda(const at::Tensor& t, const at::Tensor& like, const char* op, const char* name) {
  QK_CHECK(t.is_cuda() && t.device() == like.device(), op, ": '", name, "' must be on ", like.device(),
              "; got ", t.device());
}

const uint8_t* signs_ptr(const std::optional<at::Tensor>& s, const at::Tensor& x, int64_t n, const char* name,
                         const char* op = "_rht_cuda") {
  if (!s) return nullptr;
  check_cuda(*s, x, op, name);
  QK_CHECK(s->scalar_type() == at::kByte && s->dim() == 1 && s->numel() == (n + 7) / 8 && s->is_contiguous(),
              op, ": '", name, "' must be a contiguous uint8 bitmask of ", (n + 7) / 8, " bytes; got ",
              s->sizes(), " ", s->scalar_type());
  return s->data_ptr<uint8_t>();
}

// out = scale · S_out · T · S_in · x for 2-D x (rows, n_in) and out (rows, n_out) with
// n_in, n_out <= n, the transform width (x zero-padded, out trimmed); out may be x.
// Without q, chunks = m > 1 takes Q = I_m (H_p on each of m chunks: RhtParams::q).
void rht_cuda(const at::Tensor& x, const std::optional<at::Tensor>& q, const std::optional<at::Tensor>& signs_in,
              const std::optional<at::Tensor>& signs_out, double scale, bool transpose, int64_t n, at::Tensor& out,
              int64_t chunks) {
  const char* op = "_rht_cuda";
  QK_CHECK(x.is_cuda(), op, ": 'x' must be a CUDA tensor; got ", x.device());
  check_cuda(out, x, op, "out");
  QK_CHECK(x.dim() == 2 && x.size(1) > 0 && x.stride(1) == 1, op,
              ": 'x' must be 2-D (rows, n_in) with a contiguous last dim; got ", x.sizes(), " strides ", x.strides());
  QK_CHECK(out.scalar_type() == x.scalar_type() && out.dim() == 2 && out.size(0) == x.size(0) &&
              out.size(1) > 0 && out.stride(1) == 1, op,
              ": 'out' must be 2-D (rows, n_out) in x's dtype with x's rows and a contiguous last dim; got ",
              out.sizes(), " ", out.scalar_type());
  QK_CHECK(n <= quipkern::kRhtMaxRowElems, op, ": n=", n, " exceeds ", quipkern::kRhtMaxRowElems);
  QK_CHECK(x.size(1) <= n && out.size(1) <= n, op, ": x has ", x.size(1), " and out ", out.size(1),
              " columns; both must be at most the transform width n=", n);
  quipkern::RhtParams p;
  p.x = x.data_ptr();
  p.y = out.data_ptr();
  p.rows = x.size(0);
  p.n_in = int(x.size(1));
  p.n_out = int(out.size(1));
  p.x_row_stride = x.size(0) > 1 ? x.stride(0) : x.size(1);
  p.y_row_stride = out.size(0) > 1 ? out.stride(0) : out.size(1);
  p.n = int(n);
  p.m = 1;
  if (q) {
    check_cuda(*q, x, op, "q");
    QK_CHECK(q->scalar_type() == at::kFloat && q->dim() == 2 && q->size(0) == q->size(1) && q->is_contiguous(),
                op, ": 'q' must be a contiguous square float32 matrix; got ", q->sizes(), " ", q->scalar_type());
    QK_CHECK(chunks == 1, op, ": chunks=", chunks, " is for a transform without q (Q = I_m); q is given");
    p.m = int(q->size(0));
    p.q = q->data_ptr<float>();
  } else {
    QK_CHECK(chunks >= 1 && chunks <= quipkern::kRhtMaxM, op, ": chunks=", chunks, " must be in [1, ",
             quipkern::kRhtMaxM, "]");
    p.m = int(chunks);
  }
  QK_CHECK(n % p.m == 0, op, ": n=", n, " is not a multiple of m=", p.m);
  const int64_t pp = n / p.m;
  QK_CHECK((pp & (pp - 1)) == 0, op, ": n / m = ", pp, " is not a power of two");
  p.log2_p = 0;
  while ((int64_t(1) << p.log2_p) < pp) ++p.log2_p;
  p.signs_in = signs_ptr(signs_in, x, n, "signs_in");
  p.signs_out = signs_ptr(signs_out, x, n, "signs_out");
  p.scale = float(scale);
  p.transpose = transpose;
  p.dtype = to_dtype(x, op, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  check_status(quipkern::rht_launch(p, c10::cuda::getCurrentCUDAStream()), op);
}

// A decode GEMV's activations: 2-D (M, K) on the GPU, last dim contiguous, float16 or
// bfloat16; returns their dtype.
DType check_decode_x(const at::Tensor& x, const char* op) {
  QK_CHECK(x.is_cuda() && x.dim() == 2 && x.stride(1) == 1, op, ": 'x' must be a 2-D CUDA tensor with a contiguous "
           "last dim; got ", x.sizes(), " on ", x.device());
  const DType dt = to_dtype(x, op, "x");
  QK_CHECK(dt != DType::kF32, op, ": 'x' must be float16 or bfloat16");
  return dt;
}

// The 2-bit formats' scales: float16 (N, K/g), one per group of g columns (g divides K).
void check_scales(const at::Tensor& scales, int64_t N, int64_t K, const char* op) {
  QK_CHECK(scales.scalar_type() == at::kHalf && scales.dim() == 2 && scales.size(0) == N && scales.is_contiguous() &&
               scales.size(1) > 0 && K % scales.size(1) == 0,
           op, ": 'scales' must be contiguous float16 (N, K/g); got ", scales.sizes(), " ", scales.scalar_type());
}

// The 2-bit formats' optional zeros (asymmetric grid): float16 shaped like the scales, on
// `like`'s device; nullptr for the symmetric grid.
const uint16_t* zeros_ptr(const std::optional<at::Tensor>& zeros, const at::Tensor& scales, const at::Tensor& like,
                          const char* op) {
  if (!zeros) return nullptr;
  check_cuda(*zeros, like, op, "zeros");
  QK_CHECK(zeros->scalar_type() == at::kHalf && zeros->sizes() == scales.sizes() && zeros->is_contiguous(), op,
           ": 'zeros' must be contiguous float16 shaped like 'scales'");
  return reinterpret_cast<const uint16_t*>(zeros->data_ptr());
}

// A decode layer's optional bias: (N,) contiguous in the dtype of `like` (named like_name:
// x, or out where x is int8), on its device; nullptr for none.
const void* bias_ptr(const std::optional<at::Tensor>& bias, const at::Tensor& like, int64_t N, const char* op,
                     const char* like_name = "x") {
  if (!bias) return nullptr;
  check_cuda(*bias, like, op, "bias");
  QK_CHECK(bias->scalar_type() == like.scalar_type() && bias->numel() == N && bias->is_contiguous(), op,
           ": 'bias' must be contiguous (N,) in ", like_name, "'s dtype");
  return bias->data_ptr();
}

// The stride between the rows of a kernel's (M, width) operand: a one-row tensor may carry
// any stride (a view of a wider row), so it is given as the width.
int64_t row_stride(const at::Tensor& t, int64_t width) { return t.size(0) > 1 ? t.stride(0) : width; }

// The ternary formats' scale: float32 (N,) per row or (1,) per tensor, contiguous.
void check_ternary_scale(const at::Tensor& scale, int64_t N, const char* op) {
  QK_CHECK(scale.scalar_type() == at::kFloat && scale.dim() == 1 && (scale.size(0) == N || scale.size(0) == 1) &&
               scale.is_contiguous(),
           op, ": 'scale' must be contiguous float32 (N,) = (", N, ",) or (1,); got ", scale.sizes(), " ",
           scale.scalar_type());
}

// A ternary-2bit weight for K input columns: contiguous int32 (N, K/16); returns N.
int64_t check_ternary_2bit_packed(const at::Tensor& packed, int64_t K, const char* op) {
  QK_CHECK(packed.scalar_type() == at::kInt && packed.dim() == 2 && packed.is_contiguous() && packed.size(1) * 16 == K,
           op, ": 'packed' must be a contiguous int32 (N, K/16) = (N, ", K / 16, ") tensor; got ", packed.sizes(), " ",
           packed.scalar_type());
  return packed.size(0);
}

// A decode kernel's output: (M, N) in x's dtype with a contiguous last dim.
void check_out_like_x(const at::Tensor& out, const at::Tensor& x, int64_t M, int64_t N, const char* op) {
  QK_CHECK(out.scalar_type() == x.scalar_type() && out.dim() == 2 && out.size(0) == M && out.size(1) == N &&
               out.stride(1) == 1,
           op, ": 'out' must be (M, N) = (", M, ", ", N, ") in x's dtype with a contiguous last dim; got ",
           out.sizes(), " ", out.scalar_type());
}

// out[:M, :N] = x @ W^T (+ bias) for the 2-bit weight (packed, scales, zeros); M <= 16.
// scales: float16 (N, K/g), or float32 (N, 1) per row (Linear2bitParams::row_scales).
// pdl: the kernel before it on the stream is quipkern's rht (Linear2bitParams::pdl);
// fixed_x: Linear2bitParams::fixed_x.
void linear_2bit_gemv_cuda(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                           const std::optional<at::Tensor>& zeros, const std::optional<at::Tensor>& bias,
                           at::Tensor& out, bool pdl, bool fixed_x) {
  const char* op = "_linear_2bit_gemv_cuda";
  const DType dt = check_decode_x(x, op);
  check_cuda(packed, x, op, "packed");
  check_cuda(scales, x, op, "scales");
  check_cuda(out, x, op, "out");
  QK_CHECK(packed.scalar_type() == at::kInt && packed.dim() == 2 && packed.is_contiguous(), op,
              ": 'packed' must be a contiguous int32 (N, K/16) tensor");
  const int64_t N = packed.size(0), K = packed.size(1) * 16, M = x.size(0);
  QK_CHECK(x.size(1) == K, op, ": x has ", x.size(1), " columns, the weight K=", K);
  QK_CHECK(M >= 1 && M <= quipkern::kGemv2bitMaxM, op, ": M=", M, " rows; the decode kernel takes 1..16");
  // float32 (N, 1), rows 0 or 1 apart: one scale per row as the ternary formats store it
  const bool row_f32 = scales.scalar_type() == at::kFloat;
  if (row_f32) {
    QK_CHECK(scales.dim() == 2 && scales.size(0) == N && scales.size(1) == 1 &&
                 (scales.stride(0) == 0 || scales.stride(0) == 1),
             op, ": float32 'scales' must be one per row, (N, 1) with rows 0 or 1 apart; got ", scales.sizes(),
             " with strides ", scales.strides());
  } else {
    check_scales(scales, N, K, op);
  }
  check_out_like_x(out, x, M, N, op);
  // group scales (and zeros) travel to shared memory as 16-byte pieces
  QK_CHECK(scales.size(1) == 1 || reinterpret_cast<uintptr_t>(scales.data_ptr()) % 16 == 0, op,
              ": 'scales' (", scales.sizes(), ") must start at a 16-byte aligned address (a fresh tensor does)");
  QK_CHECK(!zeros || scales.size(1) == 1 || reinterpret_cast<uintptr_t>(zeros->data_ptr()) % 16 == 0, op,
              ": 'zeros' must start at a 16-byte aligned address (a fresh tensor does)");
  quipkern::Linear2bitParams p;
  p.x = x.data_ptr();
  p.x_row_stride = row_stride(x, K);
  p.y = out.data_ptr();
  p.y_row_stride = row_stride(out, N);
  p.packed = packed.data_ptr<int32_t>();
  if (row_f32) {
    p.row_scales = scales.data_ptr<float>();
    p.row_scale_stride = scales.stride(0);
  } else {
    p.scales = reinterpret_cast<const uint16_t*>(scales.data_ptr());
  }
  p.zeros = zeros_ptr(zeros, scales, x, op);
  p.bias = bias_ptr(bias, x, N, op);
  p.M = int(M);
  p.N = int(N);
  p.K = int(K);
  p.group_size = int(K / scales.size(1));
  p.dtype = dt;
  p.pdl = pdl;
  p.fixed_x = fixed_x;
  const c10::cuda::CUDAGuard guard(x.device());
  check_status(quipkern::linear_2bit_gemv_launch(p, c10::cuda::getCurrentCUDAStream()), op);
}

// out[:M, :N] = scale · (x @ T^T) (+ bias) for the ternary-base3 weight (packed) of K
// input columns; M <= 16.
void linear_ternary_base3_gemv_cuda(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scale,
                                    const std::optional<at::Tensor>& bias, at::Tensor& out, int64_t K) {
  const char* op = "_linear_ternary_base3_gemv_cuda";
  const DType dt = check_decode_x(x, op);
  check_cuda(packed, x, op, "packed");
  check_cuda(scale, x, op, "scale");
  check_cuda(out, x, op, "out");
  const int64_t M = x.size(0);
  QK_CHECK(M >= 1 && M <= quipkern::kGemvTernaryMaxM, op, ": M=", M, " rows; the decode kernel takes 1..16");
  QK_CHECK(K >= 2 && K % 2 == 0 && x.size(1) == K, op, ": K=", K, " must be even and x's width; x has ", x.size(1),
           " columns");
  QK_CHECK(packed.scalar_type() == at::kByte && packed.dim() == 2 && packed.is_contiguous() &&
               packed.size(1) == 16 * ((K + 79) / 80),
           op, ": 'packed' must be a contiguous uint8 (N, 16·ceil(K/80)) = (N, ", 16 * ((K + 79) / 80),
           ") tensor; got ", packed.sizes(), " ", packed.scalar_type());
  const int64_t N = packed.size(0);
  check_ternary_scale(scale, N, op);
  check_out_like_x(out, x, M, N, op);
  QK_CHECK(reinterpret_cast<uintptr_t>(x.data_ptr()) % 4 == 0 && (M == 1 || x.stride(0) % 2 == 0), op,
           ": 'x' must start at a 4-byte aligned address with an even row stride (a fresh tensor does)");
  quipkern::LinearTernaryBase3Params p;
  p.x = x.data_ptr();
  p.x_row_stride = row_stride(x, K);
  p.y = out.data_ptr();
  p.y_row_stride = row_stride(out, N);
  p.packed = packed.data_ptr<uint8_t>();
  p.scale = scale.data_ptr<float>();
  p.per_row_scale = scale.size(0) == N;
  p.bias = bias_ptr(bias, x, N, op);
  p.M = int(M);
  p.N = int(N);
  p.K = int(K);
  p.dtype = dt;
  const c10::cuda::CUDAGuard guard(x.device());
  check_status(quipkern::linear_ternary_base3_gemv_launch(p, c10::cuda::getCurrentCUDAStream()), op);
}

// out (M, N) int32 = q · tritsᵀ, exact (W1.58A8 decode; M <= 16); or with act_scale (M,)
// float32, out float16/bfloat16 = (that · act_scale[b]) · scale[n] (+ bias[n]) in float32
// (the W1.58A8 layer's epilogue; scale float32 (N,) or (1,), bias in out's dtype).
void ternary_int8_gemv_cuda(const at::Tensor& q, const at::Tensor& packed, at::Tensor& out,
                            const std::optional<at::Tensor>& act_scale, const std::optional<at::Tensor>& scale,
                            const std::optional<at::Tensor>& bias) {
  const char* op = "_ternary_int8_gemv_cuda";
  QK_CHECK(q.is_cuda() && q.scalar_type() == at::kChar && q.dim() == 2 && q.stride(1) == 1, op,
           ": 'q' must be an int8 (M, K) CUDA tensor with a contiguous last dim; got ", q.sizes(), " ",
           q.scalar_type(), " on ", q.device());
  check_cuda(packed, q, op, "packed");
  check_cuda(out, q, op, "out");
  const int64_t M = q.size(0), K = q.size(1);
  const int64_t N = check_ternary_2bit_packed(packed, K, op);
  QK_CHECK(M >= 1 && M <= quipkern::kTernaryInt8GemvMaxM && K % 64 == 0 && K <= quipkern::kTernaryInt8GemvMaxK, op,
           ": q of shape ", q.sizes(), ": the decode kernel takes M = 1..", quipkern::kTernaryInt8GemvMaxM,
           " rows and K a multiple of 64 up to ", quipkern::kTernaryInt8GemvMaxK);
  QK_CHECK(reinterpret_cast<uintptr_t>(q.data_ptr()) % 16 == 0 && (M == 1 || q.stride(0) % 16 == 0), op,
           ": 'q' must start at a 16-byte aligned address with a row stride that is a multiple of 16 (a fresh tensor does)");
  quipkern::TernaryInt8Params p;
  if (act_scale) {
    check_cuda(*act_scale, q, op, "act_scale");
    QK_CHECK(act_scale->scalar_type() == at::kFloat && act_scale->numel() == M && act_scale->is_contiguous(), op,
             ": 'act_scale' must be contiguous float32 with M = ", M, " elements; got ", act_scale->sizes(), " ",
             act_scale->scalar_type());
    QK_CHECK(scale.has_value(), op, ": 'scale' is needed with 'act_scale'");
    check_cuda(*scale, q, op, "scale");
    check_ternary_scale(*scale, N, op);
    QK_CHECK((out.scalar_type() == at::kHalf || out.scalar_type() == at::kBFloat16) && out.dim() == 2 &&
                 out.size(0) == M && out.size(1) == N && out.stride(1) == 1,
             op, ": with 'act_scale', 'out' must be float16 or bfloat16 (M, N) = (", M, ", ", N,
             ") with a contiguous last dim; got ", out.sizes(), " ", out.scalar_type());
    p.act_scale = act_scale->data_ptr<float>();
    p.scale = scale->data_ptr<float>();
    p.scale_stride = scale->size(0) == 1 ? 0 : 1;
    p.bias = bias_ptr(bias, out, N, op, "out");
    p.dtype = to_dtype(out, op, "out");
  } else {
    QK_CHECK(!scale && !bias, op, ": 'scale' and 'bias' go with 'act_scale' (the float epilogue)");
    QK_CHECK(out.scalar_type() == at::kInt && out.dim() == 2 && out.size(0) == M && out.size(1) == N &&
                 out.stride(1) == 1,
             op, ": 'out' must be int32 (M, N) = (", M, ", ", N, ") with a contiguous last dim; got ", out.sizes(),
             " ", out.scalar_type());
  }
  p.q = static_cast<const int8_t*>(q.data_ptr());
  p.q_row_stride = row_stride(q, K);
  p.y = out.data_ptr();
  p.y_row_stride = row_stride(out, N);
  p.packed = packed.data_ptr<int32_t>();
  p.M = int(M);
  p.N = int(N);
  p.K = int(K);
  const c10::cuda::CUDAGuard guard(q.device());
  check_status(quipkern::ternary_int8_gemv_launch(p, c10::cuda::getCurrentCUDAStream()), op);
}

// out (M, N) in x's dtype = the W1.58A8 layer's decode step in one kernel: x quantized per
// row (Q = qmax), the exact integer product, (· s_b) · scale (+ bias) in float32
// (ternary_a8_gemv_launch).  M <= 8, M·K <= 16384; scale float32 (N,) or (1,).
void ternary_a8_gemv_cuda(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scale,
                          const std::optional<at::Tensor>& bias, at::Tensor& out, int64_t qmax, bool pdl) {
  const char* op = "_ternary_a8_gemv_cuda";
  const DType dt = check_decode_x(x, op);
  check_cuda(packed, x, op, "packed");
  check_cuda(scale, x, op, "scale");
  check_cuda(out, x, op, "out");
  const int64_t M = x.size(0), K = x.size(1);
  const int64_t N = check_ternary_2bit_packed(packed, K, op);
  QK_CHECK(M >= 1 && M <= quipkern::kTernaryA8GemvMaxM && K % 64 == 0 && M * K <= 16384, op, ": x of shape ",
           x.sizes(), ": the kernel takes M = 1..", quipkern::kTernaryA8GemvMaxM,
           " rows, K a multiple of 64 and M·K <= 16384");
  check_ternary_scale(scale, N, op);
  QK_CHECK(qmax == 127 || qmax == 7, op, ": qmax must be 127 (int8 activations) or 7 (int4); got ", qmax);
  check_out_like_x(out, x, M, N, op);
  QK_CHECK(reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0 && (M == 1 || x.stride(0) % 8 == 0), op,
           ": 'x' must start at a 16-byte aligned address with a row stride that is a multiple of 8 (a fresh tensor does)");
  quipkern::TernaryA8Params p;
  p.x = x.data_ptr();
  p.x_row_stride = row_stride(x, K);
  p.y = out.data_ptr();
  p.y_row_stride = row_stride(out, N);
  p.packed = packed.data_ptr<int32_t>();
  p.scale = scale.data_ptr<float>();
  p.scale_stride = scale.size(0) == 1 ? 0 : 1;
  p.bias = bias_ptr(bias, x, N, op);
  p.M = int(M);
  p.N = int(N);
  p.K = int(K);
  p.qmax = int(qmax);
  p.dtype = dt;
  p.pdl = pdl;
  const c10::cuda::CUDAGuard guard(x.device());
  check_status(quipkern::ternary_a8_gemv_launch(p, c10::cuda::getCurrentCUDAStream()), op);
}

// out (N, K) = the dense 2-bit weight (packed, scales, zeros) in out's dtype; with q (m, m)
// float32, that weight with Q folded in: (Qᵀ ⊗ I) W, or W (Q ⊗ I) when fold_in; with
// hadamard_in, W (H_K / sqrt K) S_in (signs_in: S_in's bitmask or none).
void dequantize_2bit_cuda(const at::Tensor& packed, const at::Tensor& scales, const std::optional<at::Tensor>& zeros,
                          at::Tensor& out, const std::optional<at::Tensor>& q, bool fold_in, bool hadamard_in,
                          const std::optional<at::Tensor>& signs_in) {
  const char* op = "_dequantize_2bit_cuda";
  QK_CHECK(packed.is_cuda() && packed.scalar_type() == at::kInt && packed.dim() == 2 && packed.is_contiguous(), op,
           ": 'packed' must be a contiguous int32 (N, K/16) CUDA tensor; got ", packed.sizes(), " ",
           packed.scalar_type(), " on ", packed.device());
  check_cuda(scales, packed, op, "scales");
  check_cuda(out, packed, op, "out");
  const int64_t N = packed.size(0), K = packed.size(1) * 16;
  check_scales(scales, N, K, op);
  QK_CHECK(out.dim() == 2 && out.size(0) == N && out.size(1) == K && out.stride(1) == 1, op,
           ": 'out' must be (N, K) = (", N, ", ", K, ") with a contiguous last dim; got ", out.sizes());
  quipkern::Dequantize2bitParams p;
  p.packed = packed.data_ptr<int32_t>();
  p.scales = reinterpret_cast<const uint16_t*>(scales.data_ptr());
  p.zeros = zeros_ptr(zeros, scales, packed, op);
  p.out = out.data_ptr();
  p.out_row_stride = out.stride(0);
  p.N = int(N);
  p.K = int(K);
  p.group_size = int(K / scales.size(1));
  p.dtype = to_dtype(out, op, "out");
  if (q) {
    check_cuda(*q, packed, op, "q");
    QK_CHECK(q->scalar_type() == at::kFloat && q->dim() == 2 && q->size(0) == q->size(1) && q->is_contiguous(),
             op, ": 'q' must be a contiguous square float32 matrix; got ", q->sizes(), " ", q->scalar_type());
    p.q = q->data_ptr<float>();
    p.m = int(q->size(0));
    p.fold_in = fold_in;
  }
  QK_CHECK(hadamard_in || !signs_in, op, ": 'signs_in' is given but hadamard_in is False");
  p.hadamard_in = hadamard_in;
  if (signs_in) p.signs_in = signs_ptr(signs_in, packed, K, "signs_in", op);
  const c10::cuda::CUDAGuard guard(packed.device());
  check_status(quipkern::dequantize_2bit_launch(p, c10::cuda::getCurrentCUDAStream()), op);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quipkern, m) {
  m.def("_rht_cuda(Tensor x, Tensor? q, Tensor? signs_in, Tensor? signs_out, float scale, bool transpose, "
        "int n, Tensor(a!) out, int chunks=1) -> ()");
  m.def("_linear_2bit_gemv_cuda(Tensor x, Tensor packed, Tensor scales, Tensor? zeros, Tensor? bias, "
        "Tensor(a!) out, bool pdl=False, bool fixed_x=True) -> ()");
  m.def("_dequantize_2bit_cuda(Tensor packed, Tensor scales, Tensor? zeros, Tensor(a!) out, Tensor? q=None, "
        "bool fold_in=False, bool hadamard_in=False, Tensor? signs_in=None) -> ()");
  m.def("_linear_ternary_base3_gemv_cuda(Tensor x, Tensor packed, Tensor scale, Tensor? bias, Tensor(a!) out, "
        "int K) -> ()");
  m.def("_ternary_int8_gemv_cuda(Tensor q, Tensor packed, Tensor(a!) out, Tensor? act_scale=None, Tensor? scale=None, "
        "Tensor? bias=None) -> ()");
  m.def("_ternary_a8_gemv_cuda(Tensor x, Tensor packed, Tensor scale, Tensor? bias, Tensor(a!) out, int qmax, "
        "bool pdl=False) -> ()");
}

TORCH_LIBRARY_IMPL(quipkern, CUDA, m) {
  m.impl("_rht_cuda", &rht_cuda);
  m.impl("_linear_2bit_gemv_cuda", &linear_2bit_gemv_cuda);
  m.impl("_dequantize_2bit_cuda", &dequantize_2bit_cuda);
  m.impl("_linear_ternary_base3_gemv_cuda", &linear_ternary_base3_gemv_cuda);
  m.impl("_ternary_int8_gemv_cuda", &ternary_int8_gemv_cuda);
  m.impl("_ternary_a8_gemv_cuda", &ternary_a8_gemv_cuda);
}

// quipkern._C is imported for its registrations; it has no Python-level functions.
static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module_def); }
