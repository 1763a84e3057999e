/* The process list of a `ps` request (processes.h, docs/exec-protocol.md). */
#include "processes.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PF_KTHREAD 0x00200000UL  /* include/linux/sched.h */
#define SOCKETS_MAX 256          /* listening sockets the list names */
#define FDS_MAX 4096             /* descriptors looked at per process */

int process_stat_parse(const char *text, size_t len, struct process_stat *out) {
    memset(out, 0, sizeof *out);
    char buf[1024];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    if (!open || !close || close < open || sscanf(buf, "%d", &out->pid) != 1 || out->pid <= 0) return -1;
    size_t n = (size_t)(close - open - 1);
    if (n >= sizeof out->comm) n = sizeof out->comm - 1;
    memcpy(out->comm, open + 1, n);
    out->comm[n] = '\0';
    /* From (3) state on; (5)..(8), (10)..(13) and (16)..(21) are skipped. */
    int got = sscanf(close + 1, " %*c %d %*d %*d %*d %*d %lu %*u %*u %*u %*u %" SCNu64 " %" SCNu64
                     " %*d %*d %*d %*d %*d %*d %" SCNu64 " %*u %" SCNd64,
                     &out->ppid, &out->flags, &out->utime, &out->stime, &out->starttime, &out->rss);
    return got == 6 ? 0 : -1;
}

/* The length of the UTF-8 sequence at s (at most left bytes), or 0 when it is not valid. */
static size_t utf8_length(const unsigned char *s, size_t left) {
    if (s[0] < 0x80) return 1;
    size_t n = s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3 : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    if (n == 0 || n > left) return 0;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range (RFC 3629 section 4) */
    if (s[0] == 0xE0) lo = 0xA0;
    if (s[0] == 0xED) hi = 0x9F;
    if (s[0] == 0xF0) lo = 0x90;
    if (s[0] == 0xF4) hi = 0x8F;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

size_t json_put_string(char *out, size_t at, size_t cap, const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    if (at + 1 >= cap) return cap;
    out[at++] = '"';
    for (size_t i = 0; i < len;) {
        if (at + 8 >= cap) return cap;
        size_t n = utf8_length(p + i, len - i);
        if (p[i] == '"' || p[i] == '\\') {
            out[at++] = '\\';
            out[at++] = (char)p[i];
        } else if (p[i] < 0x20 || p[i] == 0x7F) {
            at += (size_t)snprintf(out + at, cap - at, "\\u%04x", p[i]);
        } else if (n == 0) {
            out[at++] = '?';
            n = 1;
        } else {
            memcpy(out + at, p + i, n);
            at += n;
        }
        i += n ? n : 1;
    }
    if (at + 1 >= cap) return cap;
    out[at++] = '"';
    return at;
}

/* Reads at most cap - 1 bytes of a file; -1 when it cannot be opened. */
static ssize_t read_small(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t got = 0;
    ssize_t n;
    while (got + 1 < cap && (n = read(fd, buf + got, cap - 1 - got)) > 0) got += (size_t)n;
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

struct listening {
    unsigned long inode;
    char proto[4];
    char address[64];
};

/* The listening sockets of /proc/net/{tcp,tcp6,udp,udp6}: TCP in LISTEN, UDP bound and not
 * connected (proc_net(5)'s table; addresses are 32-bit words in the kernel's byte order). */
static size_t listening_sockets(const char *proc_root, struct listening *out, size_t max) {
    static const struct { const char *file, *proto; int v6; unsigned state; } tables[] = {
        {"tcp", "tcp", 0, 0x0A}, {"tcp6", "tcp", 1, 0x0A}, {"udp", "udp", 0, 0x07}, {"udp6", "udp", 1, 0x07}};
    size_t n = 0;
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        char path[256];
        snprintf(path, sizeof path, "%s/net/%s", proc_root, tables[t].file);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        char line[512];
        if (!fgets(line, sizeof line, f)) { fclose(f); continue; } /* the header */
        while (n < max && fgets(line, sizeof line, f)) {
            char local[40], remote[40];
            unsigned port, state;
            unsigned long inode;
            if (sscanf(line, " %*d: %39[0-9A-Fa-f]:%x %39[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x %*x %*u %*d %lu",
                       local, &port, remote, &state, &inode) != 5 || state != tables[t].state || inode == 0)
                continue;
            uint32_t words[4] = {0};
            size_t count = tables[t].v6 ? 4 : 1;
            if (strlen(local) != 8 * count) continue;
            for (size_t w = 0; w < count; w++) {
                char hex[9];
                memcpy(hex, local + 8 * w, 8);
                hex[8] = '\0';
                words[w] = (uint32_t)strtoul(hex, NULL, 16);
            }
            char ip[INET6_ADDRSTRLEN];
            if (!inet_ntop(tables[t].v6 ? AF_INET6 : AF_INET, words, ip, sizeof ip)) continue;
            struct listening *l = &out[n++];
            l->inode = inode;
            snprintf(l->proto, sizeof l->proto, "%s", tables[t].proto);
            snprintf(l->address, sizeof l->address, tables[t].v6 ? "[%s]:%u" : "%s:%u", ip, port);
        }
        fclose(f);
    }
    return n;
}

/* Appends the listening sockets among pid's descriptors as a JSON array. */
static size_t put_sockets(char *out, size_t at, size_t cap, const char *proc_root, int pid,
                          const struct listening *sockets, size_t count) {
    if (at + 2 >= cap) return cap;
    out[at++] = '[';
    char path[256];
    snprintf(path, sizeof path, "%s/%d/fd", proc_root, pid);
    DIR *d = count ? opendir(path) : NULL;
    bool first = true;
    size_t seen = 0, named = 0;
    for (struct dirent *e; d && (e = readdir(d)) && seen < FDS_MAX;) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        seen++;
        char target[64];
        ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof target - 1);
        unsigned long inode;
        if (n <= 0) continue;
        target[n] = '\0';
        if (sscanf(target, "socket:[%lu]", &inode) != 1) continue;
        for (size_t i = 0; i < count && named < PROCESS_SOCKETS_MAX; i++) {
            if (sockets[i].inode != inode) continue;
            named++;
            int w = snprintf(out + at, cap - at, "%s{\"proto\":\"%s\",\"address\":\"%s\"}", first ? "" : ",",
                             sockets[i].proto, sockets[i].address);
            if (w < 0 || (size_t)w >= cap - at) { closedir(d); return cap; }
            at += (size_t)w;
            first = false;
        }
    }
    if (d) closedir(d);
    if (at + 1 >= cap) return cap;
    out[at++] = ']';
    return at;
}

