/* attention: paged attention over the KV pool, two kernels and a combine step.
 *  - decode (any token attended on its own, normally single decode tokens): one CTA per (token,
 *    KV head, key range); the CTA serves all query heads of its KV head (GQA: each K/V row is
 *    read once per group), stages chunks of keys in shared memory, keeps an online softmax per
 *    head and accumulates P V in registers (each lane a slice of head_dim). With several key
 *    ranges (flash-decoding) the unnormalised partials go through the combine kernel.
 *  - prefill tiles (runs of consecutive positions of one sequence): one CTA per (tile of
 *    OPS_ATT_TILE_Q queries, query head), keys in chunks through shared memory, causal mask,
 *    online softmax; 4 threads per query row, each a quarter of head_dim.
 * f32 arithmetic throughout (K/V converted from T on load). No tensor cores: see ops.cuh. */
#include "engine/cuda/ops.cuh"

#include <math.h>
#include <stdio.h>

#define FULL_MASK 0xffffffffu

/* Pool row of key position `key` of a sequence (block table bt), KV head kvh. */
template <typename T>
__device__ __forceinline__ const T *pool_row(const T *pool, const int32_t *bt, int key, int bs,
                                             int kv_dim, int kvh, int D)
{
    int blk = bt[key / bs];
    return pool + ((size_t)blk * bs + key % bs) * kv_dim + (size_t)kvh * D;
}

template <int D> struct decode_cfg {
    static constexpr int CH = D <= 128 ? 128 : 64; /* keys per chunk */
    static constexpr int KS = D + 8;               /* shared row stride (elements): 16 B pad */
    static constexpr int DPL = D / 32;             /* head dims per lane in P V */
};

template <typename T, int D> static size_t decode_smem_bytes(void)
{
    typedef decode_cfg<D> C;
    return ((size_t)OPS_MAX_GROUP * D + (size_t)OPS_MAX_GROUP * C::CH + 3 * OPS_MAX_GROUP) *
               sizeof(float) +
           (size_t)C::CH * C::KS * sizeof(T);
}

/* One chunk of keys [c0, c0 + nk) for the decode kernel: K into shared memory, scores for every
 * head of the group, the online-softmax update (mls: m[8], l[8], corr[8]), and P V into acc. */
template <typename T, int D>
__device__ __forceinline__ void decode_chunk(const T *kp, const T *vp, const int32_t *bt, int c0,
                                             int nk, int bs, int kv_dim, int kvh, int G,
                                             float scale, float *qs, float *ps, float *mls,
                                             T *ks, float (&acc)[OPS_MAX_GROUP][D / 32])
{
    typedef decode_cfg<D> C;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    constexpr int VPR = D / 8;
    for (int e = tid; e < nk * VPR; e += blockDim.x) {
        int r = e / VPR, v = e % VPR;
        const T *src = pool_row(kp, bt, c0 + r, bs, kv_dim, kvh, D) + v * 8;
        *reinterpret_cast<uint4 *>(ks + r * C::KS + v * 8) = *reinterpret_cast<const uint4 *>(src);
    }
    __syncthreads();
    if (tid < C::CH) {
        float s[OPS_MAX_GROUP];
#pragma unroll
        for (int g = 0; g < OPS_MAX_GROUP; g++)
            s[g] = 0.0f;
        if (tid < nk) {
            const T *kr = ks + tid * C::KS;
            for (int d = 0; d < D; d += 8) {
                float kf[8];
                unpack8<T>(*reinterpret_cast<const uint4 *>(kr + d), kf);
#pragma unroll
                for (int g = 0; g < OPS_MAX_GROUP; g++) {
                    if (g < G) {
                        const float *qg = qs + g * D + d;
#pragma unroll
                        for (int e = 0; e < 8; e++)
                            s[g] += qg[e] * kf[e];
                    }
                }
            }
        }
        for (int g = 0; g < G; g++)
            ps[g * C::CH + tid] = tid < nk ? s[g] * scale : -INFINITY;
    }
    __syncthreads();
    for (int g = warp; g < G; g += blockDim.x / 32) {
        float mx = -INFINITY;
        for (int t = lane; t < nk; t += 32)
            mx = fmaxf(mx, ps[g * C::CH + t]);
        for (int o = 16; o > 0; o >>= 1)
            mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, o));
        float m_old = mls[g], m_new = fmaxf(m_old, mx), sum = 0.0f;
        for (int t = lane; t < nk; t += 32) {
            float p = expf(ps[g * C::CH + t] - m_new);
            ps[g * C::CH + t] = p;
            sum += p;
        }
        for (int o = 16; o > 0; o >>= 1)
            sum += __shfl_xor_sync(FULL_MASK, sum, o);
        __syncwarp();
        if (lane == 0) {
            float corr = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
            mls[2 * OPS_MAX_GROUP + g] = corr;
            mls[OPS_MAX_GROUP + g] = mls[OPS_MAX_GROUP + g] * corr + sum;
            mls[g] = m_new;
        }
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < OPS_MAX_GROUP; g++) {
        if (g < G) {
            float corr = mls[2 * OPS_MAX_GROUP + g];
#pragma unroll
            for (int i = 0; i < C::DPL; i++)
                acc[g][i] *= corr;
        }
    }
    for (int t = warp; t < nk; t += blockDim.x / 32) {
        const T *vr = pool_row(vp, bt, c0 + t, bs, kv_dim, kvh, D) + lane * C::DPL;
        float vf[C::DPL];
#pragma unroll
        for (int i = 0; i < C::DPL; i++)
            vf[i] = to_f32(vr[i]);
#pragma unroll
        for (int g = 0; g < OPS_MAX_GROUP; g++) {
            if (g < G) {
                float p = ps[g * C::CH + t];
#pragma unroll
                for (int i = 0; i < C::DPL; i++)
                    acc[g][i] += p * vf[i];
            }
        }
    }
    __syncthreads(); /* the next chunk overwrites ks and ps */
}

