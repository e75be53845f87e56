/* common: what every file of the CUDA backend shares: the 16-bit compute type, error reporting
 * (every CUDA and cuBLAS status turned into a message in the caller's err buffer, never an abort)
 * and device allocation that names the sizes when it fails. No kernels here (ops.cuh). */
#ifndef SLM_CUDA_COMMON_CUH
#define SLM_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

/* The model's 16-bit compute type on the device: weights, activations fed to the matrix
 * products, and the KV pool. */
enum dev_dtype { DEV_DTYPE_BF16 = 0, DEV_DTYPE_F16 };

static inline cudaDataType_t dev_dtype_cuda(enum dev_dtype t)
{
    return t == DEV_DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
}
static inline const char *dev_dtype_str(enum dev_dtype t)
{
    return t == DEV_DTYPE_F16 ? "f16" : "bf16";
}

/* T <-> f32 in device code, for T = __nv_bfloat16 or __half. */
template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v)
{
    return __bfloat162float(v);
}
template <> __device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half from_f32<__half>(float v)
{
    return __float2half_rn(v);
}

/* 8 values of T packed in 16 bytes -> f32. */
template <typename T> __device__ __forceinline__ void unpack8(uint4 raw, float *f);
template <> __device__ __forceinline__ void unpack8<__nv_bfloat16>(uint4 raw, float *f)
{
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
template <> __device__ __forceinline__ void unpack8<__half>(uint4 raw, float *f)
{
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        __half2 h = *reinterpret_cast<const __half2 *>(&w[i]);
        float2 v = __half22float2(h);
        f[2 * i] = v.x;
        f[2 * i + 1] = v.y;
    }
}

/* Dispatches a templated launch on the shape's type. */
#define OPS_DISPATCH(dtype, KERNEL_CALL)                                                           \
    do {                                                                                           \
        if ((dtype) == DEV_DTYPE_F16) {                                                            \
            typedef __half T;                                                                      \
            KERNEL_CALL;                                                                           \
        } else {                                                                                   \
            typedef __nv_bfloat16 T;                                                               \
            KERNEL_CALL;                                                                           \
        }                                                                                          \
    } while (0)

/* 0 when e is cudaSuccess; else -1 with "what: <name>: <description>" in err. */
int cu_ok(cudaError_t e, const char *what, char *err, size_t err_len);
/* The same for cuBLAS ("CUBLAS_STATUS_ALLOC_FAILED", ...). */
int cublas_ok(cublasStatus_t s, const char *what, char *err, size_t err_len);
const char *cublas_status_name(cublasStatus_t s);

/* cudaMalloc of bytes into *p. On failure -1 with what, the bytes asked for and the device's
 * free/total memory in err (*p NULL). bytes == 0 allocates nothing and succeeds. */
int cu_alloc(void **p, size_t bytes, const char *what, char *err, size_t err_len);
/* The same for pinned host memory (cudaMallocHost). */
int cu_alloc_host(void **p, size_t bytes, const char *what, char *err, size_t err_len);

/* Device bytes in use now (total - free, cudaMemGetInfo); 0 if the query fails. */
uint64_t cu_used_bytes(void);

#endif
