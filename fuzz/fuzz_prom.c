/* fuzz_prom: libFuzzer target for the Prometheus text parser (server/promscrape.c prom_parse)
 * and the readers over its result (label lookup, sums, histograms, server_metrics_from_prom).
 * Checks that a parse either fails with a message or gives samples whose names and label views
 * are NUL-terminated strings; ASan/UBSan catch memory errors, LeakSanitizer leaks.
 * The fuzz binary does not link net/client.c (libcurl and its twenty libraries would have to
 * travel with it to other machines): prom_scrape's one call into it, http_get, is defined below
 * to trap, since nothing here scrapes. test_fuzz_replay links the real one.
 * fuzz-sources: src/server/promscrape.c src/util/buf.c src/util/log.c */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "net/client.h"
#include "server/promscrape.h"

#ifndef FUZZ_REPLAY
int http_get(const char *url, const char *api_key, long timeout_ms, struct buf *body_out,
             int *status_out, char *err, size_t err_len)
{
    __builtin_trap(); /* the target parses pages; it never fetches one */
}
#endif

static void fuzz_prom_read(const struct prom_set *s)
{
    for (size_t i = 0; i < s->n_samples; i++) {
        const struct prom_sample *smp = &s->samples[i];
        if (!smp->name || strlen(smp->name) > 1u << 20)
            __builtin_trap();
        for (int k = 0; k < smp->n_labels; k++)
            if (!smp->labels[k].name || !smp->labels[k].value)
                __builtin_trap();
        (void)prom_label_get(smp, "model_name");
    }
    static const char *const bases[] = {"vllm:time_to_first_token_seconds",
                                        "vllm:e2e_request_latency_seconds", "llamacpp:n_busy_slots",
                                        "sglang:time_to_first_token_seconds"};
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        struct prom_histogram h = {0};
        double sum;
        (void)prom_sum(s, bases[i], NULL, &sum);
        if (prom_histogram_get(s, bases[i], NULL, &h) == 0) {
            (void)prom_histogram_quantile(&h, 0.5);
            (void)prom_histogram_mean(&h);
            struct prom_histogram d = {0};
            if (prom_histogram_sub(&h, &h, &d) == 0)
                prom_histogram_free(&d);
        }
        prom_histogram_free(&h);
    }
    struct server_metrics m;
    server_metrics_from_prom(s, &m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct prom_set s;
    char err[256] = "";
    enum prom_status st = prom_parse((const char *)data, size, &s, err, sizeof err);
    if (st == PROM_OK)
        fuzz_prom_read(&s);
    else if (!err[0] || !prom_status_str(st))
        __builtin_trap();
    prom_set_free(&s);
    return 0;
}
