// Fused attention for CPUs with AVX512-BF16 (no AMX needed): softmax(Q K^T * scale + mask) V per (batch, head),
// one block of query rows at a time, so scores and probabilities never leave L1. Q, K, V and the probabilities go
// to bf16 and both matrix products run on vdpbf16ps with fp32 accumulation; scale, mask and softmax stay fp32.
// Why: torch's fp32 flash kernel was the whole batch-32 gap to OpenVINO's int8 on this machine kind (issue #11).
// ATen and torch's pybind casters only: <torch/extension.h> also parses the whole C++ frontend (torch/all.h: nn,
// optim, data), most of the build's time.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/utils/pybind.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace {

// 2^x on 16 lanes for x <= 0 (scores minus their row max): 2^round(x) by scalef times a degree-5 minimax
// polynomial on the remainder in [-1/2, 1/2] (relative error ~2e-7, far below the bf16 rounding that follows).
inline __m512 exp2_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-126.0f));  // 2^-126 is the smallest normal float; masked lanes are zeroed later
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.3333558146e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108665e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650696e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718056e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// C[MR x 16*NB] = A[MR x K2 pairs] . B[K2 pairs x 16*NB]; A and B hold bf16 pairs along the reduction axis
// (B in the VNNI layout vdpbf16ps reads: row p holds (b[2p][n], b[2p+1][n]) for each column n).
template <int MR, int NB>
inline void micro_gemm(const uint32_t* a, int64_t lda, const uint32_t* b, int64_t ldb, int64_t k2, float* c,
                       int64_t ldc) {
  __m512 acc[MR][NB];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < k2; ++p) {
    __m512bh bv[NB];
    for (int j = 0; j < NB; ++j) bv[j] = (__m512bh)_mm512_loadu_si512(b + p * ldb + 16 * j);
    for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r * lda + p]));
      for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], av, bv[j]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NB; ++j) _mm512_storeu_ps(c + r * ldc + 16 * j, acc[r][j]);
}

// rows x (16 * n16) product in blocks of MR rows and up to four 16-column vectors.
template <int MR>
inline void gemm_rows(const uint32_t* a, int64_t lda, const uint32_t* b, int64_t ldb, int64_t k2, float* c,
                      int64_t ldc, int64_t n16) {
  int64_t j = 0;
  for (; j + 4 <= n16; j += 4) micro_gemm<MR, 4>(a, lda, b + 16 * j, ldb, k2, c + 16 * j, ldc);
  switch (n16 - j) {
    case 3: micro_gemm<MR, 3>(a, lda, b + 16 * j, ldb, k2, c + 16 * j, ldc); break;
    case 2: micro_gemm<MR, 2>(a, lda, b + 16 * j, ldb, k2, c + 16 * j, ldc); break;
    case 1: micro_gemm<MR, 1>(a, lda, b + 16 * j, ldb, k2, c + 16 * j, ldc); break;
    default: break;
  }
}

template <int MR>
inline void gemm_block(int rows, const uint32_t* a, int64_t lda, const uint32_t* b, int64_t ldb, int64_t k2,
                       float* c, int64_t ldc, int64_t n16) {
  if (rows == MR) {
    gemm_rows<MR>(a, lda, b, ldb, k2, c, ldc, n16);
  } else {
    for (int r = 0; r < rows; ++r) gemm_rows<1>(a + r * lda, lda, b, ldb, k2, c + r * ldc, ldc, n16);
  }
}

// r[i][j] -> r[j][i] for a 16 x 16 block of 32-bit lanes: interleave 32-bit, then 64-bit elements within 128-bit
// lanes, then gather the 128-bit lanes (64 shuffles for 256 elements).
inline void transpose16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  __m512i u[16];  // u[4g + c] holds, per 128-bit lane l, column 4l + c of rows 4g .. 4g + 3
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i v_low = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44);    // lanes 0, 1 of rows 0-3 and 4-7
    const __m512i v_high = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE);   // lanes 2, 3
    const __m512i w_low = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
    const __m512i w_high = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
    r[c] = _mm512_shuffle_i32x4(v_low, w_low, 0x88);        // column c
    r[4 + c] = _mm512_shuffle_i32x4(v_low, w_low, 0xDD);    // column 4 + c
    r[8 + c] = _mm512_shuffle_i32x4(v_high, w_high, 0x88);  // column 8 + c
    r[12 + c] = _mm512_shuffle_i32x4(v_high, w_high, 0xDD); // column 12 + c
  }
}

