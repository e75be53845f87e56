/* json: wraps jansson behind util/json.h. The only file that includes <jansson.h>. */
#include "util/json.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define J(v) ((json_t *)(v))

struct json *json_parse(const char *text, size_t len, char *err, size_t err_len)
{
    json_error_t e;
    json_t *root = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!root) {
        if (err && err_len)
            snprintf(err, err_len, "line %d column %d: %s", e.line, e.column, e.text);
        return NULL;
    }
    return (struct json *)root;
}

void json_free(struct json *root)
{
    if (root)
        json_decref(J(root));
}

enum json_type json_type_of(const struct json *v)
{
    if (!v)
        return JSON_TYPE_NONE;
    switch (json_typeof(J(v))) {
    case JSON_OBJECT: return JSON_TYPE_OBJECT;
    case JSON_ARRAY: return JSON_TYPE_ARRAY;
    case JSON_STRING: return JSON_TYPE_STRING;
    case JSON_INTEGER: return JSON_TYPE_INT;
    case JSON_REAL: return JSON_TYPE_REAL;
    case JSON_TRUE:
    case JSON_FALSE: return JSON_TYPE_BOOL;
    case JSON_NULL: return JSON_TYPE_NULL;
    }
    return JSON_TYPE_NONE;
}

const char *json_type_str(enum json_type t)
{
    static const char *names[] = {"absent", "null", "boolean", "integer", "number",
                                  "string", "array", "object"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

const struct json *json_get(const struct json *obj, const char *key)
{
    if (!obj || !json_is_object(J(obj)))
        return NULL;
    return (const struct json *)json_object_get(J(obj), key);
}

size_t json_len(const struct json *arr)
{
    return arr && json_is_array(J(arr)) ? json_array_size(J(arr)) : 0;
}

const struct json *json_at(const struct json *arr, size_t i)
{
    if (!arr || !json_is_array(J(arr)))
        return NULL;
    return (const struct json *)json_array_get(J(arr), i);
}

int json_member_at(const struct json *obj, size_t i, const char **key, const struct json **value)
{
    if (!obj || !json_is_object(J(obj)))
        return -1;
    size_t k = 0;
    const char *name;
    json_t *val;
    json_object_foreach(J(obj), name, val)
    {
        if (k++ == i) {
            *key = name;
            *value = (const struct json *)val;
            return 0;
        }
    }
    return -1;
}

int json_member_each(const struct json *obj,
                     int (*fn)(void *ctx, const char *key, const struct json *value), void *ctx)
{
    if (!obj || !json_is_object(J(obj)))
        return -1;
    const char *name;
    json_t *val;
    json_object_foreach(J(obj), name, val)
    {
        int r = fn(ctx, name, (const struct json *)val);
        if (r)
            return r;
    }
    return 0;
}

const char *json_str(const struct json *v, size_t *len_out)
{
    if (!v || !json_is_string(J(v)))
        return NULL;
    if (len_out)
        *len_out = json_string_length(J(v));
    return json_string_value(J(v));
}

int json_int(const struct json *v, long long *out)
{
    if (!v || !json_is_integer(J(v)))
        return -1;
    *out = (long long)json_integer_value(J(v));
    return 0;
}

int json_num(const struct json *v, double *out)
{
    if (!v || !json_is_number(J(v)))
        return -1;
    *out = json_number_value(J(v));
    return 0;
}

int json_bool(const struct json *v, int *out)
{
    if (!v || !json_is_boolean(J(v)))
        return -1;
    *out = json_is_true(J(v));
    return 0;
}
