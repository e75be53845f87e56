/* ops: the element-wise and row-wise kernels of a decoder layer (embedding gather, RMSNorm,
 * bias + RoPE + KV store, SwiGLU, type conversion) and the cuBLAS matrix product. Attention is
 * in attention.cu. Each kernel is templated on the 16-bit type T and dispatched by the
 * launcher. */
#include "engine/cuda/ops.cuh"

#include <stdio.h>

template <typename T>
__global__ void embed_kernel(const T *embd, const int32_t *token, float *x, int E)
{
    const T *src = embd + (size_t)token[blockIdx.x] * E;
    float *dst = x + (size_t)blockIdx.x * E;
    for (int j = threadIdx.x; j < E; j += blockDim.x)
        dst[j] = to_f32(src[j]);
}

void ops_embed(const struct ops_shape *s, const void *embd, const int32_t *token, float *x,
               int n, cudaStream_t st)
{
    if (n <= 0)
        return;
    OPS_DISPATCH(s->dtype, (embed_kernel<T><<<n, 256, 0, st>>>((const T *)embd, token, x,
                                                               s->n_embd)));
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
__global__ void rmsnorm_kernel(const float *x, const int32_t *rows, const float *w, T *out,
                               int E, float eps)
{
    __shared__ float red[32];
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
    OPS_DISPATCH(s->dtype, (rmsnorm_kernel<T><<<n, threads, 0, st>>>(x, rows, w, (T *)out,
                                                                     s->n_embd, s->norm_eps)));
}

/* One CTA per token: the cos/sin of its position (a row of the table) into shared memory, then q heads, k heads
 * (rotated) and v (biased) in one pass over the q|k|v row. */
template <typename T>
__global__ void qkv_rope_kernel(const float *qkv, const float *bias, const float *rope,
                                const int32_t *pos, const int32_t *slot, T *q_out, T *k_pool,
                                T *v_pool, int n_head, int n_kv, int hd, int neox)
{
    extern __shared__ float cs_sn[]; /* [half] cos, [half] sin */
    const int i = blockIdx.x, half = hd / 2;
    const int q_dim = n_head * hd, kv_dim = n_kv * hd, width = q_dim + 2 * kv_dim;
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
                        const float *rope, const struct ops_step *b, void *q_out,
                        void *k_pool, void *v_pool, cudaStream_t st)
{
    if (b->n_tokens <= 0)
        return;
    size_t smem = (size_t)s->head_dim * sizeof(float);
    OPS_DISPATCH(s->dtype,
                 (qkv_rope_kernel<T><<<b->n_tokens, 256, smem, st>>>(
                     qkv, bias, rope, b->pos, b->slot, (T *)q_out, (T *)k_pool,
                     (T *)v_pool, s->n_head, s->n_head_kv, s->head_dim, s->rope_neox)));
}

template <typename T> __global__ void swiglu_kernel(const float *gu, T *out, int F, int n)
{
    size_t total = (size_t)n * F;
    for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (size_t)gridDim.x * blockDim.x) {
        size_t i = k / F, j = k % F;
        float g = gu[i * 2 * F + j], u = gu[i * 2 * F + F + j];
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
    OPS_DISPATCH(s->dtype, (swiglu_kernel<T><<<grid, 256, 0, st>>>(gu, (T *)out, s->n_ff, n)));
}

template <typename T> __global__ void f32_to_kernel(const float *src, T *dst, size_t n)
{
    for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (size_t)gridDim.x * blockDim.x)
        dst[k] = from_f32<T>(src[k]);
}

void ops_f32_to_dtype(enum dev_dtype t, const float *src, void *dst, size_t n, cudaStream_t st)
{
    if (n == 0)
        return;
    OPS_DISPATCH(t, (f32_to_kernel<T><<<grid_for(n, 256), 256, 0, st>>>(src, (T *)dst, n)));
}

/* Small-batch products (m <= OPS_GEMV_MAX_M rows, decode): cuBLAS's kernels for a handful of
 * columns leave much of the bandwidth unused, so each weight row is streamed once by `wpr` warps
 * (16-byte loads, two in flight per lane) against every input row, read through the cache. The
 * split over warps depends on n_out only and the sums run in a fixed order, so a row's result
 * does not depend on the other rows or on timing. */