constexpr int kRows = 4;  // query rows per block: 4 x 4 accumulators + 4 B vectors fit in the 32 zmm registers
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline __mmask16 lanes_below(int64_t count) {  // the first min(count, 16) lanes
  return count >= 16 ? static_cast<__mmask16>(0xFFFF) : count <= 0 ? 0 : static_cast<__mmask16>((1u << count) - 1);
}

// One row of scores: scale, mask, softmax, and the probabilities as bf16 (zero past the last key). Scores with at
// most 16 * NV keys stay in registers (one pass over memory); NV = 0 is the three-pass loop for longer rows.
template <int NV>
inline void softmax_row(float* row, const float* mrow, const uint8_t* brow, int64_t S, int64_t S16, float scale,
                        uint16_t* prow) {
  // base-2 units throughout: softmax(x) = 2^(x log2 e - max) / sum, so scale and log2(e) are one multiply
  constexpr float kLog2e = 1.44269504088896341f;
  const __m512 vscale = _mm512_set1_ps(scale * kLog2e);
  auto scaled = [&](int64_t n) {
    const __mmask16 live = lanes_below(S - n);
    __mmask16 keep = live;
    __m512 x = _mm512_mul_ps(_mm512_loadu_ps(row + n), vscale);
    if (mrow) x = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(live, mrow + n), _mm512_set1_ps(kLog2e), x);
    if (brow) keep &= _mm512_test_epi32_mask(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(live, brow + n)),
                                             _mm512_set1_epi32(0xFF));
    return _mm512_mask_blend_ps(keep, _mm512_set1_ps(kNegInf), x);
  };
  auto finish = [](float mx) { return std::isfinite(mx) ? mx : 0.0f; };  // every key masked: uniform, never NaN
  if constexpr (NV > 0) {
    __m512 x[NV];
    __m512 vmax = _mm512_set1_ps(kNegInf);
    for (int j = 0; j < NV; ++j) vmax = _mm512_max_ps(vmax, x[j] = scaled(16 * j));
    const __m512 mx = _mm512_set1_ps(finish(_mm512_reduce_max_ps(vmax)));
    __m512 vsum = _mm512_setzero_ps();
    for (int j = 0; j < NV; ++j) vsum = _mm512_add_ps(vsum, x[j] = _mm512_maskz_mov_ps(lanes_below(S - 16 * j), exp2_nonpositive(_mm512_sub_ps(x[j], mx))));
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
    for (int j = 0; j < NV; ++j)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(prow + 16 * j), (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(x[j], inv)));
  } else {
    __m512 vmax = _mm512_set1_ps(kNegInf);
    for (int64_t n = 0; n < S16; n += 16) {
      const __m512 x = scaled(n);
      _mm512_storeu_ps(row + n, x);
      vmax = _mm512_max_ps(vmax, x);
    }
    const __m512 mx = _mm512_set1_ps(finish(_mm512_reduce_max_ps(vmax)));
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t n = 0; n < S16; n += 16) {
      const __m512 e = _mm512_maskz_mov_ps(lanes_below(S - n), exp2_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(row + n), mx)));
      _mm512_storeu_ps(row + n, e);
      vsum = _mm512_add_ps(vsum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
    for (int64_t n = 0; n < S16; n += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(prow + n),
                          (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(row + n), inv)));
  }
}

using SoftmaxRow = void (*)(float*, const float*, const uint8_t*, int64_t, int64_t, float, uint16_t*);

SoftmaxRow softmax_for(int64_t S16) {
  switch (S16 / 16) {
    case 1: return softmax_row<1>;
    case 2: return softmax_row<2>;
    case 3: return softmax_row<3>;
    case 4: return softmax_row<4>;
    case 5: return softmax_row<5>;
    case 6: return softmax_row<6>;
    case 7: return softmax_row<7>;
    case 8: return softmax_row<8>;
    default: return softmax_row<0>;
  }
}

}  // namespace

