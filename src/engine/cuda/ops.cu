/* ops: the element-wise and row-wise kernels of a decoder layer (embedding gather, RMSNorm,
 * bias + RoPE + KV store, SwiGLU, type conversion) and the cuBLAS matrix product. Attention is
 * in attention.cu. Each kernel is templated on the 16-bit type T and dispatched by the
 * launcher. */
#include "engine/cuda/ops.cuh"

#include <stdio.h>

template <typename T>
__global__ void embed_kernel(const T *embd, const int32_t *token, float *x, int E)
{
    griddep_wait();
    const T *src = embd + (size_t)token[blockIdx.x] * E;
    float *dst = x + (size_t)blockIdx.x * E;
    for (int j = threadIdx.x; j < E; j += blockDim.x)
        dst[j] = to_f32(src[j]);
}

void ops_embed(const struct ops_shape *s, const void *embd, const int32_t *token, float *x, int n,
               cudaStream_t st)
{
    if (n <= 0)
        return;
    OPS_DISPATCH(s->dtype, (launch_pdl(embed_kernel<T>, dim3(n), dim3(256), 0, st, (const T *)embd,
                                       token, x, s->n_embd)));
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024). */
__device__ __forceinline__ float block_sum(float v, float *red)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    if (lane == 0)
        red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    return v;
}

template <typename T>
__global__ void rmsnorm_kernel(const float *x, const int32_t *rows, const float *w, T *out, int E,
                               float eps)
{
    __shared__ float red[32];
    griddep_wait();
    int row = rows ? rows[blockIdx.x] : blockIdx.x;
    const float *xr = x + (size_t)row * E;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < E; j += blockDim.x)
        ss += xr[j] * xr[j];
    ss = block_sum(ss, red);
    float scale = 1.0f / sqrtf(ss / (float)E + eps);
    T *o = out + (size_t)blockIdx.x * E;
    for (int j = threadIdx.x; j < E; j += blockDim.x)
        o[j] = from_f32<T>(xr[j] * scale * w[j]);
}

void ops_rmsnorm(const struct ops_shape *s, const float *x, const int32_t *rows, const float *w,
                 void *out, int n, cudaStream_t st)
{
    if (n <= 0)
        return;
    int threads = s->n_embd >= 4096 ? 1024 : s->n_embd >= 1024 ? 512 : 256;
    OPS_DISPATCH(s->dtype, (launch_pdl(rmsnorm_kernel<T>, dim3(n), dim3(threads), 0, st, x, rows, w,
                                       (T *)out, s->n_embd, s->norm_eps)));
}

/* One CTA per token: the cos/sin of its position (a row of the table) into shared memory, then q
 * heads, k heads (rotated) and v (biased) in one pass over the q|k|v row. */
template <typename T>
__global__ void qkv_rope_kernel(const float *qkv, const float *bias, const float *rope,
                                const int32_t *pos, const int32_t *slot, T *q_out, T *k_pool,
                                T *v_pool, int n_head, int n_kv, int hd, int neox)
{
    extern __shared__ float cs_sn[]; /* [half] cos, [half] sin */
    const int i = blockIdx.x, half = hd / 2;
    const int q_dim = n_head * hd, kv_dim = n_kv * hd, width = q_dim + 2 * kv_dim;
    griddep_wait();
    const float *rp = rope + (size_t)pos[i] * hd;
    for (int j = threadIdx.x; j < hd; j += blockDim.x)
        cs_sn[j] = rp[j];
    __syncthreads();
    const float *row = qkv + (size_t)i * width;
    const int sl = slot[i];
    T *kd = sl >= 0 ? k_pool + (size_t)sl * kv_dim : NULL;
    T *vd = sl >= 0 ? v_pool + (size_t)sl * kv_dim : NULL;
    /* rotated pairs of the q and k heads */
    const int n_pairs = (n_head + n_kv) * half;
    for (int t = threadIdx.x; t < n_pairs; t += blockDim.x) {
        int h = t / half, j = t % half;
        int base = h * hd; /* q heads first, then k heads: contiguous in the row */
        int a = neox ? base + j : base + 2 * j, b = neox ? base + j + half : base + 2 * j + 1;
        float x0 = row[a], x1 = row[b];
        if (bias) {
            x0 += bias[a];
            x1 += bias[b];
        }
        float c = cs_sn[j], s = cs_sn[half + j];
        float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
        if (h < n_head) {
            q_out[(size_t)i * q_dim + a] = from_f32<T>(y0);
            q_out[(size_t)i * q_dim + b] = from_f32<T>(y1);
        } else if (kd) {
            kd[a - q_dim] = from_f32<T>(y0);
            kd[b - q_dim] = from_f32<T>(y1);
        }
    }
    if (vd) {
        for (int j = threadIdx.x; j < kv_dim; j += blockDim.x) {
            int c = q_dim + kv_dim + j;
            vd[j] = from_f32<T>(row[c] + (bias ? bias[c] : 0.0f));
        }
    }
}

