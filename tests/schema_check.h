/* schema_check: validates a probe's JSON results against its key table in docs/schema.md, for any
 * test to use. It parses one "## <schema id>" section's "| key | type | required | meaning |"
 * table, then walks a JSON document and lists every problem: an undocumented key path, a type
 * that does not match, a missing required key, a "schema" value other than the id. It checks
 * structure and types only, not values or units. Static functions; tests run from the repo root.
 *
 *   struct schema sc;
 *   char err[256];
 *   if (schema_load(NULL, "slmprobe.ttft/1", &sc, err, sizeof err) != 0) ... // docs/schema.md
 *   struct schema_problems pr = {0};
 *   size_t n = schema_check_file(&sc, "out/ttft.json", &pr);   // 0: valid
 *   schema_problems_print(&pr, stderr);
 *   schema_problems_free(&pr);
 *   schema_free(&sc);
 */
#ifndef SLM_SCHEMA_CHECK_H
#define SLM_SCHEMA_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/json.h"

#define SCHEMA_DOC_PATH "docs/schema.md"
#define SCHEMA_FN static __attribute__((unused))

/* Type bits; a key's type is their union ("null|number"). */
enum {
    SCHEMA_T_STRING = 1 << 0,
    SCHEMA_T_NUMBER = 1 << 1, /* integer or not */
    SCHEMA_T_INTEGER = 1 << 2,
    SCHEMA_T_BOOL = 1 << 3,
    SCHEMA_T_OBJECT = 1 << 4,
    SCHEMA_T_ARRAY = 1 << 5,
    SCHEMA_T_NULL = 1 << 6,
    SCHEMA_T_ANY = 1 << 7, /* "any": a value not descended into (e.g. another schema's document) */
};

struct schema_key {
    char *path;       /* "levels[].e2e_ms.p95" */
    const char *last; /* last step within path: "p95", "[]" or "*" */
    int parent;       /* index of the parent key, -1 for top-level keys */
    unsigned types;
    char *type_text; /* as documented: "null|number" */
    int required;
};

struct schema {
    char *id;
    struct schema_key *keys;
    size_t n_keys;
};

struct schema_problems {
    char **msgs;
    size_t n;
};

SCHEMA_FN void schema_problem_add(struct schema_problems *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
SCHEMA_FN void schema_problem_add(struct schema_problems *p, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    p->msgs = xrealloc(p->msgs, (p->n + 1) * sizeof *p->msgs);
    p->msgs[p->n++] = xstrdup(tmp);
}

SCHEMA_FN void schema_problems_free(struct schema_problems *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->msgs[i]);
    free(p->msgs);
    p->msgs = NULL;
    p->n = 0;
}

SCHEMA_FN void schema_problems_print(const struct schema_problems *p, FILE *f)
{
    for (size_t i = 0; i < p->n; i++)
        fprintf(f, "  schema: %s\n", p->msgs[i]);
}

SCHEMA_FN void schema_free(struct schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_keys; i++) {
        free(s->keys[i].path);
        free(s->keys[i].type_text);
    }
    free(s->keys);
    free(s->id);
    memset(s, 0, sizeof *s);
}

/* "null|number" -> bits; 0 if a name is unknown. */
SCHEMA_FN unsigned schema_types_parse(const char *s)
{
    static const char *const names[] = {"string", "number", "integer", "bool",
                                        "object", "array",  "null",   "any"};
    unsigned bits = 0;
    while (*s) {
        size_t n = strcspn(s, "|");
        unsigned bit = 0;
        for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strlen(names[i]) == n && !strncmp(names[i], s, n))
                bit = 1u << i;
        if (!bit)
            return 0;
        bits |= bit;
        s += n + (s[n] == '|');
    }
    return bits;
}

/* Splits one table line into at most max trimmed cells (a "\|" is a literal '|'; backticks
 * around a cell are dropped). Returns the number of cells. */
