// Native matrix products for the tfjs wasm backend (issue 16): OpenBLAS (or Apple Accelerate)
// sgemm run directly on the wasm module's heap. The heap is one ArrayBuffer (a SharedArrayBuffer
// with the threaded build); JavaScript passes a typed array over it, and byte offsets of the
// operands inside it, so nothing is copied: the product is written in place into the output
// tensor the wasm backend allocated. Used by core/kernels/native-matmul.ts; built by
// scripts/build-native.mjs at `npm ci` (optional: without a compiler or a BLAS the XNNPACK
// kernels run). Reference: the CBLAS interface (netlib), OpenBLAS's openblas_* extensions.
//
//   gemm(heap, transA, transB, M, N, K, lda, ldb, ldc, offsets)
//        for each i: C_i [M, N] = op(A_i) op(B_i), row-major, offsets = Uint32Array of
//        [a_0, b_0, c_0, a_1, b_1, c_1, ...] byte offsets into heap (a broadcast batch repeats an
//        offset). M = 1 or N = 1 go to sgemv (sgemm of OpenBLAS 0.3.21 does not).
//   biasActivation(heap, cOffset, rows, N, biasOffset, biasSize, activation, alpha)
//        C [rows, N] += bias (size N: per column, size 1: scalar; biasOffset < 0: none), then the
//        activation in place (tfjs _FusedMatMul codes: 0 linear, 1 relu, 2 relu6, 4 leakyrelu,
//        5 sigmoid, 6 elu).
//   adamwStep(p, g, m, v, out, decay, beta1, beta2, bc2Sqrt, eps, stepSize[, gradScale])
//        one AdamW step (of g * gradScale in float32 when given: the gradient-clipping coefficient,
//        folded in rather than a pass over every gradient; `adamwGradScale` says it is supported) (torch 1.13 _single_tensor_adamw, each operation rounded to float32 in the
//        order of plugins/optimizer/adamw.ts): m, v updated in place, the new parameter written to
//        out (which may be p). Every argument a Float32Array of the same length: views over the
//        wasm heap or host arrays (adamw host_state).
//   matmulArrays(x, w, y, rows, K, N)
//        y [rows, N] = x [rows, K] w [K, N], row-major Float32Arrays (heap views or host arrays):
//        generation's one-token products (plugins/decoder/llama-decode.ts) without a tfjs kernel
//        call; the same BLAS routine as gemm for that product (sgemv for one row), so the same values.
//   decodeAttend(q, K, V, y, mask, H, G, hd, L, cap, kvBase, m0, yAt, scale)   [generation]
//        attention of one row's H query heads q [H, hd] (RoPE applied) over L cached positions, query
//        head h reading kv head h / G at K, V[kvBase + ((h / G) cap + t) hd]: softmax(q k * scale +
//        (mask[m0 + t] == 0 ? finfo.min : 0)) v into y[yAt + h hd ...]. The arithmetic of
//        plugins/decoder/llama-decode.ts hostAttend (dots, exp sums and the weighted sum of v in
//        double, the score rounded to float32 as there), four positions' dots interleaved.
//   rope(x, cos, sin, out, B, H, T, hd, cosRows, inverse)
//        rotary embedding of x [B, H, T, hd] with cos, sin [cosRows, 1, T, hd] (cosRows 1 or B):
//        out = x cos + rotate_half(x) sin, or with inverse its adjoint (the gradient)
//        dy cos + rotate_half^T(dy sin); the float32 products and sums of plugins/decoder/llama.ts
//        applyRope's tfjs chain in its order, so bit-identical to it. out must not alias x.
//   logSoftmax(x, out, rows, V, dy)
//        log-softmax of each row of x [rows, V] as tf.logSoftmax computes it ((x - max) -
//        log(sum(exp(x - max))), the sum accumulated in double); with dy (not null) x is that
//        output y and out its gradient dy - sum(dy) exp(y) (tf.logSoftmax's gradient): the
//        vocabulary log-softmax of the loss (core/ops.ts crossEntropyIgnore) in one pass each way.
//   activation(kind, x, s, dy, out, c1, c2, c3)
//        elementwise chains of core/ops.ts's custom activations, each float32 operation in the
//        order of the tfjs chain (no FMA), so bit-identical to it; s = sigmoid(...) comes from the
//        tfjs Sigmoid kernel (XNNPACK's own approximation), never recomputed here:
//        kind 0, GELU's 2u:        out = (x + ((x x) x) c1) c2                       (s, dy unused)
//        kind 1, GELU's gradient:  out = dy (s + (x (s (1 - s))) (((x x) c3 + 1) c2))
//        kind 2, SiLU's gradient:  out = dy (s (1 + x (1 - s)))
//   columnSums(x, out, rows, inner)   [kernel replacements, core/kernels/reductions.ts]
//        out[j] = sum over r of x[r, j] for x [rows, inner]: the leading-axis Sum (every bias /
//        norm-weight gradient), each column accumulated in double in row order (r = 0, 1, ...),
//        rounded to float32 once: the order and values of the JS kernel it replaces.
//   sumSquares([a_0, a_1, ...]) -> Float64Array of sum(a_i^2) (double accumulation): the
//        gradient norm of core/train/grads.ts.
//   norm(kind, x, w, b, y, rows, C, eps)
//        RMSNorm (kind 0, b null) or LayerNorm (kind 1) of each row of x [rows, C] (core/ops.ts
//        rmsNorm / layerNorm): y = xhat w (+ b), xhat = (x - mu) r, r = 1 / sqrt(mean((x - mu)^2)
//        + eps), mu = mean(x) for LayerNorm and 0 for RMSNorm; every sum and product in double, y
//        rounded once. Nothing else is kept for the gradient: normGrad recomputes mu and r.
//   normGrad(kind, x, w, dy, dx, dw, db, rows, C, eps)
//        its gradient in one pass: g = dy w, dx = r (g - mean(g) - xhat mean(g xhat)) (RMSNorm
//        without the mean(g) term), dw = sum over rows of dy xhat, db = sum over rows of dy (db
//        null for RMSNorm); in double, the column sums accumulated row by row in row order, each
//        output rounded once.
//   scaledSoftmax(x, bias, out, dy, B, H, Tq, Tk, scale, sb, sh, sq, sk)
//        attention's scores -> probabilities (core/ops.ts attention) in one pass: for each row of
//        x [B, H, Tq, Tk], z = x / scale + bias (float32, as tf.div then tf.add), out = softmax(z)
//        (max, exp(z - max), times 1 / sum: XNNPACK's algorithm and order, so bit-identical to the
//        wasm Softmax kernel and the whole chain); bias (null: none) is read at
//        b sb + h sh + q sq + k sk (a stride 0 broadcasts that axis). A row with no finite maximum
//        (all -inf) or a NaN gives NaN, as tf.softmax and torch.softmax. With dy (not null) x is
//        those probabilities p and out the scores' gradient (dy p - sum(dy p) p) / scale, each
//        float32 operation in the order of tf.softmax's gradient and tf.div's (the row sum in
//        float32 from the left, as the wasm Sum kernel), so bit-identical to that chain.
//   siluMul(g, u, dy, out, out2)
//        the decoder MLP's silu(gate) * up (core/ops.ts siluMul) from g = gate and u = up alone:
//        out = (g s) u with s = sigmoid(g) computed as the wasm Sigmoid kernel does (XNNPACK's
//        algorithm, bit-identical); with dy (not null) s is recomputed, out = dgate = (dy u) (s (1 +
//        g (1 - s))) and out2 = dup = dy (g s): the float32 operations of tf.sigmoid, tf.mul and
//        core/ops.ts silu's chains, bit-identical to them.
//   gelu(x, dy, out, c1, c2, c3)
//        core/ops.ts geluTanh (the ViT MLP) in one pass: out = x sigmoid((x + x^3 c1) c2), the
//        sigmoid as the wasm Sigmoid kernel computes it; with dy (not null) out = its gradient with
//        the sigmoid recomputed (activation kind 1's formula): bit-identical to the chain of
//        activation kind 0, tf.sigmoid, tf.mul and kind 1, from x alone.
//   setThreads(n), threads(), info() -> { library, corename, config }
#define NAPI_VERSION 8
#define NAPI_DISABLE_CPP_EXCEPTIONS
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#ifdef __APPLE__
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
#endif