void ops_qkv_rope_store(const struct ops_shape *s, const float *qkv, const float *bias,
                        const float *rope, const struct ops_step *b, void *q_out, void *k_pool,
                        void *v_pool, cudaStream_t st)
{
    if (b->n_tokens <= 0)
        return;
    size_t smem = (size_t)s->head_dim * sizeof(float);
    OPS_DISPATCH(s->dtype,
                 (launch_pdl(qkv_rope_kernel<T>, dim3(b->n_tokens), dim3(256), smem, st, qkv, bias,
                             rope, b->pos, b->slot, (T *)q_out, (T *)k_pool, (T *)v_pool, s->n_head,
                             s->n_head_kv, s->head_dim, s->rope_neox)));
}

template <typename T> __global__ void swiglu_kernel(const float *gu, T *out, int F, int n)
{
    griddep_wait();
    size_t total = (size_t)n * F;
    for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (size_t)gridDim.x * blockDim.x) {
        size_t i = k / F, j = k % F;
        float g = gu[i * 2 * F + 2 * j], u = gu[i * 2 * F + 2 * j + 1]; /* interleaved */
        out[k] = from_f32<T>(g / (1.0f + expf(-g)) * u);
    }
}

static int grid_for(size_t total, int threads)
{
    size_t g = (total + threads - 1) / threads;
    return g > 4096 ? 4096 : g < 1 ? 1 : (int)g;
}

void ops_swiglu(const struct ops_shape *s, const float *gu, void *out, int n, cudaStream_t st)
{
    if (n <= 0)
        return;
    int grid = grid_for((size_t)n * s->n_ff, 256);
    OPS_DISPATCH(s->dtype, (launch_pdl(swiglu_kernel<T>, dim3(grid), dim3(256), 0, st, gu, (T *)out,
                                       s->n_ff, n)));
}

template <typename T>
__global__ void f32_to_kernel(const float *src, T *dst, size_t rows, int cols, size_t pitch)
{
    size_t n = rows * (size_t)cols;
    for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (size_t)gridDim.x * blockDim.x)
        dst[(k / cols) * pitch + k % cols] = from_f32<T>(src[k]);
}

void ops_f32_to_dtype(enum dev_dtype t, const float *src, void *dst, size_t rows, int cols,
                      size_t dst_pitch, cudaStream_t st)
{
    size_t n = rows * (size_t)cols;
    if (n == 0)
        return;
    OPS_DISPATCH(t, (f32_to_kernel<T>
                     <<<grid_for(n, 256), 256, 0, st>>>(src, (T *)dst, rows, cols, dst_pitch)));
}

/* Small-batch products (m <= OPS_GEMV_MAX_M rows: decode). cuBLAS's kernels for a handful of
 * columns leave much of the bandwidth unused, so each weight row is streamed once by `wpr` warps
 * (16-byte loads, up to four per row in flight per lane, the first two issued before waiting for
 * the previous kernel: weights do not depend on it) against every input row, read through the
 * cache; with more than one input row a warp group takes GEMV_ROWS weight rows, so each input
 * value it loads serves all of them. The split over warps depends on n_out only and the sums run in a fixed order, so a
 * row's result does not depend on the other rows or on timing. Fused variants: NORM takes the
 * f32 residual rows and applies RMSNorm on the fly: the dot products run over x * norm_w, the
 * warps sum x^2 over the same elements, and the epilogue scales by the inverse RMS (so the normed
 * activations are not rounded to 16 bits as in the unfused path: slightly more accurate);
 * SWIGLU takes the gate|up matrix with gate and up rows interleaved and writes silu(gate) * up
 * as T. */
