/* /flick/config.json (docs/init-protocol.md) as a value. */
#ifndef FLICK_INIT_CONFIG_H
#define FLICK_INIT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_BYTES (256 * 1024)

struct mount_spec {
    char *device, *path, *fstype, *options;
};

struct host_entry {
    char *address;
    char **names; /* NULL-terminated */
};

struct init_config {
    char *hostname;            /* may be NULL */
    struct mount_spec root;    /* path unused */
    struct mount_spec *mounts;
    size_t n_mounts;
    char **argv, **env;        /* NULL-terminated; argv non-empty */
    char *cwd;                 /* default "/" */
    char *user;                /* default "" (root) */
    char *terminal;            /* the program's stdio and controlling terminal; default "/dev/console" */
    bool has_network;
    char *ifname;
    uint32_t address;          /* network byte order */
    int prefix_len;
    bool has_gateway;
    uint32_t gateway;
    int mtu;                   /* 0: leave as is */
    char **dns;                /* NULL-terminated, may be empty */
    struct host_entry *hosts;
    size_t n_hosts;
    int stop_signal;           /* default SIGTERM */
    int stop_timeout_ms;       /* default 10000 */
    int vsock_port;            /* 0: no event channel */
};

/* Parses and validates a config document. On failure returns -1 with a reason in err. */
int config_parse(const char *text, size_t len, struct init_config *out, char *err, size_t err_len);
/* Reads `path` (at most CONFIG_MAX_BYTES) and parses it. */
int config_load(const char *path, struct init_config *out, char *err, size_t err_len);
void config_free(struct init_config *c);

#endif