namespace {

bool Fail(const Napi::Env& env, const std::string& msg) {
  Napi::Error::New(env, "nanovlm native blas: " + msg).ThrowAsJavaScriptException();
  return false;
}

// The heap as (pointer, length) from a typed array over the module's memory (fresh each call:
// a non-shared memory's ArrayBuffer is replaced when the heap grows).
bool Heap(const Napi::Env& env, const Napi::Value& v, uint8_t** base, size_t* bytes) {
  if (!v.IsTypedArray()) return Fail(env, "heap must be a typed array over the wasm memory");
  napi_typedarray_type type;
  size_t length;
  void* data;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &offset) != napi_ok || data == nullptr)
    return Fail(env, "cannot read the heap's typed array");
  if (type != napi_uint8_array) return Fail(env, "heap must be a Uint8Array");
  *base = static_cast<uint8_t*>(data);
  *bytes = length;
  return true;
}

// A float matrix of `rows` rows of stride `ld` (last row: `cols` values) at byte `off` must lie
// inside the heap: a wrong offset would otherwise write anywhere in the process.
bool Inside(size_t off, int rows, int cols, int ld, size_t heapBytes) {
  if (off % 4 != 0) return false;
  if (rows == 0 || cols == 0) return true;
  size_t last = off + (static_cast<size_t>(rows - 1) * ld + cols) * 4;
  return last <= heapBytes;
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 10) return Fail(env, "gemm takes 10 arguments"), env.Undefined();
  uint8_t* heap;
  size_t heapBytes;
  if (!Heap(env, info[0], &heap, &heapBytes)) return env.Undefined();
  const bool tA = info[1].ToBoolean();
  const bool tB = info[2].ToBoolean();
  const int M = info[3].ToNumber().Int32Value();
  const int N = info[4].ToNumber().Int32Value();
  const int K = info[5].ToNumber().Int32Value();
  const int lda = info[6].ToNumber().Int32Value();
  const int ldb = info[7].ToNumber().Int32Value();
  const int ldc = info[8].ToNumber().Int32Value();
  if (M < 0 || N < 0 || K < 0 || lda < 1 || ldb < 1 || ldc < 1) return Fail(env, "bad sizes"), env.Undefined();
  if (!info[9].IsTypedArray() || info[9].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    return Fail(env, "offsets must be a Uint32Array"), env.Undefined();
  Napi::Uint32Array offs = info[9].As<Napi::Uint32Array>();
  if (offs.ElementLength() % 3 != 0) return Fail(env, "offsets: 3 per product"), env.Undefined();
  const size_t batch = offs.ElementLength() / 3;
  const uint32_t* o = offs.Data();
  // stored shapes: A is [M, K] (or [K, M] when transposed), B [K, N] (or [N, K]), C [M, N]
  const int aRows = tA ? K : M, aCols = tA ? M : K;
  const int bRows = tB ? N : K, bCols = tB ? K : N;
  for (size_t i = 0; i < batch; i++) {
    if (!Inside(o[3 * i], aRows, aCols, lda, heapBytes) || !Inside(o[3 * i + 1], bRows, bCols, ldb, heapBytes) ||
        !Inside(o[3 * i + 2], M, N, ldc, heapBytes))
      return Fail(env, "an operand lies outside the heap"), env.Undefined();
  }
  if (M == 0 || N == 0) return env.Undefined();
  for (size_t i = 0; i < batch; i++) {
    const float* A = reinterpret_cast<const float*>(heap + o[3 * i]);
    const float* B = reinterpret_cast<const float*>(heap + o[3 * i + 1]);
    float* C = reinterpret_cast<float*>(heap + o[3 * i + 2]);
    if (K == 0) {
      for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) C[static_cast<size_t>(r) * ldc + c] = 0.f;
    } else if (M == 1) {
      // c [N] = op(B)^T a: a's K values are contiguous unless A is stored [K, 1] with lda > 1
      cblas_sgemv(CblasRowMajor, tB ? CblasNoTrans : CblasTrans, bRows, bCols, 1.f, B, ldb, A, tA ? lda : 1, 0.f, C, 1);
    } else if (N == 1) {
      // c [M] = op(A) b, c strided by ldc
      cblas_sgemv(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, aRows, aCols, 1.f, A, lda, B, tB ? 1 : ldb, 0.f, C, ldc);
    } else {
      cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, M, N, K, 1.f, A, lda, B,
                  ldb, 0.f, C, ldc);
    }
  }
  return env.Undefined();
}