template <typename T, int D>
__global__ void __launch_bounds__(128)
    attn_decode_kernel(const T *q, const T *kp, const T *vp, struct ops_step b, int n_head,
                       int G, int kv_dim, int bs, float scale, T *out, float *part_o,
                       float *part_ml)
{
    typedef decode_cfg<D> C;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float *qs = reinterpret_cast<float *>(smem_raw); /* [G][D] */
    float *ps = qs + OPS_MAX_GROUP * D;                /* [G][CH] */
    float *mls = ps + OPS_MAX_GROUP * C::CH;           /* m, l, corr: [3][8] */
    T *ks = reinterpret_cast<T *>(mls + 3 * OPS_MAX_GROUP);
    const int ti = b.short_tok[blockIdx.x], kvh = blockIdx.y, split = blockIdx.z;
    const int ns = gridDim.z, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int q_dim = n_head * D, ctx = b.ctx_len[ti];
    int per = (ctx + ns - 1) / ns;
    per = (per + 15) & ~15;
    const int k_lo = split * per, k_hi = min(ctx, k_lo + per);
    const int32_t *bt = b.bt + (size_t)b.tok_row[ti] * b.bt_stride;

    for (int e = tid; e < G * D; e += blockDim.x)
        qs[e] = to_f32(q[(size_t)ti * q_dim + (size_t)kvh * G * D + e]);
    if (tid < OPS_MAX_GROUP) {
        mls[tid] = -INFINITY;
        mls[OPS_MAX_GROUP + tid] = 0.0f;
    }
    float acc[OPS_MAX_GROUP][C::DPL];
#pragma unroll
    for (int g = 0; g < OPS_MAX_GROUP; g++)
#pragma unroll
        for (int i = 0; i < C::DPL; i++)
            acc[g][i] = 0.0f;
    __syncthreads();
    for (int c0 = k_lo; c0 < k_hi; c0 += C::CH)
        decode_chunk<T, D>(kp, vp, bt, c0, min(C::CH, k_hi - c0), bs, kv_dim, kvh, G, scale, qs,
                           ps, mls, ks, acc);

    float *red = reinterpret_cast<float *>(ks); /* [warps][G][D] */
#pragma unroll
    for (int g = 0; g < OPS_MAX_GROUP; g++)
        if (g < G)
#pragma unroll
            for (int i = 0; i < C::DPL; i++)
                red[(warp * G + g) * D + lane * C::DPL + i] = acc[g][i];
    __syncthreads();
    const int nw = blockDim.x / 32;
    for (int e = tid; e < G * D; e += blockDim.x) {
        int g = e / D, dd = e % D, h = kvh * G + g;
        float o = 0.0f;
        for (int w = 0; w < nw; w++)
            o += red[(w * G + g) * D + dd];
        if (ns == 1) {
            float l = mls[OPS_MAX_GROUP + g];
            out[(size_t)ti * q_dim + (size_t)h * D + dd] = from_f32<T>(l > 0.0f ? o / l : 0.0f);
        } else {
            size_t pr = ((size_t)blockIdx.x * ns + split) * n_head + h;
            part_o[pr * D + dd] = o;
            if (dd == 0) {
                part_ml[pr * 2] = mls[g];
                part_ml[pr * 2 + 1] = mls[OPS_MAX_GROUP + g];
            }
        }
    }
}

