/* test_knee: SLO parsing/checking and the sweep analysis on synthetic curves with known knees:
 * a classic batching curve, a latency-driven knee, flat and never-flattening curves, noisy
 * curves, a single level, errors-only levels, unsorted input, SLO limits and the rules text. */
#include <stdlib.h>

#include "measure/knee.h"
#include "test.h"

static const double loads6[6] = {1, 2, 4, 8, 16, 32};

/* Levels from arrays; p95 TTFT/TPOT derived so the TTFT rule has data; no SLO, no queue data. */
static void make_levels(struct knee_level *lv, size_t n, const double *load, const double *tok_s,
                        const double *e2e_s)
{
    for (size_t i = 0; i < n; i++) {
        lv[i] = (struct knee_level){.load = load[i],
                                    .tok_s = tok_s[i],
                                    .qps = tok_s[i] / 64,
                                    .p95_e2e_s = e2e_s[i],
                                    .p95_ttft_ms = 20 * e2e_s[i] * e2e_s[i],
                                    .p95_tpot_ms = 10 * e2e_s[i],
                                    .goodput_frac = NAN,
                                    .goodput_rps = NAN,
                                    .waiting_mean = NAN,
                                    .waiting_max = NAN,
                                    .n_ok = 32,
                                    .n_err = 0};
    }
}

static int has_rule(const struct knee_rules *r, const char *needle)
{
    for (int i = 0; i < r->n; i++)
        if (strstr(r->text[i], needle))
            return 1;
    return 0;
}

static void dump_rules(const struct knee_result *kr, const struct knee_rules *r)
{
    fprintf(stderr, "    summary: %s\n", kr->summary);
    for (int i = 0; i < r->n; i++)
        fprintf(stderr, "    rule %d: %s\n", i + 1, r->text[i]);
}

/* The H200 day's two levels (concurrency 1 and 64): still scaling (+35% per doubling, above
 * twice the threshold) although p95 e2e grew more than throughput, and the added latency is
 * mostly decoding (TPOT x 64 tokens), though TTFT grew by the larger factor. */
static void test_two_levels_latency_words(void)
{
    struct knee_level lv[2] = {
        {.load = 1, .tok_s = 466.9, .qps = 7.3, .p95_e2e_s = 0.138, .p95_ttft_ms = 4.7,
         .p95_tpot_ms = 2.13, .goodput_frac = NAN, .goodput_rps = NAN, .waiting_mean = 0,
         .waiting_max = 0, .n_ok = 8},
        {.load = 64, .tok_s = 2840.3, .qps = 44.4, .p95_e2e_s = 1.452, .p95_ttft_ms = 56.4,
         .p95_tpot_ms = 22.65, .goodput_frac = NAN, .goodput_rps = NAN, .waiting_mean = 0.07,
         .waiting_max = 1, .n_ok = 128},
    };
    struct knee_config kc;
    knee_config_defaults(&kc);
    struct knee_result kr;
    knee_analyze(lv, 2, &kc, &kr);
    CHECK_EQ_INT(kr.reason, KNEE_REASON_NOT_REACHED);
    CHECK_MSG(strstr(kr.summary, "p95 e2e grew more than throughput (10.52x against 6.08x)") !=
                  NULL, "%s", kr.summary);
    CHECK(strstr(kr.summary, "grew less than throughput") == NULL);
    struct knee_rules r;
    knee_rules_make(lv, 2, &kc, &kr, &r);
    CHECK(has_rule(&r, "slower decoding of each token drives most of the added latency"));
    if (!has_rule(&r, "slower decoding"))
        dump_rules(&kr, &r);
}

