// quipkern: the only file in csrc/ that includes torch.  It registers the CUDA kernels
// as private ops (torch.ops.quipkern._<name>_cuda) that the public ops in
// quipkern/ops/ dispatch to; it checks what the kernels assume and turns their status
// codes into torch errors.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <Python.h>

#include "quipkern/rht.h"

namespace {

using quipkern::DType;
using quipkern::Status;

void check_status(Status s, const char* op) {
  TORCH_CHECK(s == Status::kOk, op, ": kernel refused the call: ", quipkern::status_string(s),
              s == Status::kCudaError ? std::string(" (") + cudaGetErrorString(cudaGetLastError()) + ")" : "");
}

DType to_dtype(const at::Tensor& t, const char* op, const char* name) {
  switch (t.scalar_type()) {
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    case at::kFloat: return DType::kF32;
    default: TORCH_CHECK_TYPE(false, op, ": '", name, "' must be float16, bfloat16 or float32; got ", t.scalar_type());
  }
}

void check_cuda(const at::Tensor& t, const at::Tensor& like, const char* op, const char* name) {
  TORCH_CHECK(t.is_cuda() && t.device() == like.device(), op, ": '", name, "' must be on ", like.device(),
              "; got ", t.device());
}

const uint8_t* signs_ptr(const std::optional<at::Tensor>& s, const at::Tensor& x, int64_t n, const char* name) {
  if (!s) return nullptr;
  check_cuda(*s, x, "_rht_cuda", name);
  TORCH_CHECK(s->scalar_type() == at::kByte && s->dim() == 1 && s->numel() == (n + 7) / 8 && s->is_contiguous(),
              "_rht_cuda: '", name, "' must be a contiguous uint8 bitmask of ", (n + 7) / 8, " bytes; got ",
              s->sizes(), " ", s->scalar_type());
  return s->data_ptr<uint8_t>();
}

// out = scale · S_out · T · S_in · x for 2-D x and out of shape (rows, n); out may be x.
void rht_cuda(const at::Tensor& x, const std::optional<at::Tensor>& q, const std::optional<at::Tensor>& signs_in,
              const std::optional<at::Tensor>& signs_out, double scale, bool transpose, at::Tensor& out) {
  const char* op = "_rht_cuda";
  TORCH_CHECK(x.is_cuda(), op, ": 'x' must be a CUDA tensor; got ", x.device());
  check_cuda(out, x, op, "out");
  TORCH_CHECK(x.dim() == 2 && x.size(1) > 0 && x.stride(1) == 1, op,
              ": 'x' must be 2-D (rows, n) with a contiguous last dim; got ", x.sizes(), " strides ", x.strides());
  TORCH_CHECK(out.scalar_type() == x.scalar_type() && out.sizes() == x.sizes() && out.stride(1) == 1, op,
              ": 'out' must match x in shape and dtype, with a contiguous last dim");
  const int64_t n = x.size(1);
  TORCH_CHECK(n <= quipkern::kRhtMaxRowElems, op, ": n=", n, " exceeds ", quipkern::kRhtMaxRowElems);
  quipkern::RhtParams p;
  p.x = x.data_ptr();
  p.y = out.data_ptr();
  p.rows = x.size(0);
  p.x_row_stride = x.size(0) > 1 ? x.stride(0) : n;
  p.y_row_stride = out.size(0) > 1 ? out.stride(0) : n;
  p.n = int(n);
  p.m = 1;
  if (q) {
    check_cuda(*q, x, op, "q");
    TORCH_CHECK(q->scalar_type() == at::kFloat && q->dim() == 2 && q->size(0) == q->size(1) && q->is_contiguous(),
                op, ": 'q' must be a contiguous square float32 matrix; got ", q->sizes(), " ", q->scalar_type());
    p.m = int(q->size(0));
    p.q = q->data_ptr<float>();
  }
  TORCH_CHECK(n % p.m == 0, op, ": n=", n, " is not a multiple of m=", p.m);
  const int64_t pp = n / p.m;
  TORCH_CHECK((pp & (pp - 1)) == 0, op, ": n / m = ", pp, " is not a power of two");
  p.log2_p = 0;
  while ((int64_t(1) << p.log2_p) < pp) ++p.log2_p;
  p.signs_in = signs_ptr(signs_in, x, n, "signs_in");
  p.signs_out = signs_ptr(signs_out, x, n, "signs_out");
  p.scale = float(scale);
  p.transpose = transpose;
  p.dtype = to_dtype(x, op, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  check_status(quipkern::rht_launch(p, at::cuda::getCurrentCUDAStream()), op);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quipkern, m) {
  m.def("_rht_cuda(Tensor x, Tensor? q, Tensor? signs_in, Tensor? signs_out, float scale, bool transpose, "
        "Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(quipkern, CUDA, m) { m.impl("_rht_cuda", &rht_cuda); }

// quipkern._C is imported for its registrations; it has no Python-level functions.
static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module_def); }