SCHEMA_FN size_t schema_row_cells(const char *line, size_t len, char cells[][256], size_t max)
{
    size_t n = 0, i = 0;
    if (i < len && line[i] == '|')
        i++;
    while (i < len && n < max) {
        char *c = cells[n];
        size_t k = 0;
        for (; i < len && line[i] != '|'; i++) {
            if (line[i] == '\\' && i + 1 < len && line[i + 1] == '|')
                i++;
            if (k + 1 < 256)
                c[k++] = line[i];
        }
        c[k] = 0;
        i++; /* the '|' */
        char *a = c, *b = c + k;
        while (*a == ' ' || *a == '\t' || *a == '`')
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '`' || b[-1] == '\r'))
            b--;
        memmove(c, a, (size_t)(b - a));
        c[b - a] = 0;
        if (i >= len && !*c)
            break; /* nothing after the closing '|' */
        n++;
    }
    return n;
}

/* Fills parent and last of key i from its path; -1 with err when the parent is not documented. */
SCHEMA_FN int schema_key_link(struct schema *s, size_t i, char *err, size_t err_len)
{
    struct schema_key *k = &s->keys[i];
    size_t len = strlen(k->path), cut;
    if (len >= 2 && !strcmp(k->path + len - 2, "[]")) {
        cut = len - 2;
        k->last = k->path + cut;
    } else {
        const char *dot = strrchr(k->path, '.');
        cut = dot ? (size_t)(dot - k->path) : 0;
        k->last = dot ? dot + 1 : k->path;
    }
    k->parent = -1;
    if (!*k->last || (cut == 0 && k->last != k->path)) {
        snprintf(err, err_len, "%.80s: bad key path \"%.80s\"", s->id, k->path);
        return -1;
    }
    if (cut == 0)
        return 0;
    for (size_t j = 0; j < s->n_keys; j++)
        if (j != i && strlen(s->keys[j].path) == cut && !strncmp(s->keys[j].path, k->path, cut))
            k->parent = (int)j;
    if (k->parent < 0) {
        snprintf(err, err_len, "%.80s: parent of \"%.80s\" is not documented", s->id, k->path);
        return -1;
    }
    return 0;
}

/* One data row of the key table; -1 with err on a malformed row. */
SCHEMA_FN int schema_key_add(struct schema *s, char cells[][256], size_t n_cells, char *err,
                             size_t err_len)
{
    if (n_cells < 4) {
        snprintf(err, err_len, "%.80s: row \"%.80s\" has %zu cells, not 4", s->id, cells[0],
                 n_cells);
        return -1;
    }
    unsigned types = schema_types_parse(cells[1]);
    int req = !strcmp(cells[2], "yes") ? 1 : !strcmp(cells[2], "no") ? 0 : -1;
    if (!types || req < 0 || !cells[0][0]) {
        snprintf(err, err_len, "%.60s: key \"%.60s\": bad type \"%.30s\" or required \"%.10s\"",
                 s->id, cells[0], cells[1], cells[2]);
        return -1;
    }
    for (size_t j = 0; j < s->n_keys; j++)
        if (!strcmp(s->keys[j].path, cells[0])) {
            snprintf(err, err_len, "%.80s: key \"%.80s\" documented twice", s->id, cells[0]);
            return -1;
        }
    s->keys = xrealloc(s->keys, (s->n_keys + 1) * sizeof *s->keys);
    struct schema_key *k = &s->keys[s->n_keys++];
    memset(k, 0, sizeof *k);
    k->path = xstrdup(cells[0]);
    k->types = types;
    k->type_text = xstrdup(cells[1]);
    k->required = req;
    return 0;
}

/* Reads the section "## <id>" of a schema document held in md. 0, or -1 with err (no such
 * section, no key table, a malformed row). On success free *out with schema_free. */