Napi::Value BiasActivation(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 8) return Fail(env, "biasActivation takes 8 arguments"), env.Undefined();
  uint8_t* heap;
  size_t heapBytes;
  if (!Heap(env, info[0], &heap, &heapBytes)) return env.Undefined();
  const double cOff = info[1].ToNumber().DoubleValue();
  const int rows = info[2].ToNumber().Int32Value();
  const int N = info[3].ToNumber().Int32Value();
  const double biasOff = info[4].ToNumber().DoubleValue();
  const int biasSize = info[5].ToNumber().Int32Value();
  const int act = info[6].ToNumber().Int32Value();
  const float alpha = info[7].ToNumber().FloatValue();
  if (rows < 0 || N < 0 || cOff < 0 || !Inside(static_cast<size_t>(cOff), rows, N, N, heapBytes))
    return Fail(env, "output outside the heap"), env.Undefined();
  const bool hasBias = biasOff >= 0;
  if (hasBias && ((biasSize != 1 && biasSize != N) || !Inside(static_cast<size_t>(biasOff), 1, biasSize, biasSize, heapBytes)))
    return Fail(env, "bias must have 1 or N values inside the heap"), env.Undefined();
  float* C = reinterpret_cast<float*>(heap + static_cast<size_t>(cOff));
  const float* bias = hasBias ? reinterpret_cast<const float*>(heap + static_cast<size_t>(biasOff)) : nullptr;
  for (int r = 0; r < rows; r++) {
    float* row = C + static_cast<size_t>(r) * N;
    for (int c = 0; c < N; c++) {
      float x = row[c];
      if (hasBias) x += bias[biasSize == 1 ? 0 : c];
      switch (act) {
        case 1: x = x < 0.f ? 0.f : x; break;
        case 2: x = x < 0.f ? 0.f : (x > 6.f ? 6.f : x); break;
        case 4: x = x < 0.f ? alpha * x : x; break;
        case 5: x = 1.f / (1.f + std::exp(-x)); break;
        case 6: x = x < 0.f ? std::expm1(x) : x; break;
        default: break;
      }
      row[c] = x;
    }
  }
  return env.Undefined();
}

// The data of a Float32Array (a view over the heap or a host array) and its length.
bool Floats(const Napi::Env& env, const Napi::Value& v, const char* name, float** data, size_t* n) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    return Fail(env, std::string(name) + " must be a Float32Array");
  Napi::Float32Array a = v.As<Napi::Float32Array>();
  *data = a.Data();
  *n = a.ElementLength();
  return true;
}

// p <- p * decay - stepSize * m' / (sqrt(v') / bc2Sqrt + eps), m' = b1 m + (1 - b1) g,
// v' = b2 v + (1 - b2) g^2: plugins/optimizer/adamw-host.ts's loop, the same float32 constants and
// the same rounding after every operation (no FMA contraction: -ffp-contract=off), so the result
// is bit-identical to the tfjs kernels' chain. Elementwise, so out may alias p.
void AdamWLoop(const float* p, const float* g, float* m, float* v, float* out, size_t n, float decay, float b1, float ob1,
               float b2, float ob2, float bc2, float eps, float stepSize, float gradScale) {
  for (size_t i = 0; i < n; i++) {
    const float gi = g[i] * gradScale;  // tf.mul(g, clip coefficient); x * 1 is x
    const float mi = m[i] * b1 + gi * ob1;
    const float vi = v[i] * b2 + (gi * gi) * ob2;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bc2 + eps;
    out[i] = p[i] * decay - (mi / denom) * stepSize;
  }
}

Napi::Value AdamW(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 11 && info.Length() != 12) return Fail(env, "adamwStep takes 11 or 12 arguments"), env.Undefined();
  const char* names[5] = {"p", "g", "m", "v", "out"};
  float* a[5];
  size_t n[5];
  for (int k = 0; k < 5; k++)
    if (!Floats(env, info[k], names[k], &a[k], &n[k])) return env.Undefined();
  for (int k = 1; k < 5; k++)
    if (n[k] != n[0]) return Fail(env, std::string("adamwStep: ") + names[k] + " has a different length than p"), env.Undefined();
  double s[6];
  for (int k = 0; k < 6; k++) s[k] = info[5 + k].ToNumber().DoubleValue();
  // the constants as tf.mul(x, c) / tf.sub(1, beta) in float32 would see them (adamw-host.ts: f(...))
  const float decay = static_cast<float>(s[0]), b1 = static_cast<float>(s[1]), ob1 = static_cast<float>(1 - s[1]);
  const float b2 = static_cast<float>(s[2]), ob2 = static_cast<float>(1 - s[2]);
  const float gradScale = info.Length() == 12 ? info[11].ToNumber().FloatValue() : 1.f;
  AdamWLoop(a[0], a[1], a[2], a[3], a[4], n[0], decay, b1, ob1, b2, ob2, static_cast<float>(s[3]), static_cast<float>(s[4]),
            static_cast<float>(s[5]), gradScale);
  return env.Undefined();
}

Napi::Value MatmulArrays(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 6) return Fail(env, "matmulArrays takes 6 arguments"), env.Undefined();
  float *x, *w, *y;
  size_t nx, nw, ny;
  if (!Floats(env, info[0], "x", &x, &nx) || !Floats(env, info[1], "w", &w, &nw) || !Floats(env, info[2], "y", &y, &ny))
    return env.Undefined();
  const int rows = info[3].ToNumber().Int32Value();
  const int K = info[4].ToNumber().Int32Value();
  const int N = info[5].ToNumber().Int32Value();
  if (rows < 1 || K < 1 || N < 1) return Fail(env, "matmulArrays: sizes must be positive"), env.Undefined();
  if (nx != static_cast<size_t>(rows) * K || nw != static_cast<size_t>(K) * N || ny != static_cast<size_t>(rows) * N)
    return Fail(env, "matmulArrays: array lengths do not match [rows, K] x [K, N] -> [rows, N]"), env.Undefined();
  if (rows == 1)  // as Gemm's M == 1 and N == 1 branches for an untransposed product
    cblas_sgemv(CblasRowMajor, CblasTrans, K, N, 1.f, w, N, x, 1, 0.f, y, 1);
  else if (N == 1)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, K, 1.f, x, K, w, 1, 0.f, y, 1);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, N, K, 1.f, x, K, w, N, 0.f, y, N);
  return env.Undefined();
}

