/* test_schema: the schema validator of tests/schema_check.h on small inline schemas and JSON
 * samples (valid documents, undocumented keys, wrong types, missing required keys, array element
 * paths, wildcards, malformed tables), then on docs/schema.md itself: its example schema against
 * a document written with report/jsonw.h, and the placeholder sections the probes fill. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/jsonw.h"
#include "schema_check.h"
#include "test.h"

static const char *const doc_md = "# Schemas\n\n"
                                  "## slmprobe.t/1\n\n"
                                  "Some text | not a table.\n\n"
                                  "| key | type | required | meaning |\n"
                                  "|---|---|---|---|\n"
                                  "| `schema` | string | yes | the id |\n"
                                  "| `n` | integer | yes | a count |\n"
                                  "| `rate_tok_s` | null\\|number | no | a rate |\n"
                                  "| `levels` | array | yes | levels |\n"
                                  "| `levels[]` | object | yes | one level |\n"
                                  "| `levels[].e2e_ms` | object | yes | latency |\n"
                                  "| `levels[].e2e_ms.p95` | null\\|number | yes | p95, ms |\n"
                                  "| `levels[].tags` | array | no | tags |\n"
                                  "| `levels[].tags[]` | string | no | a tag |\n"
                                  "| `meta` | object | no | labels |\n"
                                  "| `meta.*` | string | no | one label |\n"
                                  "| `meta.fixed` | bool | no | an exact name wins over * |\n"
                                  "\n"
                                  "## slmprobe.other/1\n\n"
                                  "| key | type | required | meaning |\n"
                                  "|---|---|---|---|\n"
                                  "| `x` | bool | yes | another schema |\n"
                                  "\n"
                                  "## slmprobe.empty/1\n\n"
                                  "Placeholder: filled by the probe.\n";

static struct schema load_t(void)
{
    struct schema sc;
    char err[256] = "";
    CHECK_MSG(schema_parse(doc_md, "slmprobe.t/1", &sc, err, sizeof err) == 0, "%s", err);
    return sc;
}

/* Runs the check; returns the problem count and whether some problem contains want. */
static size_t check(const struct schema *sc, const char *json, const char *want, int *found)
{
    struct schema_problems pr = {0};
    size_t n = schema_check_json(sc, json, strlen(json), &pr);
    *found = !want;
    for (size_t i = 0; i < pr.n; i++)
        if (want && strstr(pr.msgs[i], want))
            *found = 1;
    if (!*found || (!want && n))
        schema_problems_print(&pr, stderr);
    schema_problems_free(&pr);
    return n;
}