SCHEMA_FN int schema_parse(const char *md, const char *id, struct schema *out, char *err,
                           size_t err_len)
{
    memset(out, 0, sizeof *out);
    out->id = xstrdup(id);
    const char *p = md;
    size_t id_len = strlen(id);
    for (; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (!strncmp(p, "## ", 3) && !strncmp(p + 3, id, id_len) &&
            strspn(p + 3 + id_len, " \t\r") == strcspn(p + 3 + id_len, "\n"))
            break;
    }
    if (!p) {
        snprintf(err, err_len, "no section \"## %.80s\"", id);
        goto fail;
    }
    int in_table = 0;
    for (p = strchr(p, '\n'); p && p[1] && strncmp(p + 1, "## ", 3); p = strchr(p + 1, '\n')) {
        const char *line = p + 1;
        size_t len = strcspn(line, "\n");
        char cells[4][256];
        if (line[0] != '|') {
            in_table = 0;
            continue;
        }
        size_t n = schema_row_cells(line, len, cells, 4);
        if (!in_table) {
            in_table = n == 4 && !strcmp(cells[0], "key") && !strcmp(cells[1], "type");
            continue;
        }
        if (strspn(cells[0], "-: ") == strlen(cells[0]))
            continue; /* the separator row */
        if (schema_key_add(out, cells, n, err, err_len) != 0)
            goto fail;
    }
    if (out->n_keys == 0) {
        snprintf(err, err_len, "%.80s: no key table (still a placeholder?)", id);
        goto fail;
    }
    for (size_t i = 0; i < out->n_keys; i++)
        if (schema_key_link(out, i, err, err_len) != 0)
            goto fail;
    return 0;
fail:
    schema_free(out);
    return -1;
}

/* schema_parse on a file (NULL: docs/schema.md, relative to the working directory). */
SCHEMA_FN int schema_load(const char *md_path, const char *id, struct schema *out, char *err,
                          size_t err_len)
{
    const char *path = md_path ? md_path : SCHEMA_DOC_PATH;
    char *md = file_read_all(path, 1 << 22, NULL);
    if (!md) {
        memset(out, 0, sizeof *out);
        snprintf(err, err_len, "%.80s: cannot read", path);
        return -1;
    }
    int rc = schema_parse(md, id, out, err, err_len);
    free(md);
    return rc;
}

SCHEMA_FN unsigned schema_json_type(const struct json *v)
{
    switch (json_type_of(v)) {
    case JSON_TYPE_NULL:
        return SCHEMA_T_NULL;
    case JSON_TYPE_BOOL:
        return SCHEMA_T_BOOL;
    case JSON_TYPE_INT:
        return SCHEMA_T_INTEGER | SCHEMA_T_NUMBER;
    case JSON_TYPE_REAL:
        return SCHEMA_T_NUMBER;
    case JSON_TYPE_STRING:
        return SCHEMA_T_STRING;
    case JSON_TYPE_ARRAY:
        return SCHEMA_T_ARRAY;
    case JSON_TYPE_OBJECT:
        return SCHEMA_T_OBJECT;
    case JSON_TYPE_NONE:
        break;
    }
    return 0;
}

/* The documented child of key parent (-1: top level) named name ("[]" for array elements); an
 * exact name wins over "*". -1 if none. */
SCHEMA_FN int schema_child(const struct schema *s, int parent, const char *name)
{
    int star = -1;
    for (size_t i = 0; i < s->n_keys; i++) {
        if (s->keys[i].parent != parent)
            continue;
        if (!strcmp(s->keys[i].last, name))
            return (int)i;
        if (!strcmp(s->keys[i].last, "*") && strcmp(name, "[]"))
            star = (int)i;
    }
    return star;
}

SCHEMA_FN void schema_walk(const struct schema *s, const struct json *v, int key, const char *at,
                           struct schema_problems *p);

/* Checks v (documented as key k, found at path at) and descends into it. */
SCHEMA_FN void schema_visit(const struct schema *s, const struct json *v, int k, const char *at,
                            struct schema_problems *p)
{
    unsigned t = schema_json_type(v);
    if (s->keys[k].types & SCHEMA_T_ANY)
        return;
    if (!(t & s->keys[k].types)) {
        schema_problem_add(p, "%s: %s, documented as %s (%s)", at, json_type_str(json_type_of(v)),
                           s->keys[k].type_text, s->keys[k].path);
        return;
    }
    if (t & (SCHEMA_T_OBJECT | SCHEMA_T_ARRAY))
        schema_walk(s, v, k, at, p);
}

