#include "exec.h"

#include "json.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *copy(const char *s, bool *oom) {
    char *c = strdup(s);
    if (!c) *oom = true;
    return c;
}

int exec_request_parse(const char *text, size_t len, struct exec_request *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    char jerr[128];
    struct json_value *doc = json_parse(text, len, jerr, sizeof jerr);
    if (!doc) {
        snprintf(err, err_len, "exec request is not valid JSON: %s", jerr);
        return -1;
    }
    bool oom = false;
    const char *bad = NULL;
    char why[256] = "";
    if (doc->type != JSON_OBJECT) bad = "exec request must be a JSON object";
    for (const struct json_value *m = doc->type == JSON_OBJECT ? doc->child : NULL; m && !bad; m = m->next) {
        if (strcmp(m->key, "cmd") == 0) {
            size_t n = json_length(m);
            if (m->type != JSON_ARRAY || n == 0) { bad = "exec request: \"cmd\" must be a non-empty array of strings"; break; }
            out->argv = calloc(n + 1, sizeof *out->argv);
            if (!out->argv) { oom = true; break; }
            size_t i = 0;
            for (const struct json_value *e = m->child; e && !bad && !oom; e = e->next, i++) {
                if (e->type != JSON_STRING) bad = "exec request: \"cmd\" must be a non-empty array of strings";
                else out->argv[i] = copy(e->string, &oom);
            }
            if (!bad && out->argv[0] && !out->argv[0][0]) bad = "exec request: cmd[0] is empty";
        } else if (strcmp(m->key, "env") == 0) {
            if (m->type != JSON_OBJECT) { bad = "exec request: \"env\" must be an object of strings"; break; }
            out->env = calloc(json_length(m) + 1, sizeof *out->env);
            if (!out->env) { oom = true; break; }
            size_t i = 0;
            for (const struct json_value *e = m->child; e && !bad; e = e->next) {
                if (e->type != JSON_STRING) bad = "exec request: \"env\" must be an object of strings";
                else if (!e->key[0] || strchr(e->key, '=')) {
                    snprintf(why, sizeof why, "exec request: env name \"%.100s\" is empty or has '='", e->key);
                    bad = why;
                } else {
                    size_t k = strlen(e->key), v = strlen(e->string);
                    char *kv = malloc(k + v + 2);
                    if (!kv) { oom = true; break; }
                    memcpy(kv, e->key, k);
                    kv[k] = '=';
                    memcpy(kv + k + 1, e->string, v + 1);
                    out->env[i++] = kv;
                }
            }
        } else if (strcmp(m->key, "user") == 0 || strcmp(m->key, "workdir") == 0) {
            bool user = m->key[0] == 'u';
            if (m->type != JSON_STRING) bad = user ? "exec request: \"user\" must be a string" : "exec request: \"workdir\" must be a string";
            else if (!user && m->string[0] != '/') bad = "exec request: \"workdir\" must be absolute";
            else if (m->string[0]) *(user ? &out->user : &out->cwd) = copy(m->string, &oom);
        } else if (strcmp(m->key, "tty") == 0) {
            if (m->type != JSON_BOOL) bad = "exec request: \"tty\" must be a boolean";
            else out->tty = m->boolean;
        } else if (strcmp(m->key, "rows") == 0 || strcmp(m->key, "cols") == 0) {
            if (m->type != JSON_NUMBER || !m->integral || m->number < 0 || m->number > 65535)
                bad = "exec request: \"rows\" and \"cols\" must be integers in [0, 65535]";
            else *(m->key[0] == 'r' ? &out->rows : &out->cols) = (int)m->number;
        } else {
            snprintf(why, sizeof why, "exec request: unknown member \"%.100s\"", m->key);
            bad = why;
        }
        if (oom) break;
    }
    if (!bad && !oom && !out->argv && doc->type == JSON_OBJECT) bad = "exec request: \"cmd\" is required";
    json_free(doc);
    if (oom) bad = "exec request: out of memory";
    if (bad) {
        snprintf(err, err_len, "%s", bad);
        exec_request_free(out);
        return -1;
    }
    return 0;
}

static void free_vector(char **v) {
    for (char **p = v; p && *p; p++) free(*p);
    free(v);
}

void exec_request_free(struct exec_request *r) {
    free_vector(r->argv);
    free_vector(r->env);
    free(r->user);
    free(r->cwd);
    memset(r, 0, sizeof *r);
}

static size_t name_length(const char *kv) {
    const char *eq = strchr(kv, '=');
    return eq ? (size_t)(eq - kv) : strlen(kv);
}

static bool overridden(const char *kv, char *const *over) {
    size_t n = name_length(kv);
    for (char *const *o = over; o && *o; o++)
        if (name_length(*o) == n && strncmp(*o, kv, n) == 0) return true;
    return false;
}

char **exec_merge_env(char *const *base, char *const *over) {
    size_t n = 0;
    for (char *const *p = base; p && *p; p++) n++;
    for (char *const *p = over; p && *p; p++) n++;
    char **env = calloc(n + 1, sizeof *env);
    if (!env) return NULL;
    size_t i = 0;
    for (char *const *p = base; p && *p; p++)
        if (!overridden(*p, over)) env[i++] = *p;
    for (char *const *p = over; p && *p; p++) env[i++] = *p;
    return env;
}

void exec_frame_header(unsigned char out[EXEC_FRAME_HEADER], int type, uint32_t len) {
    out[0] = (unsigned char)type;
    out[1] = (unsigned char)(len >> 24);
    out[2] = (unsigned char)(len >> 16);
    out[3] = (unsigned char)(len >> 8);
    out[4] = (unsigned char)len;
}

uint32_t exec_frame_length(const unsigned char header[EXEC_FRAME_HEADER]) {
    return (uint32_t)header[1] << 24 | (uint32_t)header[2] << 16 | (uint32_t)header[3] << 8 | header[4];
}