template <typename T, int M, int R, bool NORM>
__device__ __forceinline__ void gemv_fma(float (&acc)[R][M], float (&ss)[M], const uint4 (&wv)[R],
                                         const void *const (&xr)[M], const float *nw, int k)
{
    float wf[R][8], xf[8];
#pragma unroll
    for (int q = 0; q < R; q++)
        unpack8<T>(wv[q], wf[q]);
    float nf[8];
    if (NORM) {
        float4 a = *reinterpret_cast<const float4 *>(nw + k);
        float4 b = *reinterpret_cast<const float4 *>(nw + k + 4);
        nf[0] = a.x, nf[1] = a.y, nf[2] = a.z, nf[3] = a.w;
        nf[4] = b.x, nf[5] = b.y, nf[6] = b.z, nf[7] = b.w;
    }
#pragma unroll
    for (int r = 0; r < M; r++) {
        if (NORM) {
            const float *xp = (const float *)xr[r] + k;
            float4 a = *reinterpret_cast<const float4 *>(xp);
            float4 b = *reinterpret_cast<const float4 *>(xp + 4);
            float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
            for (int e = 0; e < 8; e++) {
                ss[r] += v[e] * v[e];
                xf[e] = v[e] * nf[e];
            }
        } else {
            unpack8<T>(*reinterpret_cast<const uint4 *>((const T *)xr[r] + k), xf);
        }
#pragma unroll
        for (int q = 0; q < R; q++)
#pragma unroll
            for (int e = 0; e < 8; e++)
                acc[q][r] += wf[q][e] * xf[e];
    }
}

__device__ __forceinline__ uint4 ld_weights(const void *p, bool ok)
{
    return ok ? __ldcs(reinterpret_cast<const uint4 *>(p)) : make_uint4(0, 0, 0, 0);
}

/* The row sums of this block's warps (red[warp][q][r]: warp group g = warp / wpr holds output
 * rows g * R + q) -> y, or silu(gate) * up -> out. */
template <typename T, int M, int R, bool NORM, bool SWIGLU>
__device__ __forceinline__ void gemv_epilogue(float (&red)[8][R][M], float (&red_ss)[8][M],
                                              float *y, T *out, int n_out, int n_in, float eps,
                                              float beta, int wpr)
{
    const int rpb = 8 / wpr * R;
    if (!SWIGLU) {
        if (threadIdx.x < rpb * M) {
            const int lr = threadIdx.x / M, r = threadIdx.x % M, orow = blockIdx.x * rpb + lr;
            const int g = lr / R, q = lr % R;
            if (orow < n_out) {
                float sum = 0.0f, ss = 0.0f;
                for (int p = 0; p < wpr; p++) {
                    sum += red[g * wpr + p][q][r];
                    ss += NORM ? red_ss[g * wpr + p][r] : 0.0f;
                }
                if (NORM)
                    sum *= 1.0f / sqrtf(ss / (float)n_in + eps);
                float *yp = y + (size_t)r * n_out + orow;
                *yp = beta == 0.0f ? sum : sum + beta * *yp;
            }
        }
    } else if (threadIdx.x < rpb / 2 * M) {
        const int lp = threadIdx.x / M, r = threadIdx.x % M;
        const int j = blockIdx.x * rpb / 2 + lp, n_ff = n_out / 2;
        /* gate row 2 lp and up row 2 lp + 1: R is 1 (then wpr <= 4 keeps both in the block) or
         * even (both in one warp group) */
        const int gg = (2 * lp) / R, qg = (2 * lp) % R, gu = (2 * lp + 1) / R, qu = (2 * lp + 1) % R;
        if (j < n_ff) {
            float g = 0.0f, u = 0.0f, ss = 0.0f;
            for (int p = 0; p < wpr; p++) {
                g += red[gg * wpr + p][qg][r];
                u += red[gu * wpr + p][qu][r];
                ss += NORM ? red_ss[gg * wpr + p][r] : 0.0f;
            }
            if (NORM) {
                float inv = 1.0f / sqrtf(ss / (float)n_in + eps);
                g *= inv;
                u *= inv;
            }
            out[(size_t)r * n_ff + j] = from_f32<T>(g / (1.0f + expf(-g)) * u);
        }
    }
}