template <typename T, int M>
__global__ void __launch_bounds__(256)
    gemv_kernel(const T *__restrict__ W, const T *__restrict__ x, float *y, int n_out, int n_in,
                float beta, int wpr)
{
    __shared__ float red[8][M];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, rpb = 8 / wpr;
    const int row = blockIdx.x * rpb + warp / wpr, part = warp % wpr;
    float acc[M];
#pragma unroll
    for (int r = 0; r < M; r++)
        acc[r] = 0.0f;
    if (row < n_out) {
        const T *w = W + (size_t)row * n_in;
        const int stride = 256 * wpr;
        for (int k = (part * 32 + lane) * 8; k < n_in; k += 2 * stride) {
            const int k1 = k + stride;
            uint4 w0 = __ldcs(reinterpret_cast<const uint4 *>(w + k));
            uint4 w1 = k1 < n_in ? __ldcs(reinterpret_cast<const uint4 *>(w + k1)) : make_uint4(0, 0, 0, 0);
            float wf[8], xf[8];
            unpack8<T>(w0, wf);
#pragma unroll
            for (int r = 0; r < M; r++) {
                unpack8<T>(*reinterpret_cast<const uint4 *>(x + (size_t)r * n_in + k), xf);
#pragma unroll
                for (int e = 0; e < 8; e++)
                    acc[r] += wf[e] * xf[e];
            }
            if (k1 < n_in) {
                unpack8<T>(w1, wf);
#pragma unroll
                for (int r = 0; r < M; r++) {
                    unpack8<T>(*reinterpret_cast<const uint4 *>(x + (size_t)r * n_in + k1), xf);
#pragma unroll
                    for (int e = 0; e < 8; e++)
                        acc[r] += wf[e] * xf[e];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < M; r++)
        for (int o = 16; o > 0; o >>= 1)
            acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
    if (lane == 0)
#pragma unroll
        for (int r = 0; r < M; r++)
            red[warp][r] = acc[r];
    __syncthreads();
    if (threadIdx.x < rpb * M) {
        const int lr = threadIdx.x / M, r = threadIdx.x % M, orow = blockIdx.x * rpb + lr;
        if (orow < n_out) {
            float sum = 0.0f;
            for (int p = 0; p < wpr; p++)
                sum += red[lr * wpr + p][r];
            float *yp = y + (size_t)r * n_out + orow;
            *yp = beta == 0.0f ? sum : sum + beta * *yp;
        }
    }
}

template <typename T>
static void gemv_launch(const void *w, const void *x, float *y, int m, int n_out, int n_in,
                        float beta, int n_sm, cudaStream_t st)
{
    int wpr = 1;
    while (wpr < 8 && (int64_t)n_out * wpr / 8 < 4 * (int64_t)n_sm)
        wpr *= 2;
    const int rpb = 8 / wpr, grid = (n_out + rpb - 1) / rpb;
    const T *W = (const T *)w, *X = (const T *)x;
#define GEMV_CASE(MM)                                                                              \
    case MM:                                                                                       \
        gemv_kernel<T, MM><<<grid, 256, 0, st>>>(W, X, y, n_out, n_in, beta, wpr);                \
        break;
    switch (m) {
        GEMV_CASE(1)
        GEMV_CASE(2)
        GEMV_CASE(3)
        GEMV_CASE(4)
        GEMV_CASE(5)
        GEMV_CASE(6)
        GEMV_CASE(7)
        GEMV_CASE(8)
    default:
        break;
    }
#undef GEMV_CASE
}

int ops_gemm(cublasHandle_t h, enum dev_dtype t, const void *w, const void *x, float *y, int m,
             int n_out, int n_in, float beta, int n_sm, cudaStream_t st, char *err,
             size_t err_len)
{
    if (m >= 1 && m <= OPS_GEMV_MAX_M && n_in % 8 == 0 && n_sm > 0) {
        OPS_DISPATCH(t, (gemv_launch<T>(w, x, y, m, n_out, n_in, beta, n_sm, st)));
        return 0;
    }
    /* Row-major y = x W^T is column-major y^T = W^T(col-major view of W) x^T. */
    const float alpha = 1.0f;
    cudaDataType_t ct = dev_dtype_cuda(t);
    cublasStatus_t stt =
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n_out, m, n_in, &alpha, w, ct, n_in, x, ct,
                     n_in, &beta, y, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (stt != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, err_len, "cublasGemmEx (m %d, n_out %d, n_in %d, %s): %s", m, n_out, n_in,
                 dev_dtype_str(t), cublas_status_name(stt));
        return -1;
    }
    return 0;
}