// Generation's attention over the KV cache for one row (decodeAttend above). Each dot product is
// summed in d order as hostAttend's loop does; four positions run side by side (independent
// chains), which changes no value.
void DecodeAttendHead(const float* q, const float* K, const float* V, float* y, const int32_t* mask, int hd, int L,
                      double scale, double* sc, double* acc) {
  double mx = -INFINITY;
  int t = 0;
  for (; t + 4 <= L; t += 4) {
    const float *k0 = K + static_cast<size_t>(t) * hd, *k1 = k0 + hd, *k2 = k1 + hd, *k3 = k2 + hd;
    double d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    for (int d = 0; d < hd; d++) {
      const double qd = q[d];
      d0 += qd * k0[d];
      d1 += qd * k1[d];
      d2 += qd * k2[d];
      d3 += qd * k3[d];
    }
    const double dots[4] = {d0, d1, d2, d3};
    for (int i = 0; i < 4; i++) sc[t + i] = dots[i];
  }
  for (; t < L; t++) {
    const float* k = K + static_cast<size_t>(t) * hd;
    double dot = 0;
    for (int d = 0; d < hd; d++) dot += static_cast<double>(q[d]) * k[d];
    sc[t] = dot;
  }
  for (t = 0; t < L; t++) {
    float s = static_cast<float>(static_cast<double>(static_cast<float>(sc[t])) * scale);
    if (mask != nullptr && mask[t] == 0) s = static_cast<float>(static_cast<double>(s) + -3.4028234663852886e38);
    sc[t] = s;
    if (s > mx) mx = s;
  }
  double sum = 0;
  for (t = 0; t < L; t++) {
    const double e = std::exp(sc[t] - mx);
    sc[t] = e;
    sum += e;
  }
  for (int d = 0; d < hd; d++) acc[d] = 0;
  for (t = 0; t < L; t++) {
    const double p = sc[t] / sum;
    const float* v = V + static_cast<size_t>(t) * hd;
    for (int d = 0; d < hd; d++) acc[d] += p * v[d];
  }
  for (int d = 0; d < hd; d++) y[d] = static_cast<float>(acc[d]);
}

Napi::Value DecodeAttend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 14) return Fail(env, "decodeAttend takes 14 arguments"), env.Undefined();
  float *q, *K, *V, *y;
  size_t nq, nK, nV, ny;
  if (!Floats(env, info[0], "q", &q, &nq) || !Floats(env, info[1], "K", &K, &nK) || !Floats(env, info[2], "V", &V, &nV) ||
      !Floats(env, info[3], "y", &y, &ny))
    return env.Undefined();
  const int32_t* mask = nullptr;
  size_t nm = 0;
  if (!info[4].IsNull()) {
    if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      return Fail(env, "decodeAttend: mask must be an Int32Array or null"), env.Undefined();
    Napi::Int32Array m = info[4].As<Napi::Int32Array>();
    mask = m.Data();
    nm = m.ElementLength();
  }
  const int H = info[5].ToNumber().Int32Value(), G = info[6].ToNumber().Int32Value(), hd = info[7].ToNumber().Int32Value();
  const int L = info[8].ToNumber().Int32Value(), cap = info[9].ToNumber().Int32Value();
  const int64_t kvBase = info[10].ToNumber().Int64Value(), m0 = info[11].ToNumber().Int64Value(), yAt = info[12].ToNumber().Int64Value();
  const double scale = info[13].ToNumber().DoubleValue();
  if (H < 1 || G < 1 || H % G != 0 || hd < 1 || L < 1 || cap < L || kvBase < 0 || m0 < 0 || yAt < 0)
    return Fail(env, "decodeAttend: bad sizes"), env.Undefined();
  const size_t kvEnd = static_cast<size_t>(kvBase) + static_cast<size_t>(H / G) * cap * hd;
  if (nq < static_cast<size_t>(H) * hd || kvEnd > nK || kvEnd > nV || static_cast<size_t>(yAt) + static_cast<size_t>(H) * hd > ny ||
      (mask != nullptr && static_cast<size_t>(m0) + L > nm))
    return Fail(env, "decodeAttend: an array is shorter than the sizes say"), env.Undefined();
  std::vector<double> sc(L), acc(hd);
  for (int h = 0; h < H; h++) {
    const size_t kv = static_cast<size_t>(kvBase) + static_cast<size_t>(h / G) * cap * hd;
    DecodeAttendHead(q + static_cast<size_t>(h) * hd, K + kv, V + kv, y + yAt + static_cast<size_t>(h) * hd,
                     mask == nullptr ? nullptr : mask + m0, hd, L, scale, sc.data(), acc.data());
  }
  return env.Undefined();
}

// rotate_half(x) = cat([-x2, x1]): forward out[d] = x[d] c[d] + (-x[d+h]) s[d] (d < h),
// x[d] c[d] + x[d-h] s[d] (d >= h); adjoint out[d] = y[d] c[d] + y[d+h] s[d+h] (d < h),
// y[d] c[d] + -(y[d-h] s[d-h]) (d >= h). No FMA (-ffp-contract=off): each product rounded.
Napi::Value Rope(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 10) return Fail(env, "rope takes 10 arguments"), env.Undefined();
  const char* names[4] = {"x", "cos", "sin", "out"};
  float* a[4];
  size_t n[4];
  for (int k = 0; k < 4; k++)
    if (!Floats(env, info[k], names[k], &a[k], &n[k])) return env.Undefined();
  const int B = info[4].ToNumber().Int32Value(), H = info[5].ToNumber().Int32Value();
  const int T = info[6].ToNumber().Int32Value(), hd = info[7].ToNumber().Int32Value();
  const int cosRows = info[8].ToNumber().Int32Value();
  const bool inverse = info[9].ToBoolean();
  if (B < 1 || H < 1 || T < 1 || hd < 2 || hd % 2 != 0 || (cosRows != 1 && cosRows != B))
    return Fail(env, "rope: bad sizes"), env.Undefined();
  const size_t total = static_cast<size_t>(B) * H * T * hd, table = static_cast<size_t>(cosRows) * T * hd;
  if (n[0] != total || n[3] != total || n[1] != table || n[2] != table)
    return Fail(env, "rope: array lengths do not match x [B, H, T, hd], cos/sin [cosRows, 1, T, hd]"), env.Undefined();
  const float* x = a[0];
  const int h = hd / 2;
  for (int b = 0; b < B; b++)
    for (int hh = 0; hh < H; hh++)
      for (int t = 0; t < T; t++) {
        const size_t row = ((static_cast<size_t>(b) * H + hh) * T + t) * hd;
        const size_t crow = ((cosRows == 1 ? 0 : static_cast<size_t>(b)) * T + t) * hd;
        const float* xr = x + row;
        const float* c = a[1] + crow;
        const float* s = a[2] + crow;
        float* o = a[3] + row;
        if (!inverse) {
          for (int d = 0; d < h; d++) o[d] = xr[d] * c[d] + (-xr[d + h]) * s[d];
          for (int d = h; d < hd; d++) o[d] = xr[d] * c[d] + xr[d - h] * s[d];
        } else {
          for (int d = 0; d < h; d++) o[d] = xr[d] * c[d] + xr[d + h] * s[d + h];
          for (int d = h; d < hd; d++) o[d] = xr[d] * c[d] + -(xr[d - h] * s[d - h]);
        }
      }
  return env.Undefined();
}