/* R output rows per warp group: each input row's 16 bytes, read through the cache, serve R
 * weight rows (with R = 1 the x traffic is M times the weight traffic, which bounds the kernel
 * from 2 rows on). A lane's k positions and the order of every sum depend on n_out and n_in only,
 * not on R. */
template <typename T, int M, int R, bool NORM, bool SWIGLU>
__global__ void __launch_bounds__(256)
    gemv_kernel(const T *__restrict__ W, const void *__restrict__ x, const int32_t *rows,
                const float *nw, float eps, float *y, T *out, int n_out, int n_in, float beta,
                int wpr)
{
    __shared__ float red[8][R][M], red_ss[8][M];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, groups = 8 / wpr;
    const int row0 = (blockIdx.x * groups + warp / wpr) * R, part = warp % wpr;
    const bool active = row0 < n_out;
    const T *w[R];
#pragma unroll
    for (int q = 0; q < R; q++)
        w[q] = W + (size_t)(row0 + q < n_out ? row0 + q : 0) * n_in;
    const int stride = 256 * wpr;
    int k = (part * 32 + lane) * 8;
    uint4 w0[R], w1[R];
#pragma unroll
    for (int q = 0; q < R; q++) {
        w0[q] = ld_weights(w[q] + k, active && k < n_in);
        w1[q] = ld_weights(w[q] + k + stride, active && k + stride < n_in);
    }
    griddep_wait(); /* x (and y, for the residual) come from the previous kernels */
    const void *xr[M];
#pragma unroll
    for (int r = 0; r < M; r++)
        xr[r] = NORM ? (const void *)((const float *)x + (size_t)(rows ? rows[r] : r) * n_in)
                     : (const void *)((const T *)x + (size_t)r * n_in);
    float acc[R][M], ss[M];
#pragma unroll
    for (int r = 0; r < M; r++) {
        ss[r] = 0.0f;
#pragma unroll
        for (int q = 0; q < R; q++)
            acc[q][r] = 0.0f;
    }
    for (; active && k < n_in; k += 2 * stride) {
        const int k1 = k + stride, k2 = k + 2 * stride, k3 = k2 + stride;
        uint4 n0[R], n1[R];
#pragma unroll
        for (int q = 0; q < R; q++) {
            n0[q] = ld_weights(w[q] + k2, k2 < n_in);
            n1[q] = ld_weights(w[q] + k3, k3 < n_in);
        }
        gemv_fma<T, M, R, NORM>(acc, ss, w0, xr, nw, k);
        if (k1 < n_in)
            gemv_fma<T, M, R, NORM>(acc, ss, w1, xr, nw, k1);
#pragma unroll
        for (int q = 0; q < R; q++) {
            w0[q] = n0[q];
            w1[q] = n1[q];
        }
    }
#pragma unroll
    for (int r = 0; r < M; r++)
        for (int o = 16; o > 0; o >>= 1) {
#pragma unroll
            for (int q = 0; q < R; q++)
                acc[q][r] += __shfl_xor_sync(0xffffffffu, acc[q][r], o);
            if (NORM)
                ss[r] += __shfl_xor_sync(0xffffffffu, ss[r], o);
        }
    if (lane == 0)
#pragma unroll
        for (int r = 0; r < M; r++) {
#pragma unroll
            for (int q = 0; q < R; q++)
                red[warp][q][r] = acc[q][r];
            red_ss[warp][r] = ss[r];
        }
    __syncthreads();
    gemv_epilogue<T, M, R, NORM, SWIGLU>(red, red_ss, y, out, n_out, n_in, eps, beta, wpr);
}

/* Output rows per warp group for m input rows: 1 for one row (the weights are the only
 * traffic), GEMV_ROWS for more. */
#ifndef GEMV_ROWS
#define GEMV_ROWS 4
#endif

