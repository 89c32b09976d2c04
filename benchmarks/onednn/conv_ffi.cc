// oneDNN 2-D convolution (forward, backward-data, backward-weights) as XLA FFI handlers.
//
// A prototype for benchmarks/onednn/ (issue 21), never imported by jaxconv. Layouts are
// jaxconv's: activations NHWC, kernels HWIO; float32 or bfloat16 (all operands of one call
// share the input dtype, except that a weight gradient may be written in float32). Each
// handler builds its oneDNN primitive once per shape/stride/padding/dtype and caches it; the
// kernel goes through a reorder into the primitive's preferred (blocked) layout on every call,
// as PyTorch does for channels_last training.
#include <cstdint>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& Stream() {
  static dnnl::stream stream(Engine());
  return stream;
}

bool ToDnnl(ffi::DataType t, dt* out) {
  switch (t) {
    case ffi::DataType::F32: *out = dt::f32; return true;
    case ffi::DataType::BF16: *out = dt::bf16; return true;
    default: return false;
  }
}

struct Geometry {
  int64_t n, h, w, c, kh, kw, o, oh, ow;
  int64_t sh, sw, pt, pb, pl, pr;
  memory::dims Src() const { return {n, c, h, w}; }
  memory::dims Wei() const { return {o, c, kh, kw}; }
  memory::dims Dst() const { return {n, o, oh, ow}; }
  memory::dims Strides() const { return {sh, sw}; }
  memory::dims PadL() const { return {pt, pl}; }
  memory::dims PadR() const { return {pb, pr}; }
  std::string Key(const char* kind, dt a, dt b) const {
    std::ostringstream s;
    s << kind << ' ' << int(a) << ' ' << int(b) << ' ' << n << ' ' << h << ' ' << w << ' ' << c
      << ' ' << kh << ' ' << kw << ' ' << o << ' ' << sh << ' ' << sw << ' ' << pt << ' ' << pb
      << ' ' << pl << ' ' << pr;
    return s.str();
  }
};

// What a cached handler needs: the primitive and the plain/blocked weight descriptors.
struct Entry {
  dnnl::primitive prim;
  memory::desc weights_plain, weights_prim;
  dnnl::reorder weights_reorder;  // plain -> prim (forward, backward data) or back (weights)
  bool needs_reorder = false;
};

std::mutex cache_mutex;
std::map<std::string, Entry>& Cache() {
  static std::map<std::string, Entry> cache;
  return cache;
}

dnnl::convolution_forward::primitive_desc FwdPd(const Geometry& g, dt t, dt w_t) {
  memory::desc src(g.Src(), t, tag::nhwc), dst(g.Dst(), t, tag::nhwc);
  memory::desc wei(g.Wei(), w_t, tag::any);
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src,
      wei, dst, g.Strides(), g.PadL(), g.PadR());
}

Entry MakeEntry(const std::string& kind, const Geometry& g, dt t, dt w_t) {
  Entry e;
  e.weights_plain = memory::desc(g.Wei(), w_t, tag::hwio);
  auto fwd = FwdPd(g, t, t);
  if (kind == "fwd") {
    e.prim = dnnl::convolution_forward(fwd);
    e.weights_prim = fwd.weights_desc();
  } else if (kind == "bwd_data") {
    memory::desc dsrc(g.Src(), t, tag::nhwc), ddst(g.Dst(), t, tag::nhwc);
    memory::desc wei(g.Wei(), t, tag::any);
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, dsrc, wei, ddst, g.Strides(), g.PadL(),
        g.PadR(), fwd);
    e.prim = dnnl::convolution_backward_data(pd);
    e.weights_prim = pd.weights_desc();
  } else {
    memory::desc src(g.Src(), t, tag::nhwc), ddst(g.Dst(), t, tag::nhwc);
    memory::desc dwei(g.Wei(), w_t, tag::any);
    dnnl::convolution_backward_weights::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, src, dwei, ddst, g.Strides(), g.PadL(),
        g.PadR(), fwd);
    e.prim = dnnl::convolution_backward_weights(pd);
    e.weights_prim = pd.diff_weights_desc();
  }
  e.needs_reorder = e.weights_prim != e.weights_plain;
  if (e.needs_reorder) {
    memory a(kind == "bwd_weights" ? e.weights_prim : e.weights_plain, Engine(), nullptr);
    memory b(kind == "bwd_weights" ? e.weights_plain : e.weights_prim, Engine(), nullptr);
    e.weights_reorder = dnnl::reorder(a, b);
  }
  return e;
}

Entry& Lookup(const std::string& kind, const Geometry& g, dt t, dt w_t) {
  std::string key = g.Key(kind.c_str(), t, w_t);
  std::lock_guard<std::mutex> lock(cache_mutex);
  auto it = Cache().find(key);
  if (it == Cache().end()) it = Cache().emplace(key, MakeEntry(kind, g, t, w_t)).first;
  return it->second;
}

Geometry Make(ffi::Span<const int64_t> x, ffi::Span<const int64_t> k,
              ffi::Span<const int64_t> y, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
              int64_t pl, int64_t pr) {
  return Geometry{x[0], x[1], x[2], x[3], k[0], k[1], k[3], y[1], y[2], sh, sw, pt, pb, pl, pr};
}