static void test_classic_knee(void)
{
    double T[6] = {100, 195, 380, 720, 760, 770};
    double L[6] = {1.00, 1.02, 1.05, 1.10, 2.10, 4.10};
    struct knee_level lv[6];
    make_levels(lv, 6, loads6, T, L);
    struct knee_config kc;
    knee_config_defaults(&kc);
    struct knee_result kr;
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.n_usable, 6);
    CHECK_EQ_INT(kr.i_knee, 3);
    CHECK_EQ_INT(kr.knee_reached, 1);
    CHECK_EQ_INT(kr.reason, KNEE_REASON_THROUGHPUT_FLAT);
    CHECK_EQ_INT(kr.i_next, 4);
    CHECK_NEAR(kr.gain_per_doubling, 760.0 / 720.0 - 1.0, 1e-9);
    CHECK_NEAR(kr.e2e_ratio, 2.1 / 1.1, 1e-9);
    CHECK_EQ_INT(kr.i_peak, 5);
    CHECK_EQ_INT(kr.i_sweet, 3); /* 720/1.1 is the best tok/s per second of p95 */
    CHECK_EQ_INT(kr.i_slo_max, -1);
    CHECK(strstr(kr.summary, "Knee at concurrency 8") != NULL);
    struct knee_rules r;
    knee_rules_make(lv, 6, &kc, &kr, &r);
    dump_rules(&kr, &r);
    CHECK(r.n >= 3 && r.n <= KNEE_MAX_RULES);
    CHECK(has_rule(&r, "From concurrency 1 to 8, throughput rose 7.2x (100 -> 720 tok/s)"));
    CHECK(has_rule(&r, "Beyond concurrency 8, p95 e2e grows 3.7x"));
    CHECK(has_rule(&r, "+6.9% throughput") || has_rule(&r, "+7% throughput"));
    CHECK(has_rule(&r, "Peak throughput was 770 tok/s at concurrency 32"));
    CHECK(has_rule(&r, "94% of it"));
    /* The same analysis with another knee gives other sentences (computed, not typed in). */
    double T2[6] = {100, 190, 360, 380, 385, 390};
    double L2[6] = {1.0, 1.05, 1.1, 2.0, 4.0, 8.0};
    make_levels(lv, 6, loads6, T2, L2);
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.i_knee, 2);
    knee_rules_make(lv, 6, &kc, &kr, &r);
    CHECK(has_rule(&r, "Beyond concurrency 4, p95 e2e grows 7.3x"));
    CHECK(!has_rule(&r, "Beyond concurrency 8"));
}

static void test_latency_knee(void)
{
    /* Throughput still creeps up after 8 (+14% per doubling, under 2 x threshold) while p95 e2e
     * nearly doubles: the latency rule ends scaling at 8. */
    double T[6] = {100, 195, 380, 700, 800, 900};
    double L[6] = {1.0, 1.0, 1.05, 1.10, 2.00, 3.90};
    struct knee_level lv[6];
    make_levels(lv, 6, loads6, T, L);
    struct knee_config kc;
    knee_config_defaults(&kc);
    struct knee_result kr;
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.i_knee, 3);
    CHECK_EQ_INT(kr.reason, KNEE_REASON_LATENCY);
    CHECK(strstr(kr.summary, "latency outgrows throughput") != NULL);
    /* Strong gains (>= 2 x threshold) keep scaling even when latency grows faster. */
    double x5[5] = {1, 2, 4, 8, 16};
    double T5[5] = {100, 190, 300, 420, 500};
    double L5[5] = {1.0, 1.05, 1.40, 2.00, 3.20};
    make_levels(lv, 5, x5, T5, L5);
    knee_analyze(lv, 5, &kc, &kr);
    CHECK_EQ_INT(kr.i_knee, 3); /* 4 -> 8 still +40%; 8 -> 16 +19% with p95 e2e x1.6 */
    CHECK_EQ_INT(kr.reason, KNEE_REASON_LATENCY);
    /* A stricter threshold moves the knee to where throughput gains fall below it. */
    kc.threshold = 0.5;
    knee_analyze(lv, 5, &kc, &kr);
    CHECK_EQ_INT(kr.i_knee, 2); /* 2 -> 4: +58% >= 50%; 4 -> 8: +40% < 50% */
    CHECK_EQ_INT(kr.reason, KNEE_REASON_THROUGHPUT_FLAT);
}

