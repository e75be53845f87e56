/* test_jsonw: the streaming JSON writer. Documents written pretty and compact parse back through
 * util/json.h to the same values (escaped strings, exact doubles, NAN/inf as null, extreme
 * integers, nesting); every misuse gives its own sticky error; the cap; files. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report/jsonw.h"
#include "test.h"
#include "util/buf.h"
#include "util/json.h"

#define TRICKY "q\"b\\s/n\nt\tc\x01 \xC3\xA9 \xE2\x82\xAC"

static void write_doc(struct jsonw *w)
{
    jsonw_object_begin(w);
    jsonw_key_str(w, "schema", "slmprobe.example/1");
    jsonw_key_str(w, "tricky", TRICKY);
    jsonw_key_str(w, "bad_utf8",
                  "a\xff"
                  "b");
    jsonw_key_str(w, "none", NULL);
    jsonw_key_num(w, "tenth", 0.1);
    jsonw_key_num(w, "third", 1.0 / 3.0);
    jsonw_key_num(w, "big", 1e300);
    jsonw_key_num(w, "nan", NAN);
    jsonw_key_num(w, "inf", -INFINITY);
    jsonw_key_int(w, "min", LLONG_MIN);
    jsonw_key_int(w, "max", LLONG_MAX);
    jsonw_key_bool(w, "yes", 1);
    jsonw_key_bool(w, "no", 0);
    jsonw_key_null(w, "nil");
    jsonw_key(w, "empty_obj");
    jsonw_object_begin(w);
    jsonw_object_end(w);
    jsonw_key(w, "empty_arr");
    jsonw_array_begin(w);
    jsonw_array_end(w);
    jsonw_key(w, "levels");
    jsonw_array_begin(w);
    for (int i = 0; i < 3; i++) {
        jsonw_object_begin(w);
        jsonw_key_int(w, "concurrency", 1 << i);
        jsonw_key(w, "e2e_ms");
        jsonw_object_begin(w);
        jsonw_key_num(w, "p95", 10.5 * (i + 1));
        jsonw_object_end(w);
        jsonw_key(w, "v");
        jsonw_array_begin(w);
        jsonw_int(w, i);
        jsonw_num(w, NAN);
        jsonw_str(w, "s");
        jsonw_array_begin(w);
        jsonw_array_end(w);
        jsonw_array_end(w);
        jsonw_object_end(w);
    }
    jsonw_array_end(w);
    jsonw_object_end(w);
}

static void check_doc(const char *text, size_t len)
{
    char err[128];
    struct json *root = json_parse(text, len, err, sizeof err);
    CHECK_MSG(root != NULL, "%s", err);
    if (!root)
        return;
    CHECK_EQ_STR(json_str(json_get(root, "schema"), NULL), "slmprobe.example/1");
    CHECK_EQ_STR(json_str(json_get(root, "tricky"), NULL), TRICKY);
    CHECK_EQ_STR(json_str(json_get(root, "bad_utf8"), NULL), "a\xEF\xBF\xBD"
                                                             "b");
    CHECK(json_type_of(json_get(root, "none")) == JSON_TYPE_NULL);
    double v = 0;
    CHECK(json_num(json_get(root, "tenth"), &v) == 0 && v == 0.1);
    CHECK(json_num(json_get(root, "third"), &v) == 0 && v == 1.0 / 3.0);
    CHECK(json_num(json_get(root, "big"), &v) == 0 && v == 1e300);
    CHECK(json_type_of(json_get(root, "nan")) == JSON_TYPE_NULL);
    CHECK(json_type_of(json_get(root, "inf")) == JSON_TYPE_NULL);
    long long n = 0;
    CHECK(json_int(json_get(root, "min"), &n) == 0 && n == LLONG_MIN);
    CHECK(json_int(json_get(root, "max"), &n) == 0 && n == LLONG_MAX);
    int b = 0;
    CHECK(json_bool(json_get(root, "yes"), &b) == 0 && b == 1);
    CHECK(json_bool(json_get(root, "no"), &b) == 0 && b == 0);
    CHECK(json_type_of(json_get(root, "nil")) == JSON_TYPE_NULL);
    CHECK(json_type_of(json_get(root, "empty_obj")) == JSON_TYPE_OBJECT);
    CHECK(json_type_of(json_get(root, "empty_arr")) == JSON_TYPE_ARRAY);
    CHECK_EQ_INT(json_len(json_get(root, "empty_arr")), 0);
    const struct json *levels = json_get(root, "levels");
    CHECK_EQ_INT(json_len(levels), 3);
    CHECK(json_int(json_get(json_at(levels, 2), "concurrency"), &n) == 0 && n == 4);
    CHECK(json_num(json_get(json_get(json_at(levels, 1), "e2e_ms"), "p95"), &v) == 0 && v == 21);
    const struct json *arr = json_get(json_at(levels, 0), "v");
    CHECK_EQ_INT(json_len(arr), 4);
    CHECK(json_type_of(json_at(arr, 1)) == JSON_TYPE_NULL);
    CHECK(json_type_of(json_at(arr, 3)) == JSON_TYPE_ARRAY);
    const char *key = NULL;
    const struct json *val = NULL;
    CHECK(json_member_at(root, 0, &key, &val) == 0 && !strcmp(key, "schema")); /* order kept */
    json_free(root);
}

