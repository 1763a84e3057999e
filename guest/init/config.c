#include "config.h"

#include "json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ctx {
    char *err;
    size_t err_len;
    bool failed;
};

static void fail(struct ctx *c, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->err_len, fmt, ap);
    va_end(ap);
}

/* Every member of `obj` must be one of `known` (NULL-terminated): a typo on the host side is
 * an error, not a silently ignored setting. */
static void only_known(struct ctx *c, const struct json_value *obj, const char *where,
                       const char *const *known) {
    for (const struct json_value *m = obj->child; m; m = m->next) {
        bool ok = false;
        for (const char *const *k = known; *k; k++) ok = ok || strcmp(*k, m->key) == 0;
        if (!ok) fail(c, "%s: unknown member \"%s\"", where, m->key);
    }
}

static const struct json_value *member(struct ctx *c, const struct json_value *obj, const char *key,
                                       enum json_type type, bool required, const char *where) {
    static const char *const names[] = {"null", "boolean", "number", "string", "array", "object"};
    const struct json_value *v = json_get(obj, key);
    if (!v) {
        if (required) fail(c, "%s: \"%s\" is required", where, key);
        return NULL;
    }
    if (v->type != type) {
        fail(c, "%s: \"%s\" must be a%s %s", where, key, type == JSON_ARRAY || type == JSON_OBJECT ? "n" : "",
             names[type]);
        return NULL;
    }
    return v;
}

static char *string_member(struct ctx *c, const struct json_value *obj, const char *key, bool required,
                           const char *fallback, const char *where) {
    const struct json_value *v = member(c, obj, key, JSON_STRING, required, where);
    const char *s = v ? v->string : fallback;
    if (!s) return NULL;
    char *copy = strdup(s);
    if (!copy) fail(c, "out of memory");
    return copy;
}

static int int_member(struct ctx *c, const struct json_value *obj, const char *key, int lo, int hi,
                      int fallback, const char *where) {
    const struct json_value *v = member(c, obj, key, JSON_NUMBER, false, where);
    if (!v) return fallback;
    if (!v->integral || v->number < lo || v->number > hi) {
        fail(c, "%s: \"%s\" must be an integer in [%d, %d]", where, key, lo, hi);
        return fallback;
    }
    return (int)v->number;
}

/* A JSON array of strings as a NULL-terminated vector. */
static char **string_array(struct ctx *c, const struct json_value *arr, const char *where) {
    size_t n = json_length(arr);
    char **out = calloc(n + 1, sizeof *out);
    if (!out) { fail(c, "out of memory"); return NULL; }
    size_t i = 0;
    for (const struct json_value *e = arr ? arr->child : NULL; e; e = e->next, i++) {
        if (e->type != JSON_STRING) { fail(c, "%s[%zu] must be a string", where, i); break; }
        if (!(out[i] = strdup(e->string))) { fail(c, "out of memory"); break; }
    }
    return out;
}

static void free_vector(char **v) {
    for (char **p = v; p && *p; p++) free(*p);
    free(v);
}

static void parse_mount(struct ctx *c, const struct json_value *v, struct mount_spec *m, bool is_root,
                        const char *where) {
    static const char *const root_keys[] = {"device", "fstype", "options", NULL};
    static const char *const mount_keys[] = {"device", "path", "fstype", "options", NULL};
    if (v->type != JSON_OBJECT) { fail(c, "%s must be an object", where); return; }
    only_known(c, v, where, is_root ? root_keys : mount_keys);
    m->device = string_member(c, v, "device", true, NULL, where);
    if (!is_root) m->path = string_member(c, v, "path", true, NULL, where);
    m->fstype = string_member(c, v, "fstype", false, "ext4", where);
    m->options = string_member(c, v, "options", false, "", where);
    if (!is_root && m->path && m->path[0] != '/') fail(c, "%s: path must be absolute", where);
}

