/* common: CUDA and cuBLAS statuses as messages, and allocations that report their sizes. */
#include "engine/cuda/common.cuh"

#include <stdio.h>

const char *cublas_status_name(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

int cu_ok(cudaError_t e, const char *what, char *err, size_t err_len)
{
    if (e == cudaSuccess)
        return 0;
    snprintf(err, err_len, "%s: %s: %s", what, cudaGetErrorName(e), cudaGetErrorString(e));
    return -1;
}

int cublas_ok(cublasStatus_t s, const char *what, char *err, size_t err_len)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return 0;
    snprintf(err, err_len, "%s: %s", what, cublas_status_name(s));
    return -1;
}

uint64_t cu_used_bytes(void)
{
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess)
        return 0;
    return (uint64_t)(total_b - free_b);
}

static void oom_message(cudaError_t e, const char *kind, size_t bytes, const char *what,
                        char *err, size_t err_len)
{
    size_t free_b = 0, total_b = 0;
    cudaError_t q = cudaMemGetInfo(&free_b, &total_b);
    (void)cudaGetLastError(); /* a failed allocation is not sticky: clear it */
    if (e != cudaErrorMemoryAllocation)
        snprintf(err, err_len, "allocating %zu bytes of %s memory for %s: %s: %s", bytes, kind,
                 what, cudaGetErrorName(e), cudaGetErrorString(e));
    else if (q == cudaSuccess)
        snprintf(err, err_len,
                 "out of %s memory: %s needs %.3f GiB (%zu bytes); the device has %.3f GiB free "
                 "of %.3f GiB (%s)",
                 kind, what, (double)bytes / (1u << 30), bytes, (double)free_b / (1u << 30),
                 (double)total_b / (1u << 30), cudaGetErrorString(e));
    else
        snprintf(err, err_len, "out of %s memory: %s needs %zu bytes (%s)", kind, what, bytes,
                 cudaGetErrorString(e));
}

int cu_alloc(void **p, size_t bytes, const char *what, char *err, size_t err_len)
{
    *p = NULL;
    if (bytes == 0)
        return 0;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e == cudaSuccess)
        return 0;
    *p = NULL;
    oom_message(e, "device", bytes, what, err, err_len);
    return -1;
}

int cu_alloc_host(void **p, size_t bytes, const char *what, char *err, size_t err_len)
{
    *p = NULL;
    if (bytes == 0)
        return 0;
    cudaError_t e = cudaMallocHost(p, bytes);
    if (e == cudaSuccess)
        return 0;
    *p = NULL;
    oom_message(e, "pinned host", bytes, what, err, err_len);
    return -1;
}