static void test_dip_at_two(void)
{
    /* Measured on the embedded runtime (tiny preset, ASan, --max-num-seqs 8): batch 2 runs no
     * faster per row than batch 1, so 1 -> 2 is flat and latency doubles, but throughput scales
     * again up to 8. The knee is 8, not 1. */
    double T[6] = {800.8, 839.0, 1172.0, 1833.5, 1866.1, 1892.4};
    double L[6] = {0.040, 0.077, 0.110, 0.145, 0.287, 0.581};
    struct knee_level lv[6];
    make_levels(lv, 6, loads6, T, L);
    struct knee_config kc;
    knee_config_defaults(&kc);
    struct knee_result kr;
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.i_knee, 3);
    CHECK_EQ_INT(kr.reason, KNEE_REASON_THROUGHPUT_FLAT);
}

static void test_flat_curve(void)
{
    double T[6] = {300, 305, 302, 306, 304, 303};
    double L[6] = {0.5, 1.0, 2.0, 4.0, 8.0, 16.0};
    struct knee_level lv[6];
    make_levels(lv, 6, loads6, T, L);
    struct knee_config kc;
    knee_config_defaults(&kc);
    struct knee_result kr;
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.i_knee, 0);
    CHECK_EQ_INT(kr.knee_reached, 1);
    CHECK_EQ_INT(kr.reason, KNEE_REASON_THROUGHPUT_FLAT);
    struct knee_rules r;
    knee_rules_make(lv, 6, &kc, &kr, &r);
    dump_rules(&kr, &r);
    CHECK(r.n >= 3);
    CHECK(has_rule(&r, "Beyond concurrency 1, p95 e2e grows 32.0x"));
    CHECK(!has_rule(&r, "From concurrency 1 to"));
}

static void test_not_reached(void)
{
    double T[6] = {100, 200, 398, 790, 1570, 3100};
    double L[6] = {1.0, 1.0, 1.01, 1.02, 1.03, 1.05};
    struct knee_level lv[6];
    make_levels(lv, 6, loads6, T, L);
    struct knee_config kc;
    knee_config_defaults(&kc);
    struct knee_result kr;
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.knee_reached, 0);
    CHECK_EQ_INT(kr.reason, KNEE_REASON_NOT_REACHED);
    CHECK_EQ_INT(kr.i_knee, 5);
    CHECK_EQ_INT(kr.i_next, -1);
    CHECK(strstr(kr.summary, "No knee within the sweep") != NULL);
    struct knee_rules r;
    knee_rules_make(lv, 6, &kc, &kr, &r);
    dump_rules(&kr, &r);
    CHECK(has_rule(&r, "the knee lies beyond this sweep"));
    CHECK(r.n >= 3);
}

static void test_noisy_dip(void)
{
    /* A dip at 4 (noise) must not be taken for the knee: 2 -> 8 still doubles per doubling. */
    double T[6] = {100, 190, 170, 700, 740, 745};
    double L[6] = {1.0, 1.0, 1.1, 1.15, 2.2, 4.3};
    struct knee_level lv[6];
    make_levels(lv, 6, loads6, T, L);
    struct knee_config kc;
    knee_config_defaults(&kc);
    struct knee_result kr;
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.i_knee, 3);
}

static void test_noisy_curves(void)
{
    /* 200 noisy copies (+-2% throughput, +-5% latency) of a curve whose knee is at 8. */
    unsigned seed = 12345;
    int n_at_8 = 0;
    for (int t = 0; t < 200; t++) {
        double base_T[6] = {100, 195, 380, 720, 750, 760};
        double base_L[6] = {1.0, 1.02, 1.05, 1.10, 2.10, 4.10};
        double T[6], L[6];
        for (int i = 0; i < 6; i++) {
            seed = seed * 1103515245u + 12345u;
            double u1 = ((seed >> 8) & 0xffff) / 65535.0 * 2 - 1;
            seed = seed * 1103515245u + 12345u;
            double u2 = ((seed >> 8) & 0xffff) / 65535.0 * 2 - 1;
            T[i] = base_T[i] * (1 + 0.02 * u1);
            L[i] = base_L[i] * (1 + 0.05 * u2);
        }
        struct knee_level lv[6];
        make_levels(lv, 6, loads6, T, L);
        struct knee_config kc;
        knee_config_defaults(&kc);
        struct knee_result kr;
        knee_analyze(lv, 6, &kc, &kr);
        n_at_8 += kr.i_knee == 3;
    }
    CHECK_EQ_INT(n_at_8, 200);
}