SCHEMA_FN void schema_walk(const struct schema *s, const struct json *v, int key, const char *at,
                           struct schema_problems *p)
{
    char path[512];
    if (json_type_of(v) == JSON_TYPE_ARRAY) {
        int k = schema_child(s, key, "[]");
        if (k < 0 && json_len(v)) {
            schema_problem_add(p, "%s[]: undocumented array elements", at);
            return;
        }
        for (size_t i = 0; i < json_len(v); i++) {
            snprintf(path, sizeof path, "%s[%zu]", at, i);
            schema_visit(s, json_at(v, i), k, path, p);
        }
        return;
    }
    const char *name;
    const struct json *m;
    for (size_t i = 0; json_member_at(v, i, &name, &m) == 0; i++) {
        snprintf(path, sizeof path, "%s%s%s", at, *at ? "." : "", name);
        int k = schema_child(s, key, name);
        if (k < 0)
            schema_problem_add(p, "%s: undocumented key", path);
        else
            schema_visit(s, m, k, path, p);
    }
    for (size_t i = 0; i < s->n_keys; i++) {
        const struct schema_key *k = &s->keys[i];
        if (k->parent == key && k->required && strcmp(k->last, "*") && strcmp(k->last, "[]") &&
            !json_get(v, k->last))
            schema_problem_add(p, "%s%s%s: required key missing (%s)", at, *at ? "." : "", k->last,
                               k->path);
    }
}

/* Validates JSON text; appends problems to *p and returns how many this call found (0: valid). */
SCHEMA_FN size_t schema_check_json(const struct schema *s, const char *text, size_t len,
                                   struct schema_problems *p)
{
    size_t n0 = p->n;
    char err[160];
    struct json *root = json_parse(text, len, err, sizeof err);
    if (!root) {
        schema_problem_add(p, "not JSON: %s", err);
        return p->n - n0;
    }
    if (json_type_of(root) != JSON_TYPE_OBJECT) {
        schema_problem_add(p, "top level is %s, not an object", json_type_str(json_type_of(root)));
    } else {
        const char *id = json_str(json_get(root, "schema"), NULL);
        if (id && strcmp(id, s->id))
            schema_problem_add(p, "schema: \"%s\", expected \"%s\"", id, s->id);
        schema_walk(s, root, -1, "", p);
    }
    json_free(root);
    return p->n - n0;
}

SCHEMA_FN size_t schema_check_file(const struct schema *s, const char *json_path,
                                   struct schema_problems *p)
{
    size_t len = 0;
    char *text = file_read_all(json_path, 1 << 26, &len);
    if (!text) {
        schema_problem_add(p, "%s: cannot read", json_path);
        return 1;
    }
    size_t n = schema_check_json(s, text, len, p);
    free(text);
    return n;
}

/* A test's one call: loads schema id from docs/schema.md, checks json_path, prints every problem
 * to stderr. Returns the number of problems, or -1 when the schema could not be loaded (printed). */
SCHEMA_FN long schema_validate_file(const char *id, const char *json_path)
{
    struct schema sc;
    char err[256];
    if (schema_load(NULL, id, &sc, err, sizeof err) != 0) {
        fprintf(stderr, "schema %s: %s (tests run from the repository root)\n", id, err);
        return -1;
    }
    struct schema_problems pr = {0};
    size_t n = schema_check_file(&sc, json_path, &pr);
    if (n)
        fprintf(stderr, "%s against %s: %zu problems\n", json_path, id, n);
    schema_problems_print(&pr, stderr);
    schema_problems_free(&pr);
    schema_free(&sc);
    return (long)n;
}

#endif
