// XLA FFI kernel for the values of bayesflow_nets.bijectors.rqs_blocked_biased on the CPU:
// x (..., m), params and bias (..., 3K - 1, m), float32, K = 8; attributes lo, hi, inverse.
// Returns y and the elementwise log-det, both (..., m). Leading dims of size 1 broadcast (as
// jax.ffi.ffi_call's vmap_method="expand_dims" passes unbatched operands), so a conditioner's
// head bias is read once, not materialised per sample. The (row, 16-lane block) units are
// shared out in chunks between the calling thread and tasks on XLA's intra-op thread pool.
// Built on the user's machine by bayesflow_nets/bijectors/_native.py (needs AVX-512F).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "rqs_avx512.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kParams = 3 * K - 1;

// Element offsets of one operand's rows for the output's leading index, with broadcasting.
struct Rows {
  const float* data;
  std::vector<int64_t> stride;  // per leading dim, 0 where the operand's dim is 1

  Rows(const float* d, const std::vector<int64_t>& dims, int64_t row_size) : data(d) {
    stride.assign(dims.size(), 0);
    int64_t s = row_size;
    for (int64_t i = static_cast<int64_t>(dims.size()) - 1; i >= 0; --i) {
      stride[i] = dims[i] == 1 ? 0 : s;
      s *= dims[i];
    }
  }
  const float* at(int64_t row, const std::vector<int64_t>& out) const {
    int64_t offset = 0;
    for (int64_t i = static_cast<int64_t>(out.size()) - 1; i >= 0; --i) {
      offset += (row % out[i]) * stride[i];
      row /= out[i];
    }
    return data + offset;
  }
};

struct Work {
  Rows x, p, b;
  std::vector<int64_t> out_dims;
  float *y, *ld;
  int64_t m, blocks, units, chunk, chunks;
  float lo, hi;
  int inverse;
  std::atomic<int64_t> next{0}, done{0};

  Work(Rows x_, Rows p_, Rows b_) : x(x_), p(p_), b(b_) {}

  // Claim chunks until none is left. The caller runs this too, so every chunk is done even if
  // no pool task ever starts; a task that starts late finds nothing to claim.
  void run() {
    for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
      for (int64_t u = c * chunk, end = std::min(units, (c + 1) * chunk); u < end; ++u) {
        const int64_t row = u / blocks, k = 16 * (u % blocks), rest = m - k;
        const __mmask16 lanes = rest >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << rest) - 1);
        rqs_block(m, x.at(row, out_dims) + k, p.at(row, out_dims) + k, b.at(row, out_dims) + k,
                  lo, hi, inverse, y + row * m + k, ld + row * m + k, lanes);
      }
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

std::vector<int64_t> leading(ffi::Span<const int64_t> dims, size_t trailing) {
  return std::vector<int64_t>(dims.begin(), dims.end() - trailing);
}

ffi::Error RqsImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> params,
                   ffi::Buffer<ffi::F32> bias, float lo, float hi, bool inverse,
                   ffi::ResultBuffer<ffi::F32> y, ffi::ResultBuffer<ffi::F32> ld) {
  const auto xd = x.dimensions(), pd = params.dimensions(), bd = bias.dimensions();
  const auto yd = y->dimensions();
  if (xd.size() < 1 || pd.size() != xd.size() + 1 || bd.size() != pd.size() ||
      yd.size() != xd.size())
    return ffi::Error::InvalidArgument("rqs: expected x (..., m), params and bias (..., P, m)");
  const int64_t m = xd.back();
  if (pd[pd.size() - 2] != kParams || bd[bd.size() - 2] != kParams || pd.back() != m ||
      bd.back() != m || yd.back() != m)
    return ffi::Error::InvalidArgument("rqs: params and bias must be (..., 23, m) for 8 bins");
  const auto out = leading(yd, 1), lx = leading(xd, 1), lp = leading(pd, 2), lb = leading(bd, 2);
  for (size_t i = 0; i < out.size(); ++i)
    for (int64_t d : {lx[i], lp[i], lb[i]})
      if (d != 1 && d != out[i])
        return ffi::Error::InvalidArgument("rqs: leading dims must be 1 or the output's");
  int64_t rows = 1;
  for (int64_t d : out) rows *= d;
  if (rows == 0 || m == 0) return ffi::Error::Success();

  auto w = std::make_shared<Work>(Rows(x.typed_data(), lx, m),
                                  Rows(params.typed_data(), lp, kParams * m),
                                  Rows(bias.typed_data(), lb, kParams * m));
  w->out_dims = out;
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

XLA_FFI_DEFINE_HANDLER_SYMBOL(BayesflowNetsRqsF32, RqsImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("lo")
                                  .Attr<float>("hi")
                                  .Attr<bool>("inverse")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
