// rqs_block (rqs_avx512.h) as an XLA FFI handler, so the spline runs inside a compiled JAX
// program: x (..., m) and params (..., 3K - 1, m) float32, attributes lo, hi, inverse; returns
// the outputs and the elementwise log-det. The (row, 16-lane block) units are shared out in
// chunks between the calling thread and tasks on XLA's intra-op thread pool. A reference for
// benchmarks/rqs_native_floor.py (needs AVX-512F); not used by the package.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "rqs_avx512.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Work {
  const float *x, *p;
  float *y, *ld;
  int64_t m, blocks, units, chunk, chunks;
  float lo, hi;
  int inverse;
  std::atomic<int64_t> next{0}, done{0};

  // Claim chunks until none is left. The caller runs this too, so every chunk is done even if
  // no pool task ever starts; a task that starts late finds nothing to claim.
  void run() {
    for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
      for (int64_t u = c * chunk, end = std::min(units, (c + 1) * chunk); u < end; ++u) {
        const int64_t row = u / blocks, k = 16 * (u % blocks), rest = m - k;
        const __mmask16 lanes = rest >= 16 ? 0xFFFF : (__mmask16)((1u << rest) - 1);
        rqs_block(m, x + row * m + k, p + row * (3 * K - 1) * m + k, lo, hi, inverse,
                  y + row * m + k, ld + row * m + k, lanes);
      }
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

ffi::Error RqsImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> params,
                   float lo, float hi, bool inverse, ffi::ResultBuffer<ffi::F32> y,
                   ffi::ResultBuffer<ffi::F32> ld) {
  const auto dims = x.dimensions();
  if (dims.size() == 0) return ffi::Error::InvalidArgument("rqs: x must have rank >= 1");
  const int64_t m = dims.back();
  const int64_t rows = m == 0 ? 0 : static_cast<int64_t>(x.element_count()) / m;
  if (static_cast<int64_t>(params.element_count()) != rows * (3 * K - 1) * m)
    return ffi::Error::InvalidArgument("rqs: params must have shape (..., 3K - 1, m) as x");
  if (rows == 0) return ffi::Error::Success();
  auto w = std::make_shared<Work>();
  w->x = x.typed_data();
  w->p = params.typed_data();
  w->y = y->typed_data();
  w->ld = ld->typed_data();
  w->m = m;
  w->blocks = (m + 15) / 16;
  w->units = rows * w->blocks;
  w->lo = lo;
  w->hi = hi;
  w->inverse = inverse;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  w->chunk = std::max<int64_t>(64, w->units / (4 * threads) + 1);
  w->chunks = (w->units + w->chunk - 1) / w->chunk;
  for (int64_t t = 1; t < std::min(threads, w->chunks); ++t) pool.Schedule([w] { w->run(); });
  w->run();
  while (w->done.load(std::memory_order_acquire) < w->chunks) std::this_thread::yield();
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BfnRqsF32, RqsImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("lo")
                                  .Attr<float>("hi")
                                  .Attr<bool>("inverse")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