static void parse_process(struct ctx *c, const struct json_value *p, struct init_config *out) {
    static const char *const keys[] = {"argv", "env", "cwd", "user", "terminal", NULL};
    only_known(c, p, "process", keys);
    const struct json_value *argv = member(c, p, "argv", JSON_ARRAY, true, "process");
    if (argv && json_length(argv) == 0) fail(c, "process: \"argv\" must not be empty");
    out->argv = string_array(c, argv, "process.argv");
    if (out->argv && out->argv[0] && out->argv[0][0] == '\0') fail(c, "process: argv[0] is empty");
    out->env = string_array(c, member(c, p, "env", JSON_ARRAY, false, "process"), "process.env");
    for (char **e = out->env; e && *e; e++)
        if (!strchr(*e, '=')) fail(c, "process.env: \"%s\" is not NAME=VALUE", *e);
    out->cwd = string_member(c, p, "cwd", false, "/", "process");
    if (out->cwd && out->cwd[0] != '/') fail(c, "process: cwd must be absolute");
    out->user = string_member(c, p, "user", false, "", "process");
    out->terminal = string_member(c, p, "terminal", false, "/dev/console", "process");
    if (out->terminal && strncmp(out->terminal, "/dev/", 5) != 0) fail(c, "process: terminal must be under /dev");
}

static void parse_network(struct ctx *c, const struct json_value *n, struct init_config *out) {
    static const char *const keys[] = {"interface", "address", "gateway", "mtu", "dns", NULL};
    only_known(c, n, "network", keys);
    out->has_network = true;
    out->ifname = string_member(c, n, "interface", false, "eth0", "network");
    if (out->ifname && strlen(out->ifname) >= 16) fail(c, "network: interface name too long");
    char *addr = string_member(c, n, "address", true, NULL, "network");
    if (addr) {
        char *slash = strchr(addr, '/');
        char *end = NULL;
        long prefix = slash ? strtol(slash + 1, &end, 10) : -1;
        if (slash) *slash = '\0';
        if (!slash || end == slash + 1 || *end || prefix < 0 || prefix > 32 ||
            inet_pton(AF_INET, addr, &out->address) != 1)
            fail(c, "network: address must be IPv4 CIDR like 172.30.0.2/30");
        out->prefix_len = (int)prefix;
        free(addr);
    }
    const struct json_value *gw = member(c, n, "gateway", JSON_STRING, false, "network");
    if (gw) {
        out->has_gateway = true;
        if (inet_pton(AF_INET, gw->string, &out->gateway) != 1)
            fail(c, "network: gateway \"%s\" is not an IPv4 address", gw->string);
    }
    out->mtu = int_member(c, n, "mtu", 68, 65535, 0, "network");
    out->dns = string_array(c, member(c, n, "dns", JSON_ARRAY, false, "network"), "network.dns");
}

static void parse_hosts(struct ctx *c, const struct json_value *hosts, struct init_config *out) {
    static const char *const keys[] = {"address", "names", NULL};
    out->n_hosts = json_length(hosts);
    out->hosts = calloc(out->n_hosts + 1, sizeof *out->hosts);
    if (!out->hosts) { fail(c, "out of memory"); return; }
    size_t i = 0;
    for (const struct json_value *h = hosts->child; h; h = h->next, i++) {
        if (h->type != JSON_OBJECT) { fail(c, "hosts[%zu] must be an object", i); return; }
        only_known(c, h, "hosts", keys);
        out->hosts[i].address = string_member(c, h, "address", true, NULL, "hosts");
        out->hosts[i].names = string_array(c, member(c, h, "names", JSON_ARRAY, true, "hosts"), "hosts.names");
    }
}

