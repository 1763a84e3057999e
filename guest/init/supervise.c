#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define BOOT_TIMER_PORT 0x604
#define BOOT_TIMER_EXEC 123
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

static void noop(int sig) { (void)sig; }

static const char *env_lookup(char *const *env, const char *name) {
    size_t n = strlen(name);
    for (char *const *e = env; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

static _Noreturn void child_fail(int pipe_fd, int code, const char *fmt, const char *a, int err) {
    struct exec_failure f = {.exit_code = code};
    char what[400];
    snprintf(what, sizeof what, fmt, a);
    snprintf(f.message, sizeof f.message, "%s: %s", what, strerror(err));
    ssize_t ignored = write(pipe_fd, &f, sizeof f);
    (void)ignored;
    _exit(code);
}

void child_signals_default(void) {
    sigset_t none;
    sigemptyset(&none);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) signal(forwarded[i], SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static _Noreturn void child(const struct init_config *c, const struct user_ids *ids, int pipe_fd) {
    child_signals_default();
    setsid();
    /* The host may give the program a terminal of its own (a second serial port), so that
       its output is apart from the kernel's; the console stands in if that is missing. */
    int tty = open(c->terminal ? c->terminal : "/dev/console", O_RDWR | O_NOCTTY);
    if (tty < 0) tty = open("/dev/console", O_RDWR | O_NOCTTY);
    if (tty >= 0) {
        ioctl(tty, TIOCSCTTY, 0);
        dup2(tty, 0);
        dup2(tty, 1);
        dup2(tty, 2);
        if (tty > 2) close(tty);
    }
    /* Port access needs CAP_SYS_RAWIO: take it before dropping root, use it right before exec. */
    bool timer = ioperm(BOOT_TIMER_PORT, 1, 1) == 0;
    exec_as(c->argv, c->env, c->cwd, c->user, ids, pipe_fd, timer);
}

_Noreturn void exec_as(char *const *argv, char *const *base_env, const char *cwd, const char *user,
                       const struct user_ids *ids, int pipe_fd, bool boot_timer) {
    if (setgroups(ids->n_groups, ids->groups) != 0) child_fail(pipe_fd, 1, "setgroups for user \"%s\"", user, errno);
    if (setgid(ids->gid) != 0) child_fail(pipe_fd, 1, "setgid for user \"%s\"", user, errno);
    if (setuid(ids->uid) != 0) child_fail(pipe_fd, 1, "setuid for user \"%s\"", user, errno);
    if (chdir(cwd) != 0) child_fail(pipe_fd, 1, "chdir %s", cwd, errno);

    /* HOME from passwd unless the config sets it, as container runtimes do. */
    size_t n_env = 0;
    while (base_env && base_env[n_env]) n_env++;
    char **env = calloc(n_env + 2, sizeof *env);
    if (!env) child_fail(pipe_fd, 1, "%s", "environment", ENOMEM);
    for (size_t i = 0; i < n_env; i++) env[i] = base_env[i];
    char home[300];
    if (!env_lookup(base_env, "HOME")) {
        snprintf(home, sizeof home, "HOME=%s", ids->home);
        env[n_env] = home;
    }

    if (boot_timer) {
        outb(BOOT_TIMER_EXEC, BOOT_TIMER_PORT);
        ioperm(BOOT_TIMER_PORT, 1, 0);
    }
    const char *prog = argv[0];
    if (strchr(prog, '/')) {
        execve(prog, argv, env);
        child_fail(pipe_fd, errno == ENOENT ? 127 : 126, "exec %s", prog, errno);
    }
    /* PATH search with the process's own PATH (execvpe would use PID 1's). */
    const char *path = env_lookup(base_env, "PATH");
    if (!path) path = DEFAULT_PATH;
    int last = ENOENT;
    bool denied = false;
    for (const char *p = path;; p++) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char full[4096];
        snprintf(full, sizeof full, "%.*s/%s", (int)len, len ? p : ".", prog);
        execve(full, argv, env);
        last = errno;
        if (errno == EACCES) denied = true;
        else if (errno != ENOENT && errno != ENOTDIR) break;
        if (!end) break;
        p = end;
    }
    if (denied && (last == ENOENT || last == ENOTDIR)) last = EACCES;
    child_fail(pipe_fd, last == ENOENT || last == ENOTDIR ? 127 : 126, "exec %s", prog, last);
}

/* OOM kills show up in the kernel log; /dev/kmsg gives one record per read. */
static void check_kmsg(int fd) {
    char rec[1024];
    for (;;) {
        ssize_t n = read(fd, rec, sizeof rec - 1);
        if (n < 0 && errno == EPIPE) continue; /* records overwritten: keep reading */
        if (n <= 0) return;
        rec[n] = '\0';
        if (strstr(rec, "Killed process")) event_oom();
    }
}

static void arm(int timer_fd, int ms) {
    struct itimerspec t = {.it_value = {ms / 1000, (long)(ms % 1000) * 1000000L}};
    if (ms == 0) t.it_value.tv_nsec = 1; /* zero would disarm */
    timerfd_settime(timer_fd, 0, &t, NULL);
}

int run_process(const struct init_config *c, const struct user_ids *ids, int exec_listen_fd) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) {
        sigaddset(&set, forwarded[i]);
        /* PID 1 never receives signals left at SIG_DFL. */
        signal(forwarded[i], noop);
    }
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    int timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    int kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (kmsg_fd >= 0) lseek(kmsg_fd, 0, SEEK_END);

    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        event_error("cannot create a pipe", 1);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        char m[128];
        snprintf(m, sizeof m, "fork: %s", strerror(errno));
        event_error(m, 1);
        return -1;
    }
    if (pid == 0) child(c, ids, pipe_fds[1]);
    close(pipe_fds[1]);
    struct exec_failure failure;
    ssize_t got;
    while ((got = read(pipe_fds[0], &failure, sizeof failure)) < 0 && errno == EINTR) {}
    close(pipe_fds[0]);
    bool started = got == 0;
    if (started) event_started(pid);
    else {
        failure.message[sizeof failure.message - 1] = '\0';
        event_error(got == (ssize_t)sizeof failure ? failure.message : "the process failed before exec",
                    got == (ssize_t)sizeof failure ? failure.exit_code : 1);
    }

    int status = 0;
    bool commands_open = events_fd() >= 0;
    int stop_timeout_ms = c->stop_timeout_ms;
    for (bool done = false; !done;) {
        struct pollfd fds[5] = {{sig_fd, POLLIN, 0}, {timer_fd, POLLIN, 0},
                                {kmsg_fd, POLLIN, 0}, {commands_open ? events_fd() : -1, POLLIN, 0},
                                {started ? exec_listen_fd : -1, POLLIN, 0}};
        if (poll(fds, 5, -1) < 0 && errno != EINTR) break;
        if (fds[4].revents) exec_accept(exec_listen_fd, c);
        if (fds[0].revents) {
            struct signalfd_siginfo si;
            while (read(sig_fd, &si, sizeof si) == sizeof si) {
                if ((int)si.ssi_signo != SIGCHLD && started) kill(pid, (int)si.ssi_signo);
            }
            int st;
            pid_t r;
            while ((r = waitpid(-1, &st, WNOHANG)) > 0)
                if (r == pid) { status = st; done = true; }
        }
        if (fds[1].revents) {
            uint64_t expirations;
            if (read(timer_fd, &expirations, sizeof expirations) > 0) {
                say("the process outlived the stop timeout of %d ms: SIGKILL", stop_timeout_ms);
                kill(pid, SIGKILL);
            }
        }
        if (fds[2].revents) check_kmsg(kmsg_fd);
        if (fds[3].revents) {
            struct command cmd;
            int r;
            while ((r = events_read_command(&cmd)) == 1) {
                if (cmd.kind == CMD_STOP) {
                    stop_timeout_ms = cmd.timeout_ms >= 0 ? cmd.timeout_ms : c->stop_timeout_ms;
                    kill(pid, cmd.signal ? cmd.signal : c->stop_signal);
                    arm(timer_fd, stop_timeout_ms);
                } else {
                    kill(pid, cmd.signal);
                }
            }
            if (r < 0) commands_open = false;
        }
    }
    if (started) event_exited(status);
    return started ? status : -1;
}