/* Merges the key ranges of the decode kernel: one CTA per (token, head), one thread per dim. */
template <typename T>
__global__ void attn_combine_kernel(const float *part_o, const float *part_ml, struct ops_step b,
                                    int n_head, int D, T *out)
{
    const int r = blockIdx.x, h = blockIdx.y, d = threadIdx.x, ns = b.n_split;
    const int ti = b.short_tok[r];
    float M = -INFINITY;
    for (int s = 0; s < ns; s++) {
        size_t pr = ((size_t)r * ns + s) * n_head + h;
        if (part_ml[pr * 2 + 1] > 0.0f)
            M = fmaxf(M, part_ml[pr * 2]);
    }
    float L = 0.0f, o = 0.0f;
    for (int s = 0; s < ns; s++) {
        size_t pr = ((size_t)r * ns + s) * n_head + h;
        float l = part_ml[pr * 2 + 1];
        if (l > 0.0f) {
            float w = expf(part_ml[pr * 2] - M);
            L += l * w;
            o += part_o[pr * D + d] * w;
        }
    }
    out[(size_t)ti * n_head * D + (size_t)h * D + d] = from_f32<T>(L > 0.0f ? o / L : 0.0f);
}

template <int D> struct prefill_cfg {
    static constexpr int BK = D <= 128 ? 64 : 32; /* keys per shared-memory chunk */
    static constexpr int KS = D + 8;
    static constexpr int DP = D / 4;  /* dims per thread */
    static constexpr int NC = DP / 8; /* 16-byte pieces per thread, interleaved across the 4 */
};

/* Scores of 16 keys [j0, j0+16) of the staged chunk for this thread's row, masked. */
template <typename T, int D>
__device__ __forceinline__ void prefill_scores(const T *ks, const float *qv, int j0, int nk,
                                               int key0, int pos_r, int part, float *s)
{
    typedef prefill_cfg<D> C;
#pragma unroll
    for (int jj = 0; jj < 16; jj++) {
        int j = j0 + jj;
        float acc = 0.0f;
        if (j < nk) {
            const T *kr = ks + j * C::KS;
#pragma unroll
            for (int c = 0; c < C::NC; c++) {
                float kf[8];
                unpack8<T>(*reinterpret_cast<const uint4 *>(kr + (c * 4 + part) * 8), kf);
#pragma unroll
                for (int e = 0; e < 8; e++)
                    acc += qv[c * 8 + e] * kf[e];
            }
        }
        acc += __shfl_xor_sync(FULL_MASK, acc, 1);
        acc += __shfl_xor_sync(FULL_MASK, acc, 2);
        s[jj] = (j < nk && key0 + j <= pos_r) ? acc : -INFINITY;
    }
}

template <typename T, int D>
__global__ void __launch_bounds__(128)
    attn_prefill_kernel(const T *q, const T *kp, const T *vp, struct ops_step b, int n_head,
                        int G, int kv_dim, int bs, float scale, T *out)
{
    typedef prefill_cfg<D> C;
    __shared__ __align__(16) T ks[C::BK * C::KS];
    __shared__ __align__(16) T vs[C::BK * C::KS];
    const int h = blockIdx.y, kvh = h / G, tid = threadIdx.x;
    const int i0 = b.tile_i0[blockIdx.x], nq = b.tile_n[blockIdx.x];
    const int r = tid >> 2, part = tid & 3, q_dim = n_head * D;
    const int ti = i0 + min(r, nq - 1);
    const int pos_r = b.pos[ti], p_last = b.pos[i0 + nq - 1];
    const int32_t *bt = b.bt + (size_t)b.tok_row[i0] * b.bt_stride;
    float qv[C::DP], o[C::DP];
#pragma unroll
    for (int c = 0; c < C::NC; c++)
#pragma unroll
        for (int e = 0; e < 8; e++) {
            int d = (c * 4 + part) * 8 + e;
            qv[c * 8 + e] = to_f32(q[(size_t)ti * q_dim + (size_t)h * D + d]) * scale;
            o[c * 8 + e] = 0.0f;
        }
    float m = -INFINITY, l = 0.0f;
    constexpr int VPR = D / 8;
    for (int k0 = 0; k0 <= p_last; k0 += C::BK) {
        const int nk = min(C::BK, p_last + 1 - k0);
        __syncthreads();
        for (int e = tid; e < nk * VPR; e += blockDim.x) {
            int rr = e / VPR, v = e % VPR;
            const T *ksrc = pool_row(kp, bt, k0 + rr, bs, kv_dim, kvh, D) + v * 8;
            const T *vsrc = pool_row(vp, bt, k0 + rr, bs, kv_dim, kvh, D) + v * 8;
            *reinterpret_cast<uint4 *>(ks + rr * C::KS + v * 8) =
                *reinterpret_cast<const uint4 *>(ksrc);
            *reinterpret_cast<uint4 *>(vs + rr * C::KS + v * 8) =
                *reinterpret_cast<const uint4 *>(vsrc);
        }
        __syncthreads();
        for (int j0 = 0; j0 < nk; j0 += 16) {
            float s[16];
            prefill_scores<T, D>(ks, qv, j0, nk, k0, pos_r, part, s);
            float mx = -INFINITY;
#pragma unroll
            for (int jj = 0; jj < 16; jj++)
                mx = fmaxf(mx, s[jj]);
            float m_new = fmaxf(m, mx);
            if (m_new == -INFINITY)
                continue;
            float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
            l *= corr;
#pragma unroll
            for (int i = 0; i < C::DP; i++)
                o[i] *= corr;
#pragma unroll
            for (int jj = 0; jj < 16; jj++) {
                float p = s[jj] == -INFINITY ? 0.0f : expf(s[jj] - m_new);
                if (p == 0.0f)
                    continue;
                l += p;
                const T *vr = vs + (j0 + jj) * C::KS;
#pragma unroll
                for (int c = 0; c < C::NC; c++) {
                    float vf[8];
                    unpack8<T>(*reinterpret_cast<const uint4 *>(vr + (c * 4 + part) * 8), vf);
#pragma unroll
                    for (int e = 0; e < 8; e++)
                        o[c * 8 + e] += p * vf[e];
                }
            }
            m = m_new;
        }
    }
    if (r < nq) {
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
        for (int c = 0; c < C::NC; c++)
#pragma unroll
            for (int e = 0; e < 8; e++) {
                int d = (c * 4 + part) * 8 + e;
                out[(size_t)ti * q_dim + (size_t)h * D + d] = from_f32<T>(o[c * 8 + e] * inv);
            }
    }
}