static uint64_t boot_time(const char *proc_root) {
    char path[256], buf[8192];
    snprintf(path, sizeof path, "%s/stat", proc_root);
    if (read_small(path, buf, sizeof buf) < 0) return 0;
    const char *b = strstr(buf, "\nbtime ");
    return b ? strtoull(b + 7, NULL, 10) : 0;
}

static double uptime(const char *proc_root) {
    char path[256], buf[128];
    snprintf(path, sizeof path, "%s/uptime", proc_root);
    return read_small(path, buf, sizeof buf) > 0 ? strtod(buf, NULL) : 0;
}

/* One process's JSON object into out (cap bytes); its length, or 0 when it is gone. */
static size_t process_json(char *out, size_t cap, const char *proc_root, const struct process_stat *st,
                           uint64_t btime, double up, const struct listening *sockets, size_t nsockets) {
    const long ticks = sysconf(_SC_CLK_TCK) > 0 ? sysconf(_SC_CLK_TCK) : 100;
    const long page = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
    char path[256], text[PROCESS_TEXT_MAX + 1];
    snprintf(path, sizeof path, "%s/%d/cmdline", proc_root, st->pid);
    ssize_t n = read_small(path, text, sizeof text);
    if (n < 0) return 0;
    while (n > 0 && text[n - 1] == '\0') n--;
    for (ssize_t i = 0; i < n; i++)
        if (text[i] == '\0') text[i] = ' ';
    if (n == 0) n = snprintf(text, sizeof text, "[%s]", st->comm); /* a zombie has no command line */
    double started = (double)st->starttime / (double)ticks;
    double running = up > started ? up - started : 0;
    double cpu_s = (double)(st->utime + st->stime) / (double)ticks;
    uint64_t cpu = running > 0 ? (uint64_t)(100.0 * cpu_s / running + 0.5) : 0;
    size_t at = (size_t)snprintf(out, cap, "{\"pid\":%d,\"ppid\":%d,\"command\":", st->pid, st->ppid);
    at = json_put_string(out, at, cap, text, (size_t)n);
    snprintf(path, sizeof path, "%s/%d/cwd", proc_root, st->pid);
    n = readlink(path, text, PROCESS_TEXT_MAX);
    if (at + 16 >= cap) return 0;
    memcpy(out + at, ",\"directory\":", 13);
    at = json_put_string(out, at + 13, cap, text, n > 0 ? (size_t)n : 0);
    if (at >= cap) return 0;
    int w = snprintf(out + at, cap - at, ",\"stime\":%" PRIu64 ",\"rtime\":%" PRIu64 ",\"cpu\":%" PRIu64
                     ",\"rss\":%" PRIu64 ",\"listen_sockets\":",
                     btime + (uint64_t)started, (uint64_t)running, cpu,
                     st->rss > 0 ? (uint64_t)st->rss * (uint64_t)page : 0);
    if (w < 0 || (size_t)w >= cap - at) return 0;
    at = put_sockets(out, at + (size_t)w, cap, proc_root, st->pid, sockets, nsockets);
    if (at + 2 >= cap) return 0;
    out[at++] = '}';
    out[at] = '\0';
    return at;
}

static int by_pid(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

int processes_list(const char *proc_root, pid_t skip, int (*emit)(void *ctx, const char *json, size_t len), void *ctx) {
    static int pids[PROCESS_MAX];
    static struct listening sockets[SOCKETS_MAX];
    static char json[PROCESS_JSON_MAX];
    size_t count = 0;
    DIR *d = opendir(proc_root);
    for (struct dirent *e; d && (e = readdir(d)) && count < PROCESS_MAX;) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end == '\0' && pid > 0 && pid != skip && pid <= 0x7fffffff) pids[count++] = (int)pid;
    }
    if (d) closedir(d);
    qsort(pids, count, sizeof pids[0], by_pid);
    size_t nsockets = listening_sockets(proc_root, sockets, SOCKETS_MAX);
    const uint64_t btime = boot_time(proc_root);
    const double up = uptime(proc_root);
    for (size_t i = 0; i < count; i++) {
        char path[256], text[1024];
        snprintf(path, sizeof path, "%s/%d/stat", proc_root, pids[i]);
        ssize_t n = read_small(path, text, sizeof text);
        struct process_stat st;
        if (n <= 0 || process_stat_parse(text, (size_t)n, &st) != 0) continue; /* it ended meanwhile */
        if ((st.flags & PF_KTHREAD) || st.pid == 2) continue;
        size_t len = process_json(json, sizeof json, proc_root, &st, btime, up, sockets, nsockets);
        if (len == 0) continue;
        int r = emit(ctx, json, len);
        if (r != 0) return r;
    }
    return 0;
}