static void test_round_trip(void)
{
    for (int pretty = 0; pretty <= 1; pretty++) {
        struct jsonw w;
        jsonw_init(&w, 1 << 16, pretty);
        write_doc(&w);
        const char *text = NULL;
        size_t len = 0;
        CHECK_EQ_INT(jsonw_finish(&w, &text, &len), JSONW_OK);
        CHECK(text && len == strlen(text));
        if (text)
            check_doc(text, len);
        /* pretty: one member per line, two-space indent; compact: no newline at all */
        if (text && pretty)
            CHECK(strstr(text, "{\n  \"schema\": \"slmprobe.example/1\",\n  \"tricky\"") &&
                  strstr(text, "\"empty_obj\": {},\n  \"empty_arr\": [],"));
        if (text && !pretty)
            CHECK(!strchr(text, '\n') && !strncmp(text, "{\"schema\":\"slmprobe.example/1\",", 31));
        jsonw_free(&w);
    }
    struct jsonw w;
    jsonw_init(&w, 64, 0);
    jsonw_num(&w, 42); /* a scalar is a whole document */
    const char *text = NULL;
    CHECK_EQ_INT(jsonw_finish(&w, &text, NULL), JSONW_OK);
    CHECK_EQ_STR(text, "42");
    jsonw_free(&w);
    jsonw_free(NULL);
}

