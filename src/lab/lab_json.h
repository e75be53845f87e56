/* lab_json: reading the tiers' result files (ttft.json, prefix.json, kv.json, batch.json) by key
 * path, so that the lab's write-up and presets rest on the documented schemas (docs/schema.md)
 * and work the same for tiers measured now and tiers reused by --resume. Paths are dotted member
 * names with [i] for array elements: "repeats[0].phases_s.weights_load". Views live as long as
 * the root (util/json.h). No writing here. */
#ifndef SLM_LAB_LAB_JSON_H
#define SLM_LAB_LAB_JSON_H

#include <stddef.h>

#include "util/json.h"

/* Parses a whole file; NULL (err says why: missing, too large, malformed). Free with json_free. */
struct json *lab_json_load(const char *path, char *err, size_t err_len);
/* The node at path under root, or NULL (absent, wrong type on the way, bad index). */
const struct json *lab_jget(const struct json *root, const char *path);
/* Number at path, or NAN (absent, null, not a number). */
double lab_jnum(const struct json *root, const char *path);
/* String at path, or dflt. */
const char *lab_jstr(const struct json *root, const char *path, const char *dflt);
/* Array length at path (0 if absent or not an array). */
size_t lab_jlen(const struct json *root, const char *path);
/* Boolean at path, or dflt. */
int lab_jbool(const struct json *root, const char *path, int dflt);

#endif