// Runs `e.prim` with the user's weights at `w_ptr` (plain HWIO) in the role `w_arg`.
ffi::Error Run(Entry& e, const std::string& kind, void* w_ptr, int w_arg,
               std::unordered_map<int, memory> args) {
  auto& s = Stream();
  memory plain(e.weights_plain, Engine(), w_ptr);
  if (!e.needs_reorder) {
    args.insert({w_arg, plain});
    e.prim.execute(s, args);
  } else if (kind == "bwd_weights") {
    memory blocked(e.weights_prim, Engine());
    args.insert({w_arg, blocked});
    e.prim.execute(s, args);
    e.weights_reorder.execute(s, blocked, plain);
  } else {
    memory blocked(e.weights_prim, Engine());
    e.weights_reorder.execute(s, plain, blocked);
    args.insert({w_arg, blocked});
    e.prim.execute(s, args);
  }
  s.wait();
  return ffi::Error::Success();
}

#define DNNL_TRY(body)                                                        \
  try {                                                                       \
    body                                                                      \
  } catch (const dnnl::error& err) {                                          \
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN: ") + err.what()); \
  }

ffi::Error Fwd(ffi::AnyBuffer x, ffi::AnyBuffer k, ffi::Result<ffi::AnyBuffer> y, int64_t sh,
               int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  dt t;
  if (!ToDnnl(x.element_type(), &t) || k.element_type() != x.element_type())
    return ffi::Error::InvalidArgument("x and kernel must both be float32 or bfloat16");
  DNNL_TRY({
    Geometry g = Make(x.dimensions(), k.dimensions(), y->dimensions(), sh, sw, pt, pb, pl, pr);
    Entry& e = Lookup("fwd", g, t, t);
    return Run(e, "fwd", k.untyped_data(), DNNL_ARG_WEIGHTS,
               {{DNNL_ARG_SRC, memory({g.Src(), t, tag::nhwc}, Engine(), x.untyped_data())},
                {DNNL_ARG_DST, memory({g.Dst(), t, tag::nhwc}, Engine(), y->untyped_data())}});
  })
}

ffi::Error BwdData(ffi::AnyBuffer dy, ffi::AnyBuffer k, ffi::Result<ffi::AnyBuffer> dx,
                   int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  dt t;
  if (!ToDnnl(dy.element_type(), &t) || k.element_type() != dy.element_type())
    return ffi::Error::InvalidArgument("dy and kernel must both be float32 or bfloat16");
  DNNL_TRY({
    Geometry g = Make(dx->dimensions(), k.dimensions(), dy.dimensions(), sh, sw, pt, pb, pl, pr);
    Entry& e = Lookup("bwd_data", g, t, t);
    return Run(e, "bwd_data", k.untyped_data(), DNNL_ARG_WEIGHTS,
               {{DNNL_ARG_DIFF_DST, memory({g.Dst(), t, tag::nhwc}, Engine(), dy.untyped_data())},
                {DNNL_ARG_DIFF_SRC, memory({g.Src(), t, tag::nhwc}, Engine(), dx->untyped_data())}});
  })
}

ffi::Error BwdWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dk,
                      int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  dt t, w_t;
  if (!ToDnnl(x.element_type(), &t) || dy.element_type() != x.element_type() ||
      !ToDnnl(dk->element_type(), &w_t))
    return ffi::Error::InvalidArgument("x and dy must share a dtype (float32 or bfloat16)");
  DNNL_TRY({
    Geometry g = Make(x.dimensions(), dk->dimensions(), dy.dimensions(), sh, sw, pt, pb, pl, pr);
    Entry& e = Lookup("bwd_weights", g, t, w_t);
    return Run(e, "bwd_weights", dk->untyped_data(), DNNL_ARG_DIFF_WEIGHTS,
               {{DNNL_ARG_SRC, memory({g.Src(), t, tag::nhwc}, Engine(), x.untyped_data())},
                {DNNL_ARG_DIFF_DST, memory({g.Dst(), t, tag::nhwc}, Engine(), dy.untyped_data())}});
  })
}

}  // namespace

#define CONV_BINDING(A, B, R)                                                  \
  ffi::Ffi::Bind()                                                             \
      .Arg<ffi::AnyBuffer>()                                                   \
      .Arg<ffi::AnyBuffer>()                                                   \
      .Ret<ffi::AnyBuffer>()                                                   \
      .Attr<int64_t>("stride_h")                                               \
      .Attr<int64_t>("stride_w")                                               \
      .Attr<int64_t>("pad_top")                                                \
      .Attr<int64_t>("pad_bottom")                                             \
      .Attr<int64_t>("pad_left")                                               \
      .Attr<int64_t>("pad_right")

XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnConvFwd, Fwd, CONV_BINDING(x, k, y));
XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnConvBwdData, BwdData, CONV_BINDING(dy, k, dx));
XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnConvBwdWeights, BwdWeights, CONV_BINDING(x, dy, dk));

// Which ISA oneDNN dispatches to (for the benchmark header).
extern "C" int OnednnIsa() { return static_cast<int>(dnnl::get_effective_cpu_isa()); }
