#include "json.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
    const char *p, *start, *end;
    char *err;
    size_t err_len;
    bool failed;
};

static void fail(struct parser *ps, const char *fmt, ...) {
    if (ps->failed) return;
    ps->failed = true;
    int n = snprintf(ps->err, ps->err_len, "offset %zu: ", (size_t)(ps->p - ps->start));
    if (n < 0 || (size_t)n >= ps->err_len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err + n, ps->err_len - (size_t)n, fmt, ap);
    va_end(ap);
}

static void skip_ws(struct parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static struct json_value *new_value(struct parser *ps, enum json_type type) {
    struct json_value *v = calloc(1, sizeof *v);
    if (!v) fail(ps, "out of memory");
    else v->type = type;
    return v;
}

static bool literal(struct parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        fail(ps, "invalid literal");
        return false;
    }
    ps->p += n;
    return true;
}

static int hex4(struct parser *ps) {
    if (ps->end - ps->p < 4) { fail(ps, "truncated \\u escape"); return -1; }
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *ps->p++;
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else { fail(ps, "bad hex digit in \\u escape"); return -1; }
    }
    return v;
}

static size_t put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of a valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates), or 0. */
static size_t utf8_sequence(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

static char *parse_string(struct parser *ps) {
    ps->p++; /* opening quote */
    /* The decoded string is never longer than its encoding. */
    const char *q = ps->p;
    while (q < ps->end && *q != '"') q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
    if (q >= ps->end) { fail(ps, "unterminated string"); return NULL; }
    char *out = malloc((size_t)(q - ps->p) + 1);
    if (!out) { fail(ps, "out of memory"); return NULL; }
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) { fail(ps, "control character in string"); goto bad; }
        if (c != '\\') {
            size_t len = utf8_sequence((const unsigned char *)ps->p, (const unsigned char *)ps->end);
            if (!len) { fail(ps, "invalid UTF-8 in string"); goto bad; }
            memcpy(out + n, ps->p, len);
            n += len;
            ps->p += len;
            continue;
        }
        ps->p++;
        char e = *ps->p++;
        switch (e) {
        case '"': out[n++] = '"'; break;
        case '\\': out[n++] = '\\'; break;
        case '/': out[n++] = '/'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            int hi = hex4(ps);
            if (hi < 0) goto bad;
            uint32_t cp = (uint32_t)hi;
            if (hi >= 0xD800 && hi <= 0xDBFF) {
                if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') {
                    fail(ps, "unpaired surrogate"); goto bad;
                }
                ps->p += 2;
                int lo = hex4(ps);
                if (lo < 0) goto bad;
                if (lo < 0xDC00 || lo > 0xDFFF) { fail(ps, "unpaired surrogate"); goto bad; }
                cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
                fail(ps, "unpaired surrogate"); goto bad;
            }
            if (cp == 0) { fail(ps, "\\u0000 is not allowed"); goto bad; }
            /* \uXXXX (6 bytes) decodes to at most 3 bytes, a pair (12) to 4. */
            n += put_utf8(out + n, cp);
            break;
        }
        default: ps->p--; fail(ps, "invalid escape"); goto bad;
        }
    }
    ps->p++; /* closing quote */
    out[n] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