template <typename T, bool NORM, bool SWIGLU>
static void gemv_launch(const void *w, const void *x, const int32_t *rows, const float *nw,
                        float eps, float *y, void *out, int m, int n_out, int n_in, float beta,
                        int n_sm, cudaStream_t st)
{
    int wpr = 1;
    const int max_wpr = SWIGLU ? 4 : 8; /* SWIGLU: a gate/up pair stays in one block */
    while (wpr < max_wpr && (int64_t)n_out * wpr / 8 < 4 * (int64_t)n_sm)
        wpr *= 2;
    const int R = m == 1 ? 1 : GEMV_ROWS, rpb = 8 / wpr * R, grid = (n_out + rpb - 1) / rpb;
    const T *W = (const T *)w;
#define GEMV_CASE(MM, RR)                                                                          \
    case MM:                                                                                       \
        launch_pdl(gemv_kernel<T, MM, RR, NORM, SWIGLU>, dim3(grid), dim3(256), 0, st, W, x, rows, \
                   nw, eps, y, (T *)out, n_out, n_in, beta, wpr);                                  \
        break;
    switch (m) {
        GEMV_CASE(1, 1)
        GEMV_CASE(2, GEMV_ROWS)
        GEMV_CASE(3, GEMV_ROWS)
        GEMV_CASE(4, GEMV_ROWS)
    default: /* m <= OPS_GEMV_MAX_M (use_gemv) */
        break;
    }
#undef GEMV_CASE
}

static int use_gemv(const struct ops_ctx *cx, int m, int n_in)
{
    return m >= 1 && m <= cx->gemv_max_m && m <= OPS_GEMV_MAX_M && n_in % 8 == 0 && cx->n_sm > 0;
}

static int cublas_gemm(const struct ops_ctx *cx, const void *w, const void *x, float *y, int m,
                       int n_out, int n_in, float beta, char *err, size_t err_len)
{
    /* Row-major y = x W^T is column-major y^T = W^T(col-major view of W) x^T. */
    const float alpha = 1.0f;
    cudaDataType_t ct = dev_dtype_cuda(cx->s->dtype);
    cublasStatus_t stt =
        cublasGemmEx(cx->blas, CUBLAS_OP_T, CUBLAS_OP_N, n_out, m, n_in, &alpha, w, ct, n_in, x, ct,
                     n_in, &beta, y, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (stt != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, err_len, "cublasGemmEx (m %d, n_out %d, n_in %d, %s): %s", m, n_out, n_in,
                 dev_dtype_str(cx->s->dtype), cublas_status_name(stt));
        return -1;
    }
    return 0;
}

int ops_gemm(const struct ops_ctx *cx, const void *w, const void *x, float *y, int m, int n_out,
             int n_in, float beta, char *err, size_t err_len)
{
    if (use_gemv(cx, m, n_in)) {
        OPS_DISPATCH(cx->s->dtype,
                     (gemv_launch<T, false, false>(w, x, NULL, NULL, 0.0f, y, NULL, m, n_out, n_in,
                                                   beta, cx->n_sm, cx->st)));
        return 0;
    }
    return cublas_gemm(cx, w, x, y, m, n_out, n_in, beta, err, err_len);
}

int ops_norm_gemm(const struct ops_ctx *cx, const float *x, const int32_t *rows, const float *nw,
                  void *a16, const void *w, float *y, int m, int n_out, char *err, size_t err_len)
{
    const int n_in = cx->s->n_embd;
    if (use_gemv(cx, m, n_in)) {
        OPS_DISPATCH(cx->s->dtype,
                     (gemv_launch<T, true, false>(w, x, rows, nw, cx->s->norm_eps, y, NULL, m,
                                                  n_out, n_in, 0.0f, cx->n_sm, cx->st)));
        return 0;
    }
    ops_rmsnorm(cx->s, x, rows, nw, a16, m, cx->st);
    return cublas_gemm(cx, w, a16, y, m, n_out, n_in, 0.0f, err, err_len);
}

int ops_norm_gemm_swiglu(const struct ops_ctx *cx, const float *x, const float *nw, void *a16,
                         const void *wgu, float *gu, void *out, int m, char *err, size_t err_len)
{
    const int n_in = cx->s->n_embd, n_ff = cx->s->n_ff;
    if (use_gemv(cx, m, n_in)) {
        OPS_DISPATCH(cx->s->dtype,
                     (gemv_launch<T, true, true>(wgu, x, NULL, nw, cx->s->norm_eps, NULL, out, m,
                                                 2 * n_ff, n_in, 0.0f, cx->n_sm, cx->st)));
        return 0;
    }
    ops_rmsnorm(cx->s, x, NULL, nw, a16, m, cx->st);
    if (cublas_gemm(cx, wgu, a16, gu, m, 2 * n_ff, n_in, 0.0f, err, err_len) != 0)
        return -1;
    ops_swiglu(cx->s, gu, out, m, cx->st);
    return 0;
}