static void test_parse(void)
{
    struct schema sc = load_t();
    CHECK_EQ_INT(sc.n_keys, 12);
    if (sc.n_keys == 12) {
        CHECK_EQ_STR(sc.keys[2].path, "rate_tok_s");
        CHECK(sc.keys[2].types == (SCHEMA_T_NULL | SCHEMA_T_NUMBER));
        CHECK_EQ_INT(sc.keys[2].required, 0);
        CHECK_EQ_STR(sc.keys[6].last, "p95");
        CHECK_EQ_INT(sc.keys[6].parent, 5);
        CHECK_EQ_STR(sc.keys[4].last, "[]");
        CHECK_EQ_INT(sc.keys[4].parent, 3);
        CHECK_EQ_INT(sc.keys[0].parent, -1);
    }
    schema_free(&sc);
    struct schema o;
    char err[256] = "";
    CHECK(schema_parse(doc_md, "slmprobe.other/1", &o, err, sizeof err) == 0 && o.n_keys == 1);
    schema_free(&o);
    CHECK(schema_parse(doc_md, "slmprobe.empty/1", &o, err, sizeof err) == -1);
    CHECK(strstr(err, "placeholder"));
    CHECK(schema_parse(doc_md, "slmprobe.t", &o, err, sizeof err) == -1); /* whole heading only */
    CHECK(strstr(err, "no section"));
    /* malformed tables */
    const char *bad[][2] = {
        {"| x | strin | yes | m |\n", "bad type"},
        {"| x | string | maybe | m |\n", "bad type"},
        {"| x | string | yes |\n", "not 4"},
        {"| a.b | string | yes | m |\n", "parent of \"a.b\""},
        {"| x | string | yes | m |\n| x | bool | no | m |\n", "twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char md[512];
        snprintf(md, sizeof md,
                 "## s/1\n| key | type | required | meaning |\n|---|---|---|---|\n%s", bad[i][0]);
        err[0] = 0;
        CHECK_MSG(schema_parse(md, "s/1", &o, err, sizeof err) == -1, "%s", bad[i][0]);
        CHECK_MSG(strstr(err, bad[i][1]), "%s: got \"%s\"", bad[i][1], err);
    }
}

static void test_valid(void)
{
    struct schema sc = load_t();
    int found;
    CHECK_EQ_INT(
        check(&sc,
              "{\"schema\":\"slmprobe.t/1\",\"n\":3,\"rate_tok_s\":null,\"levels\":["
              "{\"e2e_ms\":{\"p95\":12.5},\"tags\":[\"a\",\"b\"]},{\"e2e_ms\":{\"p95\":null}}],"
              "\"meta\":{\"host\":\"x\",\"fixed\":true}}",
              NULL, &found),
        0);
    CHECK_EQ_INT(check(&sc, "{\"schema\":\"slmprobe.t/1\",\"n\":0,\"levels\":[]}", NULL, &found),
                 0);
    CHECK_EQ_INT(check(&sc, "{\"schema\":\"slmprobe.t/1\",\"n\":1,\"rate_tok_s\":2,\"levels\":[]}",
                       NULL, &found),
                 0); /* an integer is a number */
    schema_free(&sc);
}

static void test_invalid(void)
{
    struct schema sc = load_t();
    const char *ok_levels = "\"levels\":[{\"e2e_ms\":{\"p95\":1}}]";
    struct {
        const char *json_fmt;
        const char *want;
    } cases[] = {
        /* undocumented keys, at the top, nested and in array elements */
        {"{\"schema\":\"slmprobe.t/1\",\"n\":1,%s,\"extra\":1}", "extra: undocumented key"},
        {"{\"schema\":\"slmprobe.t/1\",\"n\":1,\"levels\":[{\"e2e_ms\":{\"p95\":1,\"p99\":2}}]}%s",
         "levels[0].e2e_ms.p99: undocumented key"},
        {"{\"schema\":\"slmprobe.t/1\",\"n\":1,\"levels\":[{\"e2e_ms\":{\"p95\":1}},"
         "{\"e2e_ms\":{\"p95\":1},\"x\":0}]}%s",
         "levels[1].x: undocumented key"},
        /* wrong types */
        {"{\"schema\":\"slmprobe.t/1\",\"n\":1.5,%s}", "n: number, documented as integer"},
        {"{\"schema\":\"slmprobe.t/1\",\"n\":\"3\",%s}", "n: string, documented as integer"},
        {"{\"schema\":\"slmprobe.t/1\",\"n\":1,%s,\"rate_tok_s\":\"fast\"}",
         "rate_tok_s: string, documented as null|number"},
        {"{\"schema\":\"slmprobe.t/1\",\"n\":1,\"levels\":[{\"e2e_ms\":{\"p95\":1},"
         "\"tags\":[\"a\",3]}]}%s",
         "levels[0].tags[1]: integer, documented as string"},
        {"{\"schema\":\"slmprobe.t/1\",\"n\":1,\"levels\":[7]}%s", "levels[0]: integer"},
        {"{\"schema\":\"slmprobe.t/1\",\"n\":1,\"levels\":{}}%s", "levels: object, documented as"},
        {"{\"schema\":\"slmprobe.t/1\",\"n\":1,%s,\"meta\":{\"fixed\":\"yes\"}}",
         "meta.fixed: string, documented as bool"},
        {"{\"schema\":\"slmprobe.t/1\",\"n\":1,%s,\"meta\":{\"any\":1}}",
         "meta.any: integer, documented as string"},
        /* missing required keys, at the top and in every element */
        {"{\"schema\":\"slmprobe.t/1\",%s}", "n: required key missing"},
        {"{\"schema\":\"slmprobe.t/1\",\"n\":1,\"levels\":[{\"e2e_ms\":{\"p95\":1}},{}]}%s",
         "levels[1].e2e_ms: required key missing"},
        {"{\"schema\":\"slmprobe.t/1\",\"n\":1,\"levels\":[{\"e2e_ms\":{}}]}%s",
         "levels[0].e2e_ms.p95: required key missing"},
        /* the id, the top level, not JSON */
        {"{\"schema\":\"slmprobe.t/2\",\"n\":1,%s}", "expected \"slmprobe.t/1\""},
        {"[{%s}]", "not an object"},
        {"{\"n\":1,%s", "not JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, cases[i].json_fmt,
                 strstr(cases[i].json_fmt, "\"levels\"") ? "" : ok_levels);
        int found = 0;
        size_t n = check(&sc, json, cases[i].want, &found);
        CHECK_MSG(n >= 1 && found, "case %zu: %s (want \"%s\")", i, json, cases[i].want);
    }
    /* an array whose elements are not documented */
    struct schema o;
    char err[256];
    CHECK(schema_parse("## a/1\n| key | type | required | meaning |\n|---|---|---|---|\n"
                       "| `v` | array | yes | values |\n",
                       "a/1", &o, err, sizeof err) == 0);
    int found = 0;
    CHECK_EQ_INT(check(&o, "{\"v\":[]}", NULL, &found), 0);
    CHECK(check(&o, "{\"v\":[1]}", "v[]: undocumented array elements", &found) == 1 && found);
    schema_free(&o);
    schema_free(&sc);
}

/* docs/schema.md: the example schema validates a document written with jsonw, the problems of a
 * broken one are found, and every probe's section exists. */
static void test_doc(void)
{
    struct schema sc;
    char err[256] = "";
    CHECK_MSG(schema_load(NULL, "slmprobe.example/1", &sc, err, sizeof err) == 0, "%s", err);
    struct jsonw w;
    jsonw_init(&w, 1 << 16, 1);
    jsonw_object_begin(&w);
    jsonw_key_str(&w, "schema", "slmprobe.example/1");
    jsonw_key_str(&w, "started_at", "2025-01-01T00:00:00Z");
    jsonw_key(&w, "config");
    jsonw_object_begin(&w);
    jsonw_key_int(&w, "max_tokens", 64);
    jsonw_object_end(&w);
    jsonw_key(&w, "levels");
    jsonw_array_begin(&w);
    for (int c = 1; c <= 4; c *= 2) {
        jsonw_object_begin(&w);
        jsonw_key_int(&w, "concurrency", c);
        jsonw_key(&w, "e2e_ms");
        jsonw_object_begin(&w);
        jsonw_key_num(&w, "p50", 10.0 * c);
        jsonw_key_num(&w, "p95", c == 4 ? NAN : 15.0 * c); /* null: allowed */
        jsonw_object_end(&w);
        jsonw_key_num(&w, "throughput_tok_s", 100.5 * c);
        jsonw_object_end(&w);
    }
    jsonw_array_end(&w);
    jsonw_key(&w, "errors");
    jsonw_object_begin(&w);
    jsonw_key_int(&w, "connect", 0);
    jsonw_key_int(&w, "timeout", 2);
    jsonw_object_end(&w);
    jsonw_key(&w, "knee");
    jsonw_object_begin(&w);
    jsonw_key_null(&w, "concurrency");
    jsonw_key_str(&w, "reason", "latency flat up to concurrency 4");
    jsonw_object_end(&w);
    jsonw_key(&w, "meta");
    jsonw_object_begin(&w);
    jsonw_key_str(&w, "host", "ci");
    jsonw_object_end(&w);
    jsonw_object_end(&w);
    const char *text = NULL;
    size_t len = 0;
    CHECK_EQ_INT(jsonw_finish(&w, &text, &len), JSONW_OK);
    struct schema_problems pr = {0};
    if (text && sc.n_keys) {
        CHECK_EQ_INT(schema_check_json(&sc, text, len, &pr), 0);
        schema_problems_print(&pr, stderr);
        schema_problems_free(&pr);
        /* the same document with a knee written as a bare number: two problems */
        char *broken = xstrdup(text);
        char *k = strstr(broken, "\"knee\": {");
        CHECK(k != NULL);
        if (k) {
            char *end = strchr(k, '}');
            memset(k + 8, ' ', (size_t)(end - k - 8) + 1);
            memcpy(k + 8, "8", 1);
            CHECK_EQ_INT(schema_check_json(&sc, broken, strlen(broken), &pr), 1);
            CHECK(pr.n == 1 && strstr(pr.msgs[0], "knee: integer, documented as object"));
            schema_problems_free(&pr);
        }
        free(broken);
    }
    jsonw_free(&w);
    schema_free(&sc);
    size_t md_len = 0;
    char *md = file_read_all(SCHEMA_DOC_PATH, 1 << 22, &md_len);
    CHECK(md != NULL);
    const char *ids[] = {"ttft", "batch", "prefix", "kv", "lab"};
    for (size_t i = 0; md && i < 5; i++) {
        char h[64];
        snprintf(h, sizeof h, "\n## slmprobe.%s/1\n", ids[i]);
        CHECK_MSG(strstr(md, h), "%s", h);
    }
    free(md);
    CHECK(schema_load("no/such/file.md", "x/1", &sc, err, sizeof err) == -1);
    CHECK(strstr(err, "cannot read"));
}

int main(void)
{
    TEST_RUN(test_parse);
    TEST_RUN(test_valid);
    TEST_RUN(test_invalid);
    TEST_RUN(test_doc);
    return TEST_DONE();
}
