/* test_sizing: the start-up sizing arithmetic of the CUDA path (sizing.h), on the CPU: vLLM's
 * free-memory check and its wording, the KV budget formula (what is subtracted from
 * gpu_memory_utilization x total), blocks per budget with the "no memory" and max-model-len
 * errors (and the estimated maximum length), and the CUDA graph capture sizes. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "engine/sizing.h"
#include "test.h"

#define GIB (1024.0 * 1024.0 * 1024.0)
#define MIB (1024ull * 1024ull)

static char g_err[1024];

/* An H200 as cudaMemGetInfo reports it: 139.8 GiB (143,771 MiB). */
static const uint64_t H200_TOTAL = 143771ull * MIB;

static void test_free_check(void)
{
    /* 0.5 GiB in use (our CUDA context): 0.9 x total is free */
    CHECK_EQ_INT(sizing_check_free(H200_TOTAL, H200_TOTAL - 512 * MIB, 0.9, g_err, sizeof g_err),
                 0);
    /* another process holds 40 GiB: 100.4 GiB free < 0.9 x 140.4 */
    uint64_t free_b = H200_TOTAL - 40ull * 1024 * MIB;
    CHECK_EQ_INT(sizing_check_free(H200_TOTAL, free_b, 0.9, g_err, sizeof g_err), -1);
    char want[512];
    snprintf(want, sizeof want,
             "Free memory on device (%.2f/%.2f GiB) on startup is less than desired GPU memory "
             "utilization (0.9, %.2f GiB). Decrease GPU memory utilization or reduce GPU memory "
             "used by other processes.",
             (double)free_b / GIB, (double)H200_TOTAL / GIB, 0.9 * (double)H200_TOTAL / GIB);
    CHECK_EQ_STR(g_err, want);
    CHECK(strstr(g_err, "(100.40/140.40 GiB)") != NULL);
    CHECK(strstr(g_err, "(0.9, 126.36 GiB)") != NULL);
    /* exactly util x total free passes; one byte less fails */
    CHECK_EQ_INT(sizing_check_free(1000, 500, 0.5, g_err, sizeof g_err), 0);
    CHECK_EQ_INT(sizing_check_free(1000, 499, 0.5, g_err, sizeof g_err), -1);
    CHECK(strstr(g_err, "utilization (0.5, ") != NULL);
}

static void test_budget_formula(void)
{
    struct sizing_dev d = {
        .total_bytes = 100ull << 30,
        .used_at_start_bytes = 1ull << 30,
        .weight_bytes = 3ull << 30,
        .load_other_bytes = 256 * MIB,
        .activation_peak_bytes = 768 * MIB,
        .gpu_memory_utilization = 0.9,
    };
    /* 90 - 1 - 3 - 0.25 - 0.75 = 85 GiB */
    CHECK_NEAR(sizing_dev_kv_budget(&d) / GIB, 85.0, 1e-9);
    d.gpu_memory_utilization = 0.05; /* 5 GiB: nothing left, negative */
    CHECK_NEAR(sizing_dev_kv_budget(&d) / GIB, 0.0, 1e-9);
    d.gpu_memory_utilization = 0.04;
    CHECK(sizing_dev_kv_budget(&d) < 0);
    d.kv_cache_memory_bytes = 123456789; /* vLLM: the explicit size wins, util ignored */
    CHECK_NEAR(sizing_dev_kv_budget(&d), 123456789.0, 0);
}

/* qwen2.5-1.5b: 28 layers x 2 KV heads x 128 x 2 (K, V) x 2 bytes = 28 KiB per token. */
static void test_blocks_qwen(void)
{
    const uint64_t per_token = 2ull * 28 * 2 * 128 * 2, page = per_token * 16;
    CHECK_EQ_INT(per_token, 28672);
    int n = 0;
    double budget = 100.0 * GIB;
    CHECK_EQ_INT(sizing_kv_blocks(budget, page, 16, 32768, NULL, &n, g_err, sizeof g_err), 0);
    CHECK_EQ_INT(n, (int)((uint64_t)budget / page)); /* 234,057 blocks: 3,744,912 tokens */
    CHECK_EQ_INT((uint64_t)n * 16, 3744912);
    /* an exact fit of one max_model_len sequence passes */
    CHECK_EQ_INT(sizing_kv_blocks((double)(page * 4), page, 16, 64, NULL, &n, g_err,
                                  sizeof g_err), 0);
    CHECK_EQ_INT(n, 4);
}

