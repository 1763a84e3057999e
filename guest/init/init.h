/* flick-init's parts that touch the system (docs/init-protocol.md). */
#ifndef FLICK_INIT_INIT_H
#define FLICK_INIT_INIT_H

#include "config.h"
#include "users.h"

#include <stdbool.h>
#include <sys/types.h>

/* Console line prefixed "flick-init: ". */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* mounts.c */
int mount_early(void);
int load_modules(const char *list_path, char *err, size_t err_len);
int mount_root_and_switch(const struct init_config *c, char *err, size_t err_len);
void write_etc_files(const struct init_config *c);
/* A small file of the initramfs (at most CARRY_MAX_BYTES), read before the switch deletes it
 * (NULL when there is none) and written at the same path in the root file system after it. */
#define CARRY_MAX_BYTES (256 * 1024)
char *carry_read(const char *path);
void carry_write(const char *path, const char *text);
void unmount_all(const struct init_config *c);

/* net.c */
int net_configure(const struct init_config *c, char *err, size_t err_len);

/* events.c: the vsock channel; every event is printed on the console too. */
void events_connect(int port);
int events_fd(void);
void event_started(pid_t pid);
void event_exited(int wait_status);
void event_error(const char *message, int exit_code);
void event_oom(void);
/* Reads what the host sent; returns commands one by one: 1 and fills *cmd, 0 when none is
 * complete yet, -1 when the connection closed. */
struct command {
    enum { CMD_STOP, CMD_SIGNAL } kind;
    int signal;      /* CMD_SIGNAL; CMD_STOP: 0 for the configured stop signal */
    int timeout_ms;  /* CMD_STOP: -1 for the configured stop timeout */
};
int events_read_command(struct command *cmd);

/* supervise.c: runs the main process to its end; returns its wait status. exec_listen_fd is
 * the exec agent's listening socket (or -1): connections are accepted while the process runs. */
int run_process(const struct init_config *c, const struct user_ids *ids, int exec_listen_fd);

/* What a child that could not exec tells its parent through a close-on-exec pipe. */
struct exec_failure {
    int exit_code;
    char message[512];
};
/* In a forked child: signal dispositions and mask as a new program expects them. */
void child_signals_default(void);
/* In a forked child: becomes `ids`, changes to cwd, and execs argv with env (plus HOME from
 * passwd unless env has it), searching env's PATH. If that fails, writes a struct
 * exec_failure to pipe_fd and exits 1 (user, cwd), 126 (not executable) or 127 (not found).
 * boot_timer: write the boot timer right before execve (the caller has ioperm). */
_Noreturn void exec_as(char *const *argv, char *const *env, const char *cwd, const char *user,
                       const struct user_ids *ids, int pipe_fd, bool boot_timer);

/* exec.c: the exec agent (docs/exec-protocol.md). A listening vsock socket on EXEC_PORT, or
 * -1; then each accepted connection is served by a forked session, never by PID 1 itself. */
int exec_listen(void);
void exec_accept(int listen_fd, const struct init_config *c);

#endif