Napi::Value LogSoftmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 5) return Fail(env, "logSoftmax takes 5 arguments"), env.Undefined();
  float *x, *out, *dy = nullptr;
  size_t nx, no, nd = 0;
  if (!Floats(env, info[0], "x", &x, &nx) || !Floats(env, info[1], "out", &out, &no)) return env.Undefined();
  const bool grad = !info[4].IsNull() && !info[4].IsUndefined();
  if (grad && !Floats(env, info[4], "dy", &dy, &nd)) return env.Undefined();
  const int rows = info[2].ToNumber().Int32Value(), V = info[3].ToNumber().Int32Value();
  if (rows < 1 || V < 1) return Fail(env, "logSoftmax: sizes must be positive"), env.Undefined();
  const size_t total = static_cast<size_t>(rows) * V;
  if (nx != total || no != total || (grad && nd != total))
    return Fail(env, "logSoftmax: array lengths do not match [rows, V]"), env.Undefined();
  for (int r = 0; r < rows; r++) {
    const float* xr = x + static_cast<size_t>(r) * V;
    float* o = out + static_cast<size_t>(r) * V;
    if (!grad) {
      float m = xr[0];
      for (int j = 1; j < V; j++) m = xr[j] > m ? xr[j] : m;  // a NaN in the row: NaN sum, NaN row
      double sum = 0;
      for (int j = 0; j < V; j++) sum += std::exp(xr[j] - m);
      const float lse = std::log(static_cast<float>(sum));
      for (int j = 0; j < V; j++) o[j] = (xr[j] - m) - lse;
    } else {
      const float* d = dy + static_cast<size_t>(r) * V;
      double sd = 0;
      for (int j = 0; j < V; j++) sd += d[j];
      const float s = static_cast<float>(sd);
      for (int j = 0; j < V; j++) o[j] = d[j] - s * std::exp(xr[j]);
    }
  }
  return env.Undefined();
}

Napi::Value Activation(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 8) return Fail(env, "activation takes 8 arguments"), env.Undefined();
  const int kind = info[0].ToNumber().Int32Value();
  if (kind < 0 || kind > 2) return Fail(env, "activation: unknown kind"), env.Undefined();
  float *x, *sg = nullptr, *dy = nullptr, *out;
  size_t nx, ns = 0, nd = 0, no;
  if (!Floats(env, info[1], "x", &x, &nx) || !Floats(env, info[4], "out", &out, &no)) return env.Undefined();
  if (kind != 0 && (!Floats(env, info[2], "s", &sg, &ns) || !Floats(env, info[3], "dy", &dy, &nd))) return env.Undefined();
  if (no != nx || (kind != 0 && (ns != nx || nd != nx))) return Fail(env, "activation: arrays of different lengths"), env.Undefined();
  const float c1 = info[5].ToNumber().FloatValue(), c2 = info[6].ToNumber().FloatValue(), c3 = info[7].ToNumber().FloatValue();
  if (kind == 0) {
    for (size_t i = 0; i < nx; i++) out[i] = (x[i] + ((x[i] * x[i]) * x[i]) * c1) * c2;
  } else if (kind == 1) {
    for (size_t i = 0; i < nx; i++) {
      const float xi = x[i], si = sg[i];
      const float du2 = ((xi * xi) * c3 + 1.f) * c2;
      out[i] = dy[i] * (si + (xi * (si * (1.f - si))) * du2);
    }
  } else {
    for (size_t i = 0; i < nx; i++) out[i] = dy[i] * (sg[i] * (1.f + x[i] * (1.f - sg[i])));
  }
  return env.Undefined();
}

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsArray()) return Fail(env, "sumSquares takes an array of Float32Arrays"), env.Undefined();
  Napi::Array list = info[0].As<Napi::Array>();
  const uint32_t count = list.Length();
  Napi::Float64Array out = Napi::Float64Array::New(env, count);
  for (uint32_t k = 0; k < count; k++) {
    float* x;
    size_t n;
    if (!Floats(env, list.Get(k), "every item", &x, &n)) return env.Undefined();
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; j++) acc[j] += static_cast<double>(x[i + j]) * x[i + j];
    for (; i < n; i++) acc[0] += static_cast<double>(x[i]) * x[i];
    out[k] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }
  return out;
}

// ---- kernel replacements (core/kernels/reductions.ts, layout.ts): begin ----
Napi::Value ColumnSums(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 4) return Fail(env, "columnSums takes 4 arguments"), env.Undefined();
  float *x, *out;
  size_t nx, no;
  if (!Floats(env, info[0], "x", &x, &nx) || !Floats(env, info[1], "out", &out, &no)) return env.Undefined();
  const double rows = info[2].ToNumber().DoubleValue(), inner = info[3].ToNumber().DoubleValue();
  if (!(rows >= 0) || !(inner >= 0) || static_cast<double>(nx) != rows * inner || static_cast<double>(no) != inner)
    return Fail(env, "columnSums: array lengths do not match x [rows, inner], out [inner]"), env.Undefined();
  const size_t R = static_cast<size_t>(rows), C = static_cast<size_t>(inner);
  std::vector<double> acc(C, 0.0);
  double* a = acc.data();
  for (size_t r = 0; r < R; r++) {
    const float* row = x + r * C;
    for (size_t j = 0; j < C; j++) a[j] += row[j];
  }
  for (size_t j = 0; j < C; j++) out[j] = static_cast<float>(a[j]);
  return env.Undefined();
}
// ---- kernel replacements: end ----

// ---- RMSNorm / LayerNorm (core/ops.ts rmsNorm, layerNorm) ---------------------------------------

// sum of f(j) for j < n in double, four partial sums (so the adds pipeline), in a fixed order
template <class F>
double RowSum(int n, F f) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    a0 += f(j);
    a1 += f(j + 1);
    a2 += f(j + 2);
    a3 += f(j + 3);
  }
  for (; j < n; j++) a0 += f(j);
  return (a0 + a1) + (a2 + a3);
}