static void test_blocks_errors(void)
{
    int n = -7;
    CHECK_EQ_INT(sizing_kv_blocks(-1.5 * GIB, 1024, 16, 64, "2.00 GiB x 0.90", &n, g_err,
                                  sizeof g_err), -1);
    CHECK_EQ_STR(g_err, "No available memory for the cache blocks. Try increasing "
                        "`gpu_memory_utilization` when initializing the engine. (2.00 GiB x 0.90)");
    CHECK_EQ_INT(n, -7); /* untouched */
    CHECK_EQ_INT(sizing_kv_blocks(0, 1024, 16, 64, NULL, &n, g_err, sizeof g_err), -1);
    CHECK(strstr(g_err, "engine.") && !strstr(g_err, "("));
    /* 10 blocks of 16 tokens, max_model_len 4096 needs 256: the estimate is 160 tokens */
    CHECK_EQ_INT(sizing_kv_blocks(10.5 * 1024, 1024, 16, 4096, NULL, &n, g_err, sizeof g_err),
                 -1);
    CHECK(strstr(g_err, "To serve at least one request with the model's max seq len (4096), "
                        "(0.00 GiB KV cache is needed, which is larger than the available KV "
                        "cache memory (0.00 GiB). Based on the available memory, the estimated "
                        "maximum model length is 160. Try increasing `gpu_memory_utilization` "
                        "or decreasing `max_model_len`") == g_err);
    CHECK(strstr(g_err, "(needed 262144 bytes, available 10752 bytes)") != NULL);
}

static void test_graph_sizes(void)
{
    int s[SIZING_GRAPH_MAX];
    int n = sizing_graph_sizes(256, s, SIZING_GRAPH_MAX);
    /* 1, 2, 4, 8..248 step 8 (31), 256 */
    CHECK_EQ_INT(n, 35);
    CHECK_EQ_INT(s[0], 1);
    CHECK_EQ_INT(s[1], 2);
    CHECK_EQ_INT(s[2], 4);
    CHECK_EQ_INT(s[3], 8);
    CHECK_EQ_INT(s[4], 16);
    CHECK_EQ_INT(s[5], 24);
    CHECK_EQ_INT(s[33], 248);
    CHECK_EQ_INT(s[34], 256);
    n = sizing_graph_sizes(100000, s, SIZING_GRAPH_MAX); /* capped at 512: ... 256, 272, ... 512 */
    CHECK_EQ_INT(n, 35 + 16);
    CHECK_EQ_INT(s[35], 272);
    CHECK_EQ_INT(s[n - 1], 512);
    for (int i = 1; i < n; i++)
        CHECK(s[i] > s[i - 1]);
    n = sizing_graph_sizes(20, s, SIZING_GRAPH_MAX); /* 1 2 4 8 16: 20 itself is not a size */
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_INT(s[4], 16);
    CHECK_EQ_INT(sizing_graph_sizes(1, s, SIZING_GRAPH_MAX), 1);
    CHECK_EQ_INT(sizing_graph_sizes(0, s, SIZING_GRAPH_MAX), 0);
    CHECK_EQ_INT(sizing_graph_sizes(256, s, 3), 3); /* out_cap respected */
}

int main(void)
{
    TEST_RUN(test_free_check);
    TEST_RUN(test_budget_formula);
    TEST_RUN(test_blocks_qwen);
    TEST_RUN(test_blocks_errors);
    TEST_RUN(test_graph_sizes);
    return TEST_DONE();
}