int config_parse(const char *text, size_t len, struct init_config *out, char *err, size_t err_len) {
    static const char *const keys[] = {"hostname", "root", "mounts", "process", "network", "hosts",
                                       "stop", "vsock", NULL};
    struct ctx c = {.err = err, .err_len = err_len};
    memset(out, 0, sizeof *out);
    if (len > CONFIG_MAX_BYTES) {
        fail(&c, "config is %zu bytes, more than the %d allowed", len, CONFIG_MAX_BYTES);
        return -1;
    }
    char jerr[128];
    struct json_value *doc = json_parse(text, len, jerr, sizeof jerr);
    if (!doc) {
        fail(&c, "config is not valid JSON: %s", jerr);
        return -1;
    }
    if (doc->type != JSON_OBJECT) fail(&c, "config must be a JSON object");
    else {
        only_known(&c, doc, "config", keys);
        out->hostname = string_member(&c, doc, "hostname", false, NULL, "config");
        const struct json_value *root = member(&c, doc, "root", JSON_OBJECT, true, "config");
        if (root) parse_mount(&c, root, &out->root, true, "root");
        const struct json_value *mounts = member(&c, doc, "mounts", JSON_ARRAY, false, "config");
        out->n_mounts = json_length(mounts);
        out->mounts = calloc(out->n_mounts + 1, sizeof *out->mounts);
        size_t i = 0;
        for (const struct json_value *m = mounts ? mounts->child : NULL; m && out->mounts; m = m->next)
            parse_mount(&c, m, &out->mounts[i++], false, "mounts[]");
        const struct json_value *process = member(&c, doc, "process", JSON_OBJECT, true, "config");
        if (process) parse_process(&c, process, out);
        const struct json_value *network = member(&c, doc, "network", JSON_OBJECT, false, "config");
        if (network) parse_network(&c, network, out);
        const struct json_value *hosts = member(&c, doc, "hosts", JSON_ARRAY, false, "config");
        if (hosts) parse_hosts(&c, hosts, out);
        out->stop_signal = SIGTERM;
        out->stop_timeout_ms = 10000;
        const struct json_value *stop = member(&c, doc, "stop", JSON_OBJECT, false, "config");
        if (stop) {
            static const char *const stop_keys[] = {"signal", "timeout_ms", NULL};
            only_known(&c, stop, "stop", stop_keys);
            out->stop_signal = int_member(&c, stop, "signal", 1, 64, SIGTERM, "stop");
            out->stop_timeout_ms = int_member(&c, stop, "timeout_ms", 0, 3600 * 1000, 10000, "stop");
        }
        const struct json_value *vsock = member(&c, doc, "vsock", JSON_OBJECT, false, "config");
        if (vsock) {
            static const char *const vsock_keys[] = {"port", NULL};
            only_known(&c, vsock, "vsock", vsock_keys);
            out->vsock_port = int_member(&c, vsock, "port", 1, 0x7fffffff, 0, "vsock");
            if (!json_get(vsock, "port")) fail(&c, "vsock: \"port\" is required");
        }
    }
    json_free(doc);
    if (c.failed) {
        config_free(out);
        return -1;
    }
    return 0;
}

int config_load(const char *path, struct init_config *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    /* One byte more than allowed, so an oversized file is recognised without reading it all. */
    char *buf = malloc(CONFIG_MAX_BYTES + 1);
    size_t len = 0;
    ssize_t n = 0;
    while (buf && len <= CONFIG_MAX_BYTES &&
           (n = read(fd, buf + len, CONFIG_MAX_BYTES + 1 - len)) > 0)
        len += (size_t)n;
    int saved = errno;
    close(fd);
    if (!buf || n < 0) {
        snprintf(err, err_len, "cannot read %s: %s", path, strerror(buf ? saved : ENOMEM));
        free(buf);
        return -1;
    }
    int rc = config_parse(buf, len, out, err, err_len);
    free(buf);
    return rc;
}

static void free_mount(struct mount_spec *m) {
    free(m->device);
    free(m->path);
    free(m->fstype);
    free(m->options);
}

void config_free(struct init_config *c) {
    free(c->hostname);
    free_mount(&c->root);
    for (size_t i = 0; c->mounts && i < c->n_mounts; i++) free_mount(&c->mounts[i]);
    free(c->mounts);
    free_vector(c->argv);
    free_vector(c->env);
    free(c->cwd);
    free(c->user);
    free(c->terminal);
    free(c->ifname);
    free_vector(c->dns);
    for (size_t i = 0; c->hosts && i < c->n_hosts; i++) {
        free(c->hosts[i].address);
        free_vector(c->hosts[i].names);
    }
    free(c->hosts);
    memset(c, 0, sizeof *c);
}