int ops_supported(int head_dim, int n_head, int n_head_kv, char *err, size_t err_len)
{
    if (head_dim != 64 && head_dim != 96 && head_dim != 128 && head_dim != 256) {
        snprintf(err, err_len, "the CUDA attention kernels support head_dim 64, 96, 128, 256 "
                 "(this model: %d)", head_dim);
        return -1;
    }
    if (n_head_kv < 1 || n_head % n_head_kv != 0 || n_head / n_head_kv > OPS_MAX_GROUP) {
        snprintf(err, err_len, "the CUDA attention kernels support up to %d query heads per KV "
                 "head (this model: %d heads, %d KV heads)", OPS_MAX_GROUP, n_head, n_head_kv);
        return -1;
    }
    return 0;
}

template <typename T, int D>
static void attention_launch(const struct ops_shape *s, const struct ops_step *b, const void *q,
                             const void *kp, const void *vp, void *out, float *part_o,
                             float *part_ml, cudaStream_t st)
{
    const int G = s->n_head / s->n_head_kv;
    const float scale = 1.0f / sqrtf((float)D);
    if (b->n_tiles > 0) {
        dim3 grid(b->n_tiles, s->n_head);
        attn_prefill_kernel<T, D><<<grid, 128, 0, st>>>((const T *)q, (const T *)kp,
                                                        (const T *)vp, *b, s->n_head, G,
                                                        s->kv_dim, s->block_size, scale,
                                                        (T *)out);
    }
    if (b->n_short > 0) {
        dim3 grid(b->n_short, s->n_head_kv, b->n_split);
        attn_decode_kernel<T, D><<<grid, 128, decode_smem_bytes<T, D>(), st>>>(
            (const T *)q, (const T *)kp, (const T *)vp, *b, s->n_head, G, s->kv_dim,
            s->block_size, scale, (T *)out, part_o, part_ml);
        if (b->n_split > 1)
            attn_combine_kernel<T><<<dim3(b->n_short, s->n_head), D, 0, st>>>(
                part_o, part_ml, *b, s->n_head, D, (T *)out);
    }
}

void ops_attention(const struct ops_shape *s, const struct ops_step *b, const void *q,
                   const void *k_pool, const void *v_pool, void *out, float *part_o,
                   float *part_ml, cudaStream_t st)
{
#define ATT_CASE(DD)                                                                               \
    case DD:                                                                                       \
        OPS_DISPATCH(s->dtype, (attention_launch<T, DD>(s, b, q, k_pool, v_pool, out, part_o,    \
                                                         part_ml, st)));                          \
        break;
    switch (s->head_dim) {
        ATT_CASE(64)
        ATT_CASE(96)
        ATT_CASE(128)
        ATT_CASE(256)
    default:
        break;
    }
#undef ATT_CASE
}