static void test_single_level(void)
{
    double x[1] = {4}, T[1] = {250}, L[1] = {0.8};
    struct knee_level lv[1];
    make_levels(lv, 1, x, T, L);
    struct knee_config kc;
    knee_config_defaults(&kc);
    struct knee_result kr;
    knee_analyze(lv, 1, &kc, &kr);
    CHECK_EQ_INT(kr.i_knee, 0);
    CHECK_EQ_INT(kr.reason, KNEE_REASON_SINGLE);
    CHECK_EQ_INT(kr.knee_reached, 0);
    CHECK_EQ_INT(kr.i_peak, 0);
    struct knee_rules r;
    knee_rules_make(lv, 1, &kc, &kr, &r);
    CHECK_EQ_INT(r.n, 1);
    CHECK(has_rule(&r, "Only concurrency 4 gave usable numbers (250 tok/s, p95 e2e 800 ms)"));
    /* No levels at all. */
    knee_analyze(lv, 0, &kc, &kr);
    CHECK_EQ_INT(kr.i_knee, -1);
    CHECK_EQ_INT(kr.reason, KNEE_REASON_NONE);
    knee_rules_make(lv, 0, &kc, &kr, &r);
    CHECK_EQ_INT(r.n, 0);
}

static void test_errors_only_levels(void)
{
    double T[6] = {100, 195, 380, 720, 0, 0};
    double L[6] = {1.0, 1.02, 1.05, 1.10, NAN, NAN};
    struct knee_level lv[6];
    make_levels(lv, 6, loads6, T, L);
    lv[4].n_ok = 0;
    lv[4].n_err = 64;
    lv[5].n_ok = 0;
    lv[5].n_err = 128;
    lv[2].n_err = 3;
    struct knee_config kc;
    knee_config_defaults(&kc);
    struct knee_result kr;
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.n_usable, 4);
    CHECK_EQ_INT(kr.knee_reached, 0);
    CHECK_EQ_INT(kr.i_knee, 3);
    struct knee_rules r;
    knee_rules_make(lv, 6, &kc, &kr, &r);
    dump_rules(&kr, &r);
    CHECK(r.n >= 1);
    CHECK(strstr(r.text[0], "Concurrency 4: 3 of 35 failed") != NULL);
    CHECK(strstr(r.text[0], "concurrency 16: 64 of 64 failed (all)") != NULL);
    CHECK(strstr(r.text[0], "195 of 227 requests failed at these 3 levels") != NULL);
    CHECK(strstr(r.text[0], "left out of the knee") != NULL);
    CHECK(has_rule(&r, "the levels above it failed, so the knee cannot be placed"));
    /* Every level failed. */
    for (int i = 0; i < 6; i++) {
        lv[i].n_ok = 0;
        lv[i].n_err = 8;
    }
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.i_knee, -1);
    CHECK_EQ_INT(kr.n_usable, 0);
    CHECK_EQ_INT(kr.i_peak, -1);
    knee_rules_make(lv, 6, &kc, &kr, &r);
    CHECK_EQ_INT(r.n, 1);
}

static void test_unsorted(void)
{
    double x[6] = {16, 1, 32, 4, 2, 8};
    double T[6] = {760, 100, 770, 380, 195, 720};
    double L[6] = {2.1, 1.0, 4.1, 1.05, 1.02, 1.1};
    struct knee_level lv[6];
    make_levels(lv, 6, x, T, L);
    struct knee_config kc;
    knee_config_defaults(&kc);
    struct knee_result kr;
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.i_knee, 5); /* index of load 8 in the caller's array */
    CHECK_EQ_INT(kr.i_next, 0);
    CHECK_EQ_INT(kr.i_peak, 2);
}