/* Each misuse: the status it gives, sticky, nothing more written. */
static void test_errors(void)
{
    struct {
        int id;
        enum jsonw_status want;
    } cases[] = {
        {0, JSONW_ERR_NESTING},    {1, JSONW_ERR_NESTING},    {2, JSONW_ERR_NESTING},
        {3, JSONW_ERR_NESTING},    {4, JSONW_ERR_NESTING},    {5, JSONW_ERR_NESTING},
        {6, JSONW_ERR_DEPTH},      {7, JSONW_ERR_INCOMPLETE}, {8, JSONW_ERR_NESTING},
        {9, JSONW_ERR_INCOMPLETE},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct jsonw w;
        jsonw_init(&w, 1 << 12, 0);
        switch (cases[k].id) {
        case 0: /* value without a key in an object */
            jsonw_object_begin(&w);
            jsonw_int(&w, 1);
            break;
        case 1: /* key in an array */
            jsonw_array_begin(&w);
            jsonw_key(&w, "k");
            break;
        case 2: /* key at top level */
            jsonw_key(&w, "k");
            break;
        case 3: /* end of the wrong container */
            jsonw_object_begin(&w);
            jsonw_array_end(&w);
            break;
        case 4: /* two top-level values */
            jsonw_int(&w, 1);
            jsonw_int(&w, 2);
            break;
        case 5: /* object closed with its key's value missing */
            jsonw_object_begin(&w);
            jsonw_key(&w, "k");
            jsonw_object_end(&w);
            break;
        case 6: /* too deep */
            for (int i = 0; i <= JSONW_MAX_DEPTH; i++)
                jsonw_array_begin(&w);
            break;
        case 7: /* unclosed */
            jsonw_object_begin(&w);
            jsonw_key_int(&w, "k", 1);
            break;
        case 8: /* two keys in a row */
            jsonw_object_begin(&w);
            jsonw_key(&w, "a");
            jsonw_key(&w, "b");
            break;
        case 9: /* nothing written */
            break;
        }
        enum jsonw_status st = jsonw_status(&w);
        const char *text = "x";
        CHECK_EQ_INT(jsonw_finish(&w, &text, NULL), cases[k].want);
        CHECK(text == NULL);
        if (cases[k].want != JSONW_ERR_INCOMPLETE) {
            CHECK_EQ_INT(st, cases[k].want);
            size_t len = w.out.len;
            jsonw_object_end(&w); /* sticky: nothing more written */
            jsonw_str(&w, "more");
            CHECK_EQ_INT(w.out.len, len);
            CHECK_EQ_INT(jsonw_status(&w), cases[k].want);
        } else {
            CHECK_EQ_INT(st, JSONW_OK);
        }
        jsonw_free(&w);
    }
    /* the cap */
    struct jsonw w;
    jsonw_init(&w, 32, 0);
    jsonw_array_begin(&w);
    for (int i = 0; i < 100; i++)
        jsonw_str(&w, "0123456789");
    jsonw_array_end(&w);
    CHECK_EQ_INT(jsonw_status(&w), JSONW_ERR_CAP);
    CHECK(w.out.len <= 32);
    jsonw_free(&w);
    CHECK_EQ_STR(jsonw_status_str(JSONW_ERR_NESTING), "call out of place (nesting)");
    CHECK_EQ_STR(jsonw_status_str(JSONW_ERR_CAP), "output cap reached");
}

static void test_write_file(void)
{
    char dir[] = "/tmp/test_jsonw_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], err[256] = "";
    snprintf(path, sizeof path, "%s/example.json", dir);
    struct jsonw w;
    jsonw_init(&w, 1 << 16, 1);
    write_doc(&w);
    CHECK_EQ_INT(jsonw_write_file(&w, path, err, sizeof err), JSONW_OK);
    size_t len = 0;
    char *got = file_read_all(path, 1 << 20, &len);
    const char *text = NULL;
    size_t tlen = 0;
    CHECK_EQ_INT(jsonw_finish(&w, &text, &tlen), JSONW_OK); /* unchanged by the write */
    CHECK(got && text && len == tlen + 1 && !memcmp(got, text, tlen) && got[tlen] == '\n');
    if (got)
        check_doc(got, len);
    free(got);
    unlink(path);
    snprintf(path, sizeof path, "%s/no/such/dir/x.json", dir);
    CHECK_EQ_INT(jsonw_write_file(&w, path, err, sizeof err), JSONW_ERR_IO);
    CHECK(strstr(err, "No such file"));
    jsonw_free(&w);
    jsonw_init(&w, 1 << 10, 0);
    jsonw_object_begin(&w); /* incomplete: refused, nothing written */
    snprintf(path, sizeof path, "%s/half.json", dir);
    CHECK_EQ_INT(jsonw_write_file(&w, path, err, sizeof err), JSONW_ERR_INCOMPLETE);
    CHECK(strstr(err, "document incomplete"));
    CHECK(access(path, F_OK) != 0);
    jsonw_free(&w);
    rmdir(dir);
}

int main(void)
{
    TEST_RUN(test_round_trip);
    TEST_RUN(test_errors);
    TEST_RUN(test_write_file);
    return TEST_DONE();
}