// mu (0 for RMSNorm) and r = 1 / sqrt(mean((x - mu)^2) + eps) of one row, in double: the forward
// and the gradient call this same function, so they see the same mu and r
void RowStats(const float* x, int C, bool centred, double eps, double* mu, double* r) {
  double m = 0;
  if (centred) m = RowSum(C, [&](int j) { return static_cast<double>(x[j]); }) / C;
  const double var = RowSum(C, [&](int j) {
                       const double d = x[j] - m;
                       return d * d;
                     }) / C;
  *mu = m;
  *r = 1.0 / std::sqrt(var + eps);
}

// The float arrays of norm / normGrad: for each {at, perRow, used} a[at] = info[at], rows * C
// values long (perRow) or C; nullptr where not used (b, db of an RMSNorm). False: an exception pending.
struct NormArray {
  int at;
  bool perRow, used;
};
bool NormArrays(const Napi::CallbackInfo& info, const char* fn, std::initializer_list<NormArray> arrays, int rows, int C, float** a) {
  Napi::Env env = info.Env();
  if (rows < 1 || C < 1) return Fail(env, std::string(fn) + ": sizes must be positive");
  for (const NormArray& k : arrays) {
    a[k.at] = nullptr;
    if (!k.used) continue;
    size_t n;
    if (!Floats(env, info[k.at], (std::string(fn) + ": argument " + std::to_string(k.at)).c_str(), &a[k.at], &n)) return false;
    if (n != (k.perRow ? static_cast<size_t>(rows) * C : static_cast<size_t>(C)))
      return Fail(env, std::string(fn) + ": array lengths do not match x [rows, C], w [C]");
  }
  return true;
}

Napi::Value Norm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 8) return Fail(env, "norm takes 8 arguments"), env.Undefined();
  const int kind = info[0].ToNumber().Int32Value();
  if (kind != 0 && kind != 1) return Fail(env, "norm: kind is 0 (RMSNorm) or 1 (LayerNorm)"), env.Undefined();
  const bool ln = kind == 1;
  const int rows = info[5].ToNumber().Int32Value(), C = info[6].ToNumber().Int32Value();
  float* a[5];  // x, y [rows, C]; w, b [C]
  if (!NormArrays(info, "norm", {{1, true, true}, {2, false, true}, {3, false, ln}, {4, true, true}}, rows, C, a)) return env.Undefined();
  const double eps = info[7].ToNumber().DoubleValue();
  const float *w = a[2], *b = a[3];
  for (int i = 0; i < rows; i++) {
    const float* x = a[1] + static_cast<size_t>(i) * C;
    float* y = a[4] + static_cast<size_t>(i) * C;
    double mu, r;
    RowStats(x, C, ln, eps, &mu, &r);
    if (ln)
      for (int j = 0; j < C; j++) y[j] = static_cast<float>((x[j] - mu) * r * w[j] + b[j]);
    else
      for (int j = 0; j < C; j++) y[j] = static_cast<float>(x[j] * r * w[j]);
  }
  return env.Undefined();
}

Napi::Value NormGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 10) return Fail(env, "normGrad takes 10 arguments"), env.Undefined();
  const int kind = info[0].ToNumber().Int32Value();
  if (kind != 0 && kind != 1) return Fail(env, "normGrad: kind is 0 (RMSNorm) or 1 (LayerNorm)"), env.Undefined();
  const bool ln = kind == 1;
  const int rows = info[7].ToNumber().Int32Value(), C = info[8].ToNumber().Int32Value();
  float* a[7];  // x, dy, dx [rows, C]; w, dw, db [C]
  if (!NormArrays(info, "normGrad", {{1, true, true}, {2, false, true}, {3, true, true}, {4, true, true}, {5, false, true}, {6, false, ln}}, rows,
                  C, a))
    return env.Undefined();
  const double eps = info[9].ToNumber().DoubleValue();
  const float* w = a[2];
  std::vector<double> dw(C, 0.0), db(ln ? C : 0, 0.0), xhat(C), g(C);
  for (int i = 0; i < rows; i++) {
    const size_t o = static_cast<size_t>(i) * C;
    const float *x = a[1] + o, *dy = a[3] + o;
    float* dx = a[4] + o;
    double mu, r;
    RowStats(x, C, ln, eps, &mu, &r);
    for (int j = 0; j < C; j++) {
      xhat[j] = (x[j] - mu) * r;
      g[j] = static_cast<double>(dy[j]) * w[j];
    }
    const double meanG = ln ? RowSum(C, [&](int j) { return g[j]; }) / C : 0.0;
    const double meanGX = RowSum(C, [&](int j) { return g[j] * xhat[j]; }) / C;
    for (int j = 0; j < C; j++) {
      dx[j] = static_cast<float>(r * ((g[j] - meanG) - xhat[j] * meanGX));
      dw[j] += dy[j] * xhat[j];
    }
    if (ln)
      for (int j = 0; j < C; j++) db[j] += dy[j];
  }
  for (int j = 0; j < C; j++) a[5][j] = static_cast<float>(dw[j]);
  if (ln)
    for (int j = 0; j < C; j++) a[6][j] = static_cast<float>(db[j]);
  return env.Undefined();
}

// ---- end of RMSNorm / LayerNorm -------------------------------------------------------------------

// ---- fused attention softmax, SwiGLU product and GELU (issue 16, core/ops.ts attention, siluMul, geluTanh) ----

// exp(x) for x <= 0 as XNNPACK's f32 softmax kernels compute it (the rr2_p5 algorithm of its
// raddstoreexpminusmax micro-kernels, without FMA: the wasm SIMD build's): 2^n by the exponent
// bits, a degree-5 polynomial on the reduced argument, 0 below the denormal cutoff, NaN for NaN.
// Written as plain float operations so that the compiler vectorises the loop (std::exp does not).
__attribute__((always_inline)) inline float ExpNonPositive(float x) {
  const float log2e = 0x1.715476p+0f, magic = 0x1.8000FEp23f;
  const float minusLn2Hi = -0x1.62E400p-1f, minusLn2Lo = -0x1.7F7D1Cp-20f;
  const float c5 = 0x1.0F9F9Cp-7f, c4 = 0x1.573A1Ap-5f, c3 = 0x1.555A80p-3f, c2 = 0x1.FFFDC6p-2f, c1 = 0x1.FFFFF6p-1f;
  const float cutoff = -0x1.5D589Ep6f;
  float n = x * log2e + magic;
  uint32_t bits;
  std::memcpy(&bits, &n, 4);
  bits <<= 23;
  float s;
  std::memcpy(&s, &bits, 4);
  n -= magic;
  float t = n * minusLn2Hi + x;
  t = n * minusLn2Lo + t;
  float p = c5 * t + c4;
  p = p * t + c3;
  p = p * t + c2;
  p = p * t + c1;
  t *= s;
  const float f = t * p + s;
  uint32_t fb;  // 0 below the cutoff (x = -inf included), f otherwise (NaN stays NaN): a mask, so the loop vectorises
  std::memcpy(&fb, &f, 4);
  fb &= 0u - static_cast<uint32_t>(!(x < cutoff));
  float r;
  std::memcpy(&r, &fb, 4);
  return r;
}

