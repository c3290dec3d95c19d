// A C++ user of quipkern's kernels without torch: transform a few rows of width
// 384 = 12·32 (a Hadamard factor of order 12 times H_32) and check the result against
// a plain double-precision loop.  Exits 0 with a note when there is no GPU.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cuda_runtime.h>

#include "quipkern/rht.h"

#define CHECK_CUDA(call)                                                               \
  do {                                                                                 \
    cudaError_t e_ = (call);                                                           \
    if (e_ != cudaSuccess) {                                                           \
      std::fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(e_));          \
      return 1;                                                                        \
    }                                                                                  \
  } while (0)

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: the example was built, nothing to run\n");
    return 0;
  }
  const int m = 12, p = 32, n = m * p, rows = 5;
  // Q_12 from Paley's construction (q = 11), normalised.
  std::vector<int> chi(11, -1);
  chi[0] = 0;
  for (int a = 1; a < 11; ++a) chi[(a * a) % 11] = 1;
  std::vector<float> q(m * m);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      int h;
      if (i == 0) h = 1;
      else if (j == 0) h = -1;
      else h = chi[((i - j) % 11 + 11) % 11] + (i == j ? 1 : 0);
      q[i * m + j] = float(h / std::sqrt(double(m)));
    }
  std::vector<float> x(rows * n), y(rows * n);
  srand(1);
  for (auto& v : x) v = float(rand()) / RAND_MAX - 0.5f;

  float *dx, *dy, *dq;
  CHECK_CUDA(cudaMalloc(&dx, x.size() * 4));
  CHECK_CUDA(cudaMalloc(&dy, y.size() * 4));
  CHECK_CUDA(cudaMalloc(&dq, q.size() * 4));
  CHECK_CUDA(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dq, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
  quipkern::RhtParams prm;
  prm.x = dx; prm.y = dy; prm.rows = rows; prm.x_row_stride = n; prm.y_row_stride = n;
  prm.n = n; prm.m = m; prm.log2_p = 5; prm.q = dq; prm.dtype = quipkern::DType::kF32;
  const quipkern::Status s = quipkern::rht_launch(prm, nullptr);
  if (s != quipkern::Status::kOk) {
    std::fprintf(stderr, "rht_launch: %s\n", quipkern::status_string(s));
    return 1;
  }
  CHECK_CUDA(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost));

  double err = 0, ref_norm = 0;
  for (int r = 0; r < rows; ++r)
    for (int a = 0; a < m; ++a)
      for (int b = 0; b < p; ++b) {
        double acc = 0;
        for (int a2 = 0; a2 < m; ++a2)
          for (int b2 = 0; b2 < p; ++b2) {
            const int sign = (__builtin_popcount(b & b2) & 1) ? -1 : 1;
            acc += double(q[a * m + a2]) * sign * x[r * n + a2 * p + b2];
          }
        acc /= std::sqrt(double(p));
        err += (acc - y[r * n + a * p + b]) * (acc - y[r * n + a * p + b]);
        ref_norm += acc * acc;
      }
  const double rel = std::sqrt(err / ref_norm);
  std::printf("rht of %d rows of width %d: relative error %.3g\n", rows, n, rel);
  cudaFree(dx); cudaFree(dy); cudaFree(dq);
  return rel < 1e-5 ? 0 : 1;
}