static void test_slo_levels_and_queue(void)
{
    double T[6] = {100, 195, 380, 720, 760, 770};
    double L[6] = {1.00, 1.02, 1.05, 1.10, 2.10, 4.10};
    double frac[6] = {1.0, 1.0, 0.99, 0.97, 0.55, 0.2};
    double wmean[6] = {0, 0.02, 0, 0.1, 7.5, 23.8};
    double wmax[6] = {0, 1, 0, 2, 8, 24};
    struct knee_level lv[6];
    make_levels(lv, 6, loads6, T, L);
    for (int i = 0; i < 6; i++) {
        lv[i].goodput_frac = frac[i];
        lv[i].goodput_rps = frac[i] * lv[i].qps;
        lv[i].waiting_mean = wmean[i];
        lv[i].waiting_max = wmax[i];
    }
    struct knee_config kc;
    knee_config_defaults(&kc);
    kc.slo_desc = "TTFT <= 500 ms";
    struct knee_result kr;
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.i_slo_max, 3);
    CHECK_EQ_INT(kr.i_sweet, 3);
    struct knee_rules r;
    knee_rules_make(lv, 6, &kc, &kr, &r);
    dump_rules(&kr, &r);
    CHECK(r.n == KNEE_MAX_RULES);
    CHECK(
        has_rule(&r, "Highest concurrency meeting TTFT <= 500 ms for at least 95% of requests: 8"));
    CHECK(has_rule(&r, "at concurrency 16 only 55% of requests met it"));
    CHECK(has_rule(&r, "The server starts queueing at concurrency 16 (mean 7.5, max 8 requests"));
    /* Stricter attainment: nobody but the lowest levels meets it. */
    kc.slo_attainment = 0.995;
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.i_slo_max, 1);
    /* No level meets it. */
    for (int i = 0; i < 6; i++)
        lv[i].goodput_frac = 0.5 - 0.01 * i;
    knee_analyze(lv, 6, &kc, &kr);
    CHECK_EQ_INT(kr.i_slo_max, -1);
    knee_rules_make(lv, 6, &kc, &kr, &r);
    CHECK(has_rule(&r, "No concurrency tested met TTFT <= 500 ms for 100% of requests; the closest "
                       "was concurrency 1 with 50%"));
    /* Queue data present but never >= 1. */
    for (int i = 0; i < 6; i++) {
        lv[i].waiting_max = 0;
        lv[i].waiting_mean = 0;
    }
    kc.slo_desc = NULL;
    knee_rules_make(lv, 6, &kc, &kr, &r);
    CHECK(has_rule(&r, "never built a queue"));
}

static void test_rate_mode(void)
{
    double x[4] = {2, 4, 8, 16};
    double T[4] = {120, 240, 470, 490};
    double L[4] = {1.0, 1.0, 1.1, 5.0};
    struct knee_level lv[4];
    make_levels(lv, 4, x, T, L);
    struct knee_config kc;
    knee_config_defaults(&kc);
    kc.load_name = "rate";
    kc.load_unit = " req/s";
    struct knee_result kr;
    knee_analyze(lv, 4, &kc, &kr);
    CHECK_EQ_INT(kr.i_knee, 2);
    CHECK(strstr(kr.summary, "Knee at rate 8 req/s") != NULL);
    /* Non-doubling steps are normalised per doubling: 2 -> 8 with x4 throughput is +100%/doubling.
     */
    double x2[2] = {2, 8}, T2[2] = {100, 400}, L2[2] = {1, 1};
    make_levels(lv, 2, x2, T2, L2);
    knee_analyze(lv, 2, &kc, &kr);
    CHECK_EQ_INT(kr.knee_reached, 0);
    CHECK_NEAR(kr.gain_per_doubling, 1.0, 1e-9);
}