// q, k, v: [B, H, S, D] float32, any strides with a contiguous last axis; mask: broadcastable to [B, H, S, S], either
// additive float32 or boolean (true = attend, as scaled_dot_product_attention reads it), or None.
// Returns [B, S, H, D] (the layout transformers wants back): float32, or with out_scale > 0 uint8 quantized as
// quantize_per_tensor(x, out_scale, out_zero_point, 0, 255) would (the static int8 graph quantizes attention's
// output for the next Linear; writing it here saves a pass over the float output).
at::Tensor attention(at::Tensor q, at::Tensor k, at::Tensor v, c10::optional<at::Tensor> mask,
                        double scale, double out_scale, int64_t out_zero_point) {
  // every pointer below is read as host memory: a CUDA or meta tensor must be an error, not a crash
  TORCH_CHECK(q.device().is_cpu() && k.device().is_cpu() && v.device().is_cpu(), "q, k, v must be CPU tensors");
  TORCH_CHECK(!(mask.has_value() && mask->defined()) || mask->device().is_cpu(), "mask must be a CPU tensor");
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.sizes() == q.sizes(), "q, k, v must be [B, H, S, D] alike");
  TORCH_CHECK(q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat,
              "q, k, v must be float32");
  const int64_t B = q.size(0), H = q.size(1), S = q.size(2), D = q.size(3);
  TORCH_CHECK(D % 16 == 0, "head size must be a multiple of 16, got ", D);
  if (q.stride(3) != 1) q = q.contiguous();
  if (k.stride(3) != 1) k = k.contiguous();
  if (v.stride(3) != 1) v = v.contiguous();
  at::Tensor m;
  if (mask.has_value() && mask->defined()) {
    m = mask->scalar_type() == at::kBool ? *mask : mask->to(at::kFloat);
    m = m.expand({B, H, S, S});
    if (m.stride(3) != 1) m = m.contiguous();
  }
  const bool quantized = out_scale > 0;
  auto out = at::empty({B, S, H, D}, q.options().dtype(quantized ? at::kByte : at::kFloat));
  const int64_t S16 = (S + 15) / 16 * 16;  // key axis padded to whole vectors (and to an even count of pairs)
  const int64_t D2 = D / 2, S2 = S16 / 2;
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  const bool bool_mask = m.defined() && m.scalar_type() == at::kBool;
  const float* mp = m.defined() && !bool_mask ? m.data_ptr<float>() : nullptr;
  const uint8_t* bp = bool_mask ? reinterpret_cast<const uint8_t*>(m.data_ptr<bool>()) : nullptr;
  float* op = quantized ? nullptr : out.data_ptr<float>();
  uint8_t* up = quantized ? out.data_ptr<uint8_t>() : nullptr;
  const __m512 inv_out_scale = _mm512_set1_ps(quantized ? static_cast<float>(1.0 / out_scale) : 1.0f);
  const __m512 out_zp = _mm512_set1_ps(static_cast<float>(out_zero_point));
  const float fscale = static_cast<float>(scale);
  const int64_t qs0 = q.stride(0), qs1 = q.stride(1), qs2 = q.stride(2);
  const int64_t ks0 = k.stride(0), ks1 = k.stride(1), ks2 = k.stride(2);
  const int64_t vs0 = v.stride(0), vs1 = v.stride(1), vs2 = v.stride(2);
  const int64_t ms0 = m.defined() ? m.stride(0) : 0, ms1 = m.defined() ? m.stride(1) : 0, ms2 = m.defined() ? m.stride(2) : 0;
  const SoftmaxRow softmax = softmax_for(S16);
  // lane 2i takes element i of row s, lane 2i+1 element i of row s+1
  alignas(64) uint16_t interleave_idx[32];
  for (int i = 0; i < 16; ++i) interleave_idx[2 * i] = i, interleave_idx[2 * i + 1] = 16 + i;
  const __m512i interleave = _mm512_load_si512(interleave_idx);
  // Work items are (batch, group of heads): packing walks each token's heads side by side, in the order
  // transformers' [B, S, H, D] layout stores them (one head at a time strides 4 H D bytes per token, and was a third
  // of the time). Groups split the heads only as far as needed to give every thread work at small batches.
  const int64_t threads = at::get_num_threads();
  const int64_t groups = std::min<int64_t>(H, std::max<int64_t>(1, (2 * threads + B - 1) / B));
  const int64_t per_group = (H + groups - 1) / groups;
  const int64_t q_size = S * D2, k_size = D2 * S16, v_size = S2 * D;

  at::parallel_for(0, B * groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> qb(per_group * q_size), kb(per_group * k_size), vb(per_group * v_size), pb(kRows * S2);
    std::vector<float> sc(kRows * S16), ob(kRows * D);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / groups, h0 = (item % groups) * per_group, h1 = std::min(H, h0 + per_group);
      if (h0 >= h1) continue;
      // Q as bf16 rows (pairs along d are its VNNI layout already); K transposed into pairs along d; V into
      // pairs along s (rows s and s+1 interleaved); zero past the last key.
      for (int64_t s = 0; s < S; ++s) {
        for (int64_t h = h0; h < h1; ++h) {
          const float* qrow = qp + b * qs0 + h * qs1 + s * qs2;
          uint32_t* qdst = qb.data() + (h - h0) * q_size + s * D2;
          for (int64_t d = 0; d < D; d += 16)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(qdst + d / 2),
                                (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(qrow + d)));
        }
      }
      // K: 16 keys x 16 pairs at a time, transposed in registers (scalar stores were a third of the packing)
      for (int64_t n0 = 0; n0 < S16; n0 += 16) {
        for (int64_t h = h0; h < h1; ++h) {
          const float* kh = kp + b * ks0 + h * ks1;
          uint32_t* kdst = kb.data() + (h - h0) * k_size + n0;
          for (int64_t d = 0; d < D; d += 32) {
            __m512i rows[16];
            for (int i = 0; i < 16; ++i) {
              if (n0 + i >= S) {
                rows[i] = _mm512_setzero_si512();
                continue;
              }
              const float* krow = kh + (n0 + i) * ks2 + d;
              const __m512 high = d + 16 < D ? _mm512_loadu_ps(krow + 16) : _mm512_setzero_ps();
              rows[i] = (__m512i)_mm512_cvtne2ps_pbh(high, _mm512_loadu_ps(krow));  // pairs (d, d+1), ... of key n0+i
            }
            transpose16x16(rows);
            for (int64_t p = 0; p < std::min<int64_t>(16, (D - d) / 2); ++p)
              _mm512_storeu_si512(kdst + (d / 2 + p) * S16, rows[p]);
          }
        }
      }
      for (int64_t s = 0; s < S16; s += 2) {
        for (int64_t h = h0; h < h1; ++h) {
          const float* lo = vp + b * vs0 + h * vs1 + s * vs2;
          uint32_t* vdst = vb.data() + (h - h0) * v_size + (s / 2) * D;
          for (int64_t d = 0; d < D; d += 16) {
            const __m512 first = s < S ? _mm512_loadu_ps(lo + d) : _mm512_setzero_ps();
            const __m512 second = s + 1 < S ? _mm512_loadu_ps(lo + vs2 + d) : _mm512_setzero_ps();
            const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(second, first);  // row s low, s + 1 high
            _mm512_storeu_si512(vdst + d, _mm512_permutexvar_epi16(interleave, both));
          }
        }
      }

      for (int64_t h = h0; h < h1; ++h) {
        const uint32_t* qh = qb.data() + (h - h0) * q_size;
        const uint32_t* kh = kb.data() + (h - h0) * k_size;
        const uint32_t* vh = vb.data() + (h - h0) * v_size;
        for (int64_t m0 = 0; m0 < S; m0 += kRows) {
          const int rows = static_cast<int>(std::min<int64_t>(kRows, S - m0));
          gemm_block<kRows>(rows, qh + m0 * D2, D2, kh, S16, D2, sc.data(), S16, S16 / 16);
          for (int r = 0; r < rows; ++r) {
            const int64_t moff = b * ms0 + h * ms1 + (m0 + r) * ms2;
            softmax(sc.data() + r * S16, mp ? mp + moff : nullptr, bp ? bp + moff : nullptr, S, S16, fscale,
                    reinterpret_cast<uint16_t*>(pb.data() + r * S2));
          }
          gemm_block<kRows>(rows, pb.data(), S2, vh, D, S2, ob.data(), D, D / 16);
          for (int r = 0; r < rows; ++r)
            if (op) {
              std::memcpy(op + ((b * S + m0 + r) * H + h) * D, ob.data() + r * D, D * sizeof(float));
            } else {  // round half to even, add the zero point, saturate to [0, 255]
              for (int64_t d = 0; d < D; d += 16) {
                __m512 x = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(ob.data() + r * D + d), inv_out_scale),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                x = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(x, out_zp), _mm512_setzero_ps()), _mm512_set1_ps(255.0f));
                _mm_storeu_si128(reinterpret_cast<__m128i*>(up + ((b * S + m0 + r) * H + h) * D + d),
                                 _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(x)));
              }
            }
        }
      }
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("attention", &attention, "fused bf16 attention on AVX512-BF16, float32 or uint8 out (see above)");
}
