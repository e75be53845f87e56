/* json: the project's only door to the JSON library (jansson). Parses text into an opaque tree
 * and reads it through narrow getters; nothing here exposes a jansson type. For writing JSON use
 * the emitters in util/buf.h. Not a general DOM: no mutation.
 *
 *   char err[128];
 *   struct json *root = json_parse(body, len, err, sizeof err);
 *   long long n;
 *   if (root && json_int(json_get(root, "max_tokens"), &n) == 0) ...
 *   json_free(root);
 *
 * Views returned by getters (child nodes, string pointers) live until json_free(root).
 * Any thread; a tree is not shared between threads. */
#ifndef SLM_JSON_H
#define SLM_JSON_H

#include <stddef.h>

struct json;

enum json_type {
    JSON_TYPE_NONE = 0, /* absent (NULL node) */
    JSON_TYPE_NULL,
    JSON_TYPE_BOOL,
    JSON_TYPE_INT,
    JSON_TYPE_REAL,
    JSON_TYPE_STRING,
    JSON_TYPE_ARRAY,
    JSON_TYPE_OBJECT,
};

/* Parses len bytes (need not be NUL-terminated). Returns the root (free with json_free), or NULL
 * with a message "line L column C: ..." in err. Duplicate keys: the last wins. */
struct json *json_parse(const char *text, size_t len, char *err, size_t err_len);
void json_free(struct json *root); /* NULL-safe; only on roots */

enum json_type json_type_of(const struct json *v); /* JSON_TYPE_NONE for NULL */
const char *json_type_str(enum json_type t);       /* "string", "integer", ... */
/* Member of an object, or NULL (absent, or v is not an object). */
const struct json *json_get(const struct json *obj, const char *key);
/* Array length (0 if not an array) and element i (NULL if out of range). */
size_t json_len(const struct json *arr);
const struct json *json_at(const struct json *arr, size_t i);
/* Object members in order: returns 0 and sets key/value for index i, -1 past the end. */
int json_member_at(const struct json *obj, size_t i, const char **key, const struct json **value);
/* Calls fn for each member in order (linear, unlike json_member_at in a loop) until fn returns
 * non-zero; returns that value, 0 after the last member, -1 if obj is not an object. */
int json_member_each(const struct json *obj,
                     int (*fn)(void *ctx, const char *key, const struct json *value), void *ctx);

/* Scalar getters: 0 on success, -1 on type mismatch or NULL. */
const char *json_str(const struct json *v, size_t *len_out); /* NULL unless a string */
int json_int(const struct json *v, long long *out);  /* integers only (3.0 is not an integer) */
int json_num(const struct json *v, double *out);     /* integer or real */
int json_bool(const struct json *v, int *out);

#endif
