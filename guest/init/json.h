/* A small strict JSON parser (RFC 8259) for flick-init's config: no extensions, no
 * duplicate keys, bounded nesting. Strings are UTF-8 and NUL-free so they can be used as C
 * strings. */
#ifndef FLICK_INIT_JSON_H
#define FLICK_INIT_JSON_H

#include <stdbool.h>
#include <stddef.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json_value {
    enum json_type type;
    char *key;                 /* member name when inside an object */
    bool boolean;
    double number;
    bool integral;             /* number written without fraction or exponent */
    char *string;              /* JSON_STRING */
    struct json_value *child;  /* first element or member */
    struct json_value *next;   /* next sibling */
};

#define JSON_MAX_DEPTH 32

/* Parses exactly one value (surrounded by optional whitespace) from text[0..len). On failure
 * returns NULL and writes "offset N: reason" into err. */
struct json_value *json_parse(const char *text, size_t len, char *err, size_t err_len);
void json_free(struct json_value *v);

/* The member `key` of an object, or NULL. */
const struct json_value *json_get(const struct json_value *object, const char *key);
size_t json_length(const struct json_value *array);

#endif