// z = x / scale + bias row, its maximum, e = exp(z - max) in place, e * (1 / sum(e)): the float32
// operations of the wasm backend's Softmax (XNNPACK: rmax, raddstoreexpminusmax, vmulc), in its order.
void SoftmaxRow(const float* xr, const float* br, int64_t sk, float scale, float* o, size_t n) {
  if (br == nullptr)
    for (size_t j = 0; j < n; j++) o[j] = xr[j] / scale;
  else if (sk == 1)
    for (size_t j = 0; j < n; j++) o[j] = xr[j] / scale + br[j];
  else if (sk == 0)
    for (size_t j = 0; j < n; j++) o[j] = xr[j] / scale + br[0];
  else
    for (size_t j = 0; j < n; j++) o[j] = xr[j] / scale + br[j * sk];
  float m8[8];
  for (int l = 0; l < 8; l++) m8[l] = o[0];
  size_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) m8[l] = o[j + l] > m8[l] ? o[j + l] : m8[l];
  for (; j < n; j++) m8[0] = o[j] > m8[0] ? o[j] : m8[0];
  float m = m8[0];
  for (int l = 1; l < 8; l++) m = m8[l] > m ? m8[l] : m;  // a NaN in the row, or no finite maximum: NaN row below
  for (j = 0; j < n; j++) o[j] = ExpNonPositive(o[j] - m);
  // the sum as XNNPACK's kernel adds: 4 float lanes, (l0 + l2) + (l1 + l3), then the last n % 4
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (j = 0; j + 4 <= n; j += 4)
    for (int l = 0; l < 4; l++) acc[l] += o[j + l];
  float sum = (acc[0] + acc[2]) + (acc[1] + acc[3]);
  for (; j < n; j++) sum += o[j];
  const float inv = 1.f / sum;
  for (j = 0; j < n; j++) o[j] *= inv;
}

Napi::Value ScaledSoftmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 13) return Fail(env, "scaledSoftmax takes 13 arguments"), env.Undefined();
  float *x, *bias = nullptr, *out, *dy = nullptr;
  size_t nx, nb = 0, no, nd = 0;
  if (!Floats(env, info[0], "x", &x, &nx) || !Floats(env, info[2], "out", &out, &no)) return env.Undefined();
  const bool hasBias = !info[1].IsNull() && !info[1].IsUndefined();
  if (hasBias && !Floats(env, info[1], "bias", &bias, &nb)) return env.Undefined();
  const bool grad = !info[3].IsNull() && !info[3].IsUndefined();
  if (grad && !Floats(env, info[3], "dy", &dy, &nd)) return env.Undefined();
  int64_t d[4], st[4];
  for (int k = 0; k < 4; k++) d[k] = info[4 + k].ToNumber().Int64Value();
  const float scale = info[8].ToNumber().FloatValue();
  for (int k = 0; k < 4; k++) st[k] = info[9 + k].ToNumber().Int64Value();
  const int64_t B = d[0], H = d[1], Tq = d[2], Tk = d[3];
  if (B < 1 || H < 1 || Tq < 1 || Tk < 1) return Fail(env, "scaledSoftmax: sizes must be positive"), env.Undefined();
  const size_t total = static_cast<size_t>(B * H * Tq * Tk);
  if (nx != total || no != total || (grad && nd != total))
    return Fail(env, "scaledSoftmax: array lengths do not match [B, H, Tq, Tk]"), env.Undefined();
  if (hasBias) {
    int64_t last = 0;
    for (int k = 0; k < 4; k++) {
      if (st[k] < 0) return Fail(env, "scaledSoftmax: negative bias stride"), env.Undefined();
      last += (d[k] - 1) * st[k];
    }
    if (static_cast<size_t>(last) >= nb) return Fail(env, "scaledSoftmax: bias strides reach past the bias"), env.Undefined();
  }
  const size_t n = static_cast<size_t>(Tk);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t q = 0; q < Tq; q++) {
        const size_t row = static_cast<size_t>(((b * H + h) * Tq + q) * Tk);
        const float* xr = x + row;
        float* o = out + row;
        if (!grad) {
          SoftmaxRow(xr, hasBias ? bias + (b * st[0] + h * st[1] + q * st[2]) : nullptr, st[3], scale, o, n);
        } else {
          const float* d_ = dy + row;
          float s = 0.f;  // from the left in float32, as the wasm Sum kernel
          for (size_t j = 0; j < n; j++) s += d_[j] * xr[j];
          for (size_t j = 0; j < n; j++) o[j] = (d_[j] * xr[j] - s * xr[j]) / scale;
        }
      }
  return env.Undefined();
}

