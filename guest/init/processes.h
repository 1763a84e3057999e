/* The process list flick-init answers a `ps` request with (docs/exec-protocol.md): /proc read
 * into one JSON object per process, bounded. Pure enough to run on the host's own /proc in the
 * unit tests. */
#ifndef FLICK_INIT_PROCESSES_H
#define FLICK_INIT_PROCESSES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROCESS_MAX 4096          /* processes listed at most; the host refuses more */
#define PROCESS_TEXT_MAX 4096     /* bytes of a command line or directory, the rest cut */
#define PROCESS_SOCKETS_MAX 64    /* listening sockets named per process */
/* One process's JSON at most: two texts escaped (6 bytes a byte at worst), its sockets, numbers. */
#define PROCESS_JSON_MAX (64 * 1024)

/* What /proc/PID/stat says that the list needs (proc_pid_stat(5) field numbers). */
struct process_stat {
    int pid;             /* (1) */
    char comm[64];       /* (2), without its parentheses */
    int ppid;            /* (4) */
    unsigned long flags; /* (9); PF_KTHREAD marks a kernel thread */
    uint64_t utime, stime; /* (14), (15) clock ticks */
    uint64_t starttime;  /* (22) clock ticks after boot */
    int64_t rss;         /* (24) pages */
};

/* Parses the text of /proc/PID/stat (comm may hold spaces and parentheses). 0, or -1. */
int process_stat_parse(const char *text, size_t len, struct process_stat *out);

/* Appends `s` (len bytes) to out as a JSON string: quoted, escaped, bytes that are not UTF-8
 * replaced by '?'. Returns the new length, or cap when it does not fit. */
size_t json_put_string(char *out, size_t at, size_t cap, const char *s, size_t len);

/* Lists the processes under proc_root (normally "/proc"), kernel threads and `skip` left out,
 * at most PROCESS_MAX, calling emit with each one's JSON object:
 * (at most PROCESS_JSON_MAX bytes):
 *   {"pid":N,"ppid":N,"command":"...","directory":"...","stime":N,"rtime":N,"cpu":N,"rss":N,
 *    "listen_sockets":[]}
 * stime: started, Unix seconds; rtime: running, seconds; cpu: CPU time over its life, percent
 * of one CPU (as ps's %CPU); rss: bytes. Stops at emit's first non-zero answer and returns it;
 * else 0. */
int processes_list(const char *proc_root, pid_t skip, int (*emit)(void *ctx, const char *json, size_t len), void *ctx);

#endif
