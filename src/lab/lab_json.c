/* lab_json: key-path reads over util/json.h trees (see lab_json.h). */
#include "lab/lab_json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

#define LAB_JSON_MAX_BYTES (256u << 20)

struct json *lab_json_load(const char *path, char *err, size_t err_len)
{
    size_t n = 0;
    char *text = file_read_all(path, LAB_JSON_MAX_BYTES, &n);
    if (!text) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno ? errno : ENOENT));
        return NULL;
    }
    char perr[200];
    struct json *root = json_parse(text, n, perr, sizeof perr);
    if (!root)
        snprintf(err, err_len, "%s: %s", path, perr);
    free(text);
    return root;
}

const struct json *lab_jget(const struct json *root, const char *path)
{
    const struct json *v = root;
    const char *p = path;
    while (v && *p) {
        if (*p == '[') {
            char *end;
            long i = strtol(p + 1, &end, 10);
            if (*end != ']' || i < 0)
                return NULL;
            v = json_at(v, (size_t)i);
            p = end + 1;
        } else {
            size_t n = strcspn(p, ".[");
            char key[128];
            if (n == 0 || n >= sizeof key)
                return NULL;
            memcpy(key, p, n);
            key[n] = 0;
            v = json_get(v, key);
            p += n;
        }
        if (*p == '.')
            p++;
    }
    return v;
}

double lab_jnum(const struct json *root, const char *path)
{
    double x;
    return json_num(lab_jget(root, path), &x) == 0 ? x : NAN;
}

const char *lab_jstr(const struct json *root, const char *path, const char *dflt)
{
    const char *s = json_str(lab_jget(root, path), NULL);
    return s ? s : dflt;
}

size_t lab_jlen(const struct json *root, const char *path)
{
    return json_len(lab_jget(root, path));
}

int lab_jbool(const struct json *root, const char *path, int dflt)
{
    int b;
    return json_bool(lab_jget(root, path), &b) == 0 ? b : dflt;
}
