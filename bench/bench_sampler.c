/* bench_sampler: the host side of one decode step, sampling only: 64 rows x 151,936 logits (the
 * qwen2.5 vocabulary) for greedy (temperature 0), temperature 1 / top_p 1 and temperature 0.7 /
 * top_p 0.9 (serve rejects top_k, so there is no top-k case). For each: the sampler as it was
 * (tests/sampler_ref.h, one row at a time: the "before"), the current per-row code on one
 * thread, and sampler_sample_rows over 1, 2, 4, .. min(nproc, 16) OpenMP threads (the
 * scheduler's path). The logits are synthetic: N(0, 2.5) with 8 peaks 8..15 above, fixed seed
 * (peaked like a language model's, not a model's own). Fastest of 25 steps, modes interleaved.
 * Checks every token against the reference and fails loudly on a difference. It does not time the
 * device-to-host copy of the logits. Writes a Markdown section to stdout. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tests/sampler_ref.h"
#include "engine/sampler.h"
#include "util/buf.h"
#include "util/clock.h"

#define N_ROWS 64
#define N_VOCAB 151936
#define N_REPS 25

static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s)
{
    return ((double)(next_u64(s) >> 11) + 0.5) * 0x1.0p-53;
}

static void fill_logits(float *l, uint64_t seed)
{
    uint64_t st = seed;
    for (int i = 0; i < N_VOCAB; i++) /* Box-Muller */
        l[i] = (float)(2.5 * sqrt(-2.0 * log(uniform01(&st))) *
                       cos(6.283185307179586 * uniform01(&st)));
    for (int k = 0; k < 8; k++)
        l[next_u64(&st) % N_VOCAB] += (float)(8.0 + 7.0 * uniform01(&st));
}

enum mode { MODE_REF, MODE_ROWS };

/* One step of N_ROWS rows; returns ms, tokens into tok. Each step starts from the same RNG
 * words, so every repetition and mode must give the same tokens. */
static double run_step(enum mode m, struct sampler *smp, int n_threads, float **logits,
                       const struct sampling_params *sp, int32_t *tok)
{
    uint64_t rng[N_ROWS];
    struct sampler_row rows[N_ROWS];
    for (int i = 0; i < N_ROWS; i++) {
        rng[i] = sampler_seed_state((uint64_t)i + 1);
        rows[i] = (struct sampler_row){logits[i], sp, 10, &rng[i]};
    }
    mono_ns t0 = clock_now_ns();
    if (m == MODE_REF)
        for (int i = 0; i < N_ROWS; i++)
            tok[i] = ref_sample_eog(&smp[0], logits[i], N_VOCAB, sp, 10, -1, NULL, 0, &rng[i]);
    else
        sampler_sample_rows(smp, n_threads, rows, N_ROWS, N_VOCAB, -1, NULL, 0, tok);
    return (double)(clock_now_ns() - t0) / 1e6;
}

#define N_MODES 6 /* before; now on 1, 2, 4, 8, 16 threads (those <= nproc) */

/* Fastest of N_REPS steps of each mode, the modes interleaved within every repetition so that
 * they see the same load (the development VM is shared). Exits on a token that differs. */
static void time_modes(struct sampler *smp, int n_cpu, float **logits,
                       const struct sampling_params *sp, const int32_t *want, double *best_ms)
{
    int32_t tok[N_ROWS];
    for (int k = 0; k < N_MODES; k++)
        best_ms[k] = INFINITY;
    for (int r = 0; r < N_REPS; r++) {
        for (int k = 0, nt = 0; k < N_MODES; k++, nt = nt ? 2 * nt : 1) {
            if (nt > n_cpu)
                break;
            double ms =
                run_step(k == 0 ? MODE_REF : MODE_ROWS, smp, k == 0 ? 1 : nt, logits, sp, tok);
            if (memcmp(tok, want, sizeof tok) != 0) {
                fprintf(stderr, "bench_sampler: tokens differ from the reference (%d threads)\n",
                        nt);
                exit(1);
            }
            if (ms < best_ms[k])
                best_ms[k] = ms;
        }
    }
}

int main(void)
{
    int n_cpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_cpu < 1)
        n_cpu = 1;
    struct sampler *smp = xcalloc((size_t)n_cpu, sizeof *smp);
    for (int t = 0; t < n_cpu; t++)
        sampler_init(&smp[t], N_VOCAB);
    float *logits[N_ROWS];
    for (int i = 0; i < N_ROWS; i++) {
        logits[i] = xmalloc((size_t)N_VOCAB * sizeof(float));
        fill_logits(logits[i], 1000 + (uint64_t)i);
    }
    static const struct {
        const char *name;
        float temperature, top_p;
    } cases[] = {
        {"greedy (temperature 0)", 0.0f, 1.0f},
        {"temperature 1, top_p 1", 1.0f, 1.0f},
        {"temperature 0.7, top_p 0.9", 0.7f, 0.9f},
    };
    double load[3] = {0};
    if (getloadavg(load, 3) < 1)
        load[0] = -1;
    printf("## Sampling (host side of a step): %d rows x %d logits\n\n", N_ROWS, N_VOCAB);
    printf("Fastest of %d steps, modes interleaved; load average %.2f at start; 'before' = the "
           "sampler as it was, one row at a time; tokens checked equal to it in every run.\n\n",
           N_REPS, load[0]);
    printf("| case | before, ms/step | before, ms/row | now 1 thread, ms/step | ms/row |");
    for (int t = 2; t <= n_cpu && t <= 16; t *= 2)
        printf(" now %d threads, ms/step |", t);
    printf("\n|---|---:|---:|---:|---:|");
    for (int t = 2; t <= n_cpu && t <= 16; t *= 2)
        printf("---:|");
    printf("\n");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct sampling_params sp = {
            .max_tokens = 100, .temperature = cases[c].temperature, .top_p = cases[c].top_p};
        int32_t want[N_ROWS];
        double ms[N_MODES];
        run_step(MODE_REF, smp, 1, logits, &sp, want);
        time_modes(smp, n_cpu, logits, &sp, want, ms);
        printf("| %s | %.2f | %.3f | %.2f | %.3f |", cases[c].name, ms[0], ms[0] / N_ROWS, ms[1],
               ms[1] / N_ROWS);
        for (int k = 2, t = 2; k < N_MODES && t <= n_cpu; k++, t *= 2)
            printf(" %.2f |", ms[k]);
        printf("\n");
        fflush(stdout);
    }
    printf("\n");
    for (int i = 0; i < N_ROWS; i++)
        free(logits[i]);
    for (int t = 0; t < n_cpu; t++)
        sampler_free(&smp[t]);
    free(smp);
    return 0;
}