// sigmoid(x) as the wasm backend's Sigmoid kernel computes it (XNNPACK's rr2_p5_div algorithm of its
// vsigmoid micro-kernels, without FMA): e = exp(-|x|) as in ExpNonPositive (the polynomial's
// coefficients for exp(-t)), e / (e + 1), 0 past the cutoff, 1 - that for x >= 0 (by the sign bit).
// always inlined: a call inside the loops would keep them from vectorising
__attribute__((always_inline)) inline float SigmoidXnn(float x) {
  const float minusLog2e = -0x1.715476p+0f, magic = 0x1.8000FEp23f;
  const float ln2Hi = 0x1.62E400p-1f, ln2Lo = 0x1.7F7D1Cp-20f;
  const float c5 = -0x1.0F9F9Cp-7f, c4 = 0x1.573A1Ap-5f, c3 = -0x1.555A80p-3f, c2 = 0x1.FFFDC6p-2f, c1 = -0x1.FFFFF6p-1f;
  const float cutoff = 0x1.5D589Ep6f;
  const float z = std::fabs(x);
  float n = magic + z * minusLog2e;
  uint32_t bits;
  std::memcpy(&bits, &n, 4);
  bits <<= 23;
  float s;
  std::memcpy(&s, &bits, 4);
  n -= magic;
  float t = z + n * ln2Hi;
  t = t + n * ln2Lo;
  float p = c4 + t * c5;
  p = c3 + t * p;
  p = c2 + t * p;
  p = c1 + t * p;
  t *= s;
  const float e = s + t * p;
  const float f = e / (e + 1.f);
  uint32_t fb, cb, xb;  // masks instead of branches, so the loops vectorise
  std::memcpy(&fb, &f, 4);
  fb &= 0u - static_cast<uint32_t>(!(z > cutoff));
  float fm;
  std::memcpy(&fm, &fb, 4);
  const float cf = 1.f - fm;
  std::memcpy(&cb, &cf, 4);
  std::memcpy(&xb, &x, 4);
  const uint32_t neg = 0u - (xb >> 31);
  const uint32_t rb = (fb & neg) | (cb & ~neg);
  float r;
  std::memcpy(&r, &rb, 4);
  return r;
}

Napi::Value SiluMul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 5) return Fail(env, "siluMul takes 5 arguments"), env.Undefined();
  float *g, *u, *dy = nullptr, *out, *out2 = nullptr;
  size_t ng, nu, nd = 0, no, no2 = 0;
  if (!Floats(env, info[0], "g", &g, &ng) || !Floats(env, info[1], "u", &u, &nu) || !Floats(env, info[3], "out", &out, &no))
    return env.Undefined();
  const bool grad = !info[2].IsNull() && !info[2].IsUndefined();
  if (grad && (!Floats(env, info[2], "dy", &dy, &nd) || !Floats(env, info[4], "out2", &out2, &no2))) return env.Undefined();
  if (nu != ng || no != ng || (grad && (nd != ng || no2 != ng))) return Fail(env, "siluMul: arrays of different lengths"), env.Undefined();
  if (!grad) {
    for (size_t i = 0; i < ng; i++) out[i] = (g[i] * SigmoidXnn(g[i])) * u[i];
  } else {
    for (size_t i = 0; i < ng; i++) {
      const float gi = g[i], si = SigmoidXnn(gi), di = dy[i];
      out[i] = (di * u[i]) * (si * (1.f + gi * (1.f - si)));
      out2[i] = di * (gi * si);
    }
  }
  return env.Undefined();
}

// GELU (tanh approximation) as core/ops.ts geluTanh's chain computes it: 2u = (x + ((x x) x) c1) c2
// (activation kind 0), s = sigmoid(2u) as SigmoidXnn, y = x s; the gradient as activation kind 1
// from s recomputed: dy (s + (x (s (1 - s))) (((x x) c3 + 1) c2)).
Napi::Value Gelu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 6) return Fail(env, "gelu takes 6 arguments"), env.Undefined();
  float *x, *dy = nullptr, *out;
  size_t nx, nd = 0, no;
  if (!Floats(env, info[0], "x", &x, &nx) || !Floats(env, info[2], "out", &out, &no)) return env.Undefined();
  const bool grad = !info[1].IsNull() && !info[1].IsUndefined();
  if (grad && !Floats(env, info[1], "dy", &dy, &nd)) return env.Undefined();
  if (no != nx || (grad && nd != nx)) return Fail(env, "gelu: arrays of different lengths"), env.Undefined();
  const float c1 = info[3].ToNumber().FloatValue(), c2 = info[4].ToNumber().FloatValue(), c3 = info[5].ToNumber().FloatValue();
  if (!grad) {
    for (size_t i = 0; i < nx; i++) {
      const float xi = x[i];
      out[i] = xi * SigmoidXnn((xi + ((xi * xi) * xi) * c1) * c2);
    }
  } else {
    for (size_t i = 0; i < nx; i++) {
      const float xi = x[i], si = SigmoidXnn((xi + ((xi * xi) * xi) * c1) * c2);
      const float du2 = ((xi * xi) * c3 + 1.f) * c2;
      out[i] = dy[i] * (si + (xi * (si * (1.f - si))) * du2);
    }
  }
  return env.Undefined();
}

// ---- end of the fused attention softmax, SwiGLU product and GELU ----

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
#ifndef __APPLE__
  int n = info[0].ToNumber().Int32Value();
  openblas_set_num_threads(n < 1 ? 1 : n);
#endif
  return info.Env().Undefined();
}

Napi::Value Threads(const Napi::CallbackInfo& info) {
#ifdef __APPLE__
  return Napi::Number::New(info.Env(), 0);  // Accelerate chooses by itself
#else
  return Napi::Number::New(info.Env(), openblas_get_num_threads());
#endif
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#ifdef __APPLE__
  o.Set("library", "Accelerate");
  o.Set("corename", "");
  o.Set("config", "");
#else
  o.Set("library", "OpenBLAS");
  o.Set("corename", std::string(openblas_get_corename()));
  o.Set("config", std::string(openblas_get_config()));
#endif
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  exports.Set("biasActivation", Napi::Function::New(env, BiasActivation));
  exports.Set("adamwStep", Napi::Function::New(env, AdamW));
  exports.Set("adamwGradScale", Napi::Boolean::New(env, true));  // adamwStep takes gradScale
  exports.Set("matmulArrays", Napi::Function::New(env, MatmulArrays));
  exports.Set("decodeAttend", Napi::Function::New(env, DecodeAttend));  // generation
  exports.Set("rope", Napi::Function::New(env, Rope));
  exports.Set("logSoftmax", Napi::Function::New(env, LogSoftmax));
  exports.Set("activation", Napi::Function::New(env, Activation));
  exports.Set("sumSquares", Napi::Function::New(env, SumSquares));
  exports.Set("columnSums", Napi::Function::New(env, ColumnSums));  // kernel replacements
  exports.Set("norm", Napi::Function::New(env, Norm));  // RMSNorm / LayerNorm
  exports.Set("normGrad", Napi::Function::New(env, NormGrad));
  exports.Set("scaledSoftmax", Napi::Function::New(env, ScaledSoftmax));
  exports.Set("siluMul", Napi::Function::New(env, SiluMul));
  exports.Set("gelu", Napi::Function::New(env, Gelu));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("threads", Napi::Function::New(env, Threads));
  exports.Set("info", Napi::Function::New(env, Info));
  return exports;
}

}  // namespace

NODE_API_MODULE(nanovlm_blas, Init)