static void test_slo_parse(void)
{
    struct knee_slo s;
    char err[256];
    CHECK_EQ_INT(knee_slo_parse("ttft:500ms,tpot:50ms", &s, err, sizeof err), KNEE_OK);
    CHECK_NEAR(s.ttft_ms, 500, 1e-12);
    CHECK_NEAR(s.tpot_ms, 50, 1e-12);
    CHECK(isnan(s.e2e_ms));
    CHECK(knee_slo_is_set(&s));
    char d[128];
    CHECK_EQ_STR(knee_slo_str(&s, d, sizeof d), "TTFT <= 500 ms, TPOT <= 50 ms");
    CHECK_EQ_INT(knee_slo_parse("e2e:2.5s,ttft:0.25s,tpot:1500us", &s, err, sizeof err), KNEE_OK);
    CHECK_NEAR(s.e2e_ms, 2500, 1e-9);
    CHECK_NEAR(s.ttft_ms, 250, 1e-9);
    CHECK_NEAR(s.tpot_ms, 1.5, 1e-9);
    struct knee_slo keep = s;
    CHECK_EQ_INT(knee_slo_parse("ttft:500", &s, err, sizeof err), KNEE_ERR_SYNTAX);
    CHECK(strstr(err, "ttft:500") && strstr(err, "unit"));
    CHECK_EQ_INT(knee_slo_parse("ttft:0ms", &s, err, sizeof err), KNEE_ERR_RANGE);
    CHECK_EQ_INT(knee_slo_parse("ttft:-5ms", &s, err, sizeof err), KNEE_ERR_RANGE);
    CHECK_EQ_INT(knee_slo_parse("latency:5ms", &s, err, sizeof err), KNEE_ERR_SYNTAX);
    CHECK(strstr(err, "unknown key \"latency\"") != NULL);
    CHECK_EQ_INT(knee_slo_parse("ttft:5ms,,tpot:1ms", &s, err, sizeof err), KNEE_ERR_SYNTAX);
    CHECK_EQ_INT(knee_slo_parse("ttft", &s, err, sizeof err), KNEE_ERR_SYNTAX);
    CHECK_EQ_INT(knee_slo_parse("", &s, err, sizeof err), KNEE_ERR_SYNTAX);
    CHECK_EQ_INT(knee_slo_parse("ttft:5 ms", &s, err, sizeof err), KNEE_ERR_SYNTAX);
    CHECK_EQ_INT(knee_slo_parse("ttft:infs", &s, err, sizeof err), KNEE_ERR_RANGE);
    CHECK(memcmp(&keep, &s, sizeof s) == 0); /* untouched on error */
    double ms;
    CHECK_EQ_INT(knee_parse_duration_ms("2s", &ms), KNEE_OK);
    CHECK_NEAR(ms, 2000, 1e-12);
    CHECK_EQ_INT(knee_parse_duration_ms("2m", &ms), KNEE_ERR_SYNTAX);
    CHECK_EQ_STR(knee_status_str(KNEE_ERR_RANGE), "out of range");
}

static void test_slo_met(void)
{
    struct knee_slo s;
    knee_slo_none(&s);
    CHECK(!knee_slo_is_set(&s));
    CHECK(knee_slo_met(&s, 1e9, 1e9, 1e9));
    char d[32];
    CHECK_EQ_STR(knee_slo_str(&s, d, sizeof d), "none");
    s.ttft_ms = 500;
    s.tpot_ms = 50;
    CHECK(knee_slo_met(&s, 499, 49, 10000));
    CHECK(knee_slo_met(&s, 500, 50, 10000));
    CHECK(!knee_slo_met(&s, 501, 10, 1));
    CHECK(!knee_slo_met(&s, 100, 51, 1));
    CHECK(knee_slo_met(&s, 100, NAN, 1)); /* one-token answers pass TPOT */
    CHECK(!knee_slo_met(&s, NAN, 10, 1)); /* no first token: fails TTFT */
    s.e2e_ms = 1000;
    CHECK(!knee_slo_met(&s, 100, 10, 1001));
    CHECK(!knee_slo_met(&s, 100, 10, NAN));
}

int main(void)
{
    TEST_RUN(test_classic_knee);
    TEST_RUN(test_two_levels_latency_words);
    TEST_RUN(test_latency_knee);
    TEST_RUN(test_dip_at_two);
    TEST_RUN(test_flat_curve);
    TEST_RUN(test_not_reached);
    TEST_RUN(test_noisy_dip);
    TEST_RUN(test_noisy_curves);
    TEST_RUN(test_single_level);
    TEST_RUN(test_errors_only_levels);
    TEST_RUN(test_unsorted);
    TEST_RUN(test_slo_levels_and_queue);
    TEST_RUN(test_rate_mode);
    TEST_RUN(test_slo_parse);
    TEST_RUN(test_slo_met);
    return TEST_DONE();
}