static bool is_digit(const struct parser *ps) { return ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9'; }

static struct json_value *parse_number(struct parser *ps) {
    const char *begin = ps->p;
    bool integral = true;
    if (ps->p < ps->end && *ps->p == '-') ps->p++;
    if (!is_digit(ps)) { fail(ps, "invalid number"); return NULL; }
    if (*ps->p == '0') ps->p++;
    else while (is_digit(ps)) ps->p++;
    if (ps->p < ps->end && *ps->p == '.') {
        integral = false;
        ps->p++;
        if (!is_digit(ps)) { fail(ps, "digit expected after '.'"); return NULL; }
        while (is_digit(ps)) ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        integral = false;
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (!is_digit(ps)) { fail(ps, "digit expected in exponent"); return NULL; }
        while (is_digit(ps)) ps->p++;
    }
    char buf[64];
    size_t len = (size_t)(ps->p - begin);
    if (len >= sizeof buf) { fail(ps, "number too long"); return NULL; }
    memcpy(buf, begin, len);
    buf[len] = '\0';
    struct json_value *v = new_value(ps, JSON_NUMBER);
    if (!v) return NULL;
    v->number = strtod(buf, NULL);
    v->integral = integral;
    return v;
}

static struct json_value *parse_value(struct parser *ps, int depth);

static struct json_value *parse_container(struct parser *ps, int depth, bool object) {
    char close = object ? '}' : ']';
    if (depth >= JSON_MAX_DEPTH) { fail(ps, "nesting deeper than %d", JSON_MAX_DEPTH); return NULL; }
    struct json_value *v = new_value(ps, object ? JSON_OBJECT : JSON_ARRAY);
    if (!v) return NULL;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) { ps->p++; return v; }
    struct json_value **tail = &v->child;
    for (;;) {
        char *key = NULL;
        skip_ws(ps);
        if (object) {
            if (ps->p >= ps->end || *ps->p != '"') { fail(ps, "member name expected"); goto bad; }
            key = parse_string(ps);
            if (!key) goto bad;
            if (json_get(v, key)) { fail(ps, "duplicate member \"%s\"", key); free(key); goto bad; }
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') { fail(ps, "':' expected"); free(key); goto bad; }
            ps->p++;
        }
        struct json_value *item = parse_value(ps, depth + 1);
        if (!item) { free(key); goto bad; }
        item->key = key;
        *tail = item;
        tail = &item->next;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
        if (ps->p < ps->end && *ps->p == close) { ps->p++; return v; }
        fail(ps, "',' or '%c' expected", close);
        goto bad;
    }
bad:
    json_free(v);
    return NULL;
}

static struct json_value *parse_value(struct parser *ps, int depth) {
    skip_ws(ps);
    if (ps->p >= ps->end) { fail(ps, "value expected"); return NULL; }
    struct json_value *v;
    switch (*ps->p) {
    case '{': return parse_container(ps, depth, true);
    case '[': return parse_container(ps, depth, false);
    case '"': {
        char *s = parse_string(ps);
        if (!s) return NULL;
        if (!(v = new_value(ps, JSON_STRING))) { free(s); return NULL; }
        v->string = s;
        return v;
    }
    case 't': case 'f':
        if (!literal(ps, *ps->p == 't' ? "true" : "false")) return NULL;
        if ((v = new_value(ps, JSON_BOOL))) v->boolean = ps->p[-1] == 'e' && ps->p[-2] == 'u';
        return v;
    case 'n':
        if (!literal(ps, "null")) return NULL;
        return new_value(ps, JSON_NULL);
    default:
        if (*ps->p != '-' && (*ps->p < '0' || *ps->p > '9')) { fail(ps, "value expected"); return NULL; }
        return parse_number(ps);
    }
}

struct json_value *json_parse(const char *text, size_t len, char *err, size_t err_len) {
    struct parser ps = {.p = text, .start = text, .end = text + len, .err = err, .err_len = err_len};
    if (err_len) err[0] = '\0';
    struct json_value *v = parse_value(&ps, 0);
    if (!v) return NULL;
    skip_ws(&ps);
    if (ps.p != ps.end) {
        fail(&ps, "trailing characters after the value");
        json_free(v);
        return NULL;
    }
    return v;
}

void json_free(struct json_value *v) {
    while (v) {
        struct json_value *next = v->next;
        json_free(v->child);
        free(v->key);
        free(v->string);
        free(v);
        v = next;
    }
}

const struct json_value *json_get(const struct json_value *object, const char *key) {
    if (!object || object->type != JSON_OBJECT) return NULL;
    for (const struct json_value *m = object->child; m; m = m->next)
        if (strcmp(m->key, key) == 0) return m;
    return NULL;
}

size_t json_length(const struct json_value *array) {
    size_t n = 0;
    for (const struct json_value *m = array ? array->child : NULL; m; m = m->next) n++;
    return n;
}
