/* The exec agent: runs commands in the machine for the host (docs/exec-protocol.md). PID 1
 * only accepts and forks; everything a host sends is read and parsed in the session process,
 * so no request, however malformed, can take PID 1 down. */
#include "init.h"

#include "exec.h"
#include "processes.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define STDIN_BUFFER (256 * 1024) /* stdin held for a command that is not reading it */
#define REQUEST_WAIT_S 10         /* for the request frame, once connected */

int exec_listen(void) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = EXEC_PORT};
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 16) != 0) {
        say("exec: cannot listen on vsock port %d: %s (no exec into this machine)", EXEC_PORT, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_frame(int fd, int type, const void *data, size_t len) {
    unsigned char h[EXEC_FRAME_HEADER];
    exec_frame_header(h, type, (uint32_t)len);
    return send_all(fd, h, sizeof h) == 0 && send_all(fd, data, len) == 0 ? 0 : -1;
}

static int recv_all(int fd, void *data, size_t len) {
    char *p = data;
    while (len) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Half-closes and waits (bounded) for the host to close, so the last frame is delivered. */
static _Noreturn void session_end(int conn) {
    if (shutdown(conn, SHUT_WR) == 0) {
        char buf[256];
        struct pollfd p = {conn, POLLIN, 0};
        while (poll(&p, 1, 2000) > 0 && read(conn, buf, sizeof buf) > 0) {}
    }
    _exit(0);
}

static _Noreturn void refuse(int conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static _Noreturn void refuse(int conn, const char *fmt, ...) {
    char m[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    send_frame(conn, EXEC_ERROR, m, n < 0 ? 0 : (size_t)n < sizeof m ? (size_t)n : sizeof m - 1);
    session_end(conn);
}

static void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Forwards what the command wrote; returns -1 when the host is gone. Closes *fd at its end. */
static int forward_output(int conn, int *fd, int type) {
    static char buf[EXEC_MAX_PAYLOAD];
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n > 0) return send_frame(conn, type, buf, (size_t)n);
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        close(*fd);
        *fd = -1;
    }
    return 0;
}

_Static_assert(PROCESS_JSON_MAX <= EXEC_MAX_PAYLOAD, "a process must fit in a frame");

static int send_process(void *conn, const char *json, size_t len) {
    return send_frame(*(int *)conn, EXEC_PROCESS, json, len);
}

/* A ps request: a frame per process, then the end (nothing runs). */
static _Noreturn void list_processes(int conn) {
    if (processes_list("/proc", getpid(), send_process, &conn) == 0) send_frame(conn, EXEC_PROCESS_END, NULL, 0);
    session_end(conn);
}

struct session {
    int conn;
    pid_t pid;
    int in_fd, out_fd, err_fd;
    char inbox[EXEC_FRAME_HEADER + EXEC_MAX_PAYLOAD];
    size_t inbox_len;
    char *stdin_buf;
    size_t stdin_len;
    int stdin_eof;
    int host_gone;
    int tty_fd; /* the terminal's master side, or -1 */
};

static void kill_command(struct session *s) { kill(-s->pid, SIGKILL); }

/* Handles the complete frames in the inbox. A frame the host may not send ends the session. */
static void host_frames(struct session *s) {
    size_t off = 0;
    while (s->inbox_len - off >= EXEC_FRAME_HEADER) {
        const unsigned char *h = (const unsigned char *)s->inbox + off;
        uint32_t len = exec_frame_length(h);
        int type = h[0];
        if (len > EXEC_MAX_PAYLOAD) {
            kill_command(s);
            refuse(s->conn, "exec: a frame of %u bytes is larger than %d", len, EXEC_MAX_PAYLOAD);
        }
        if (s->inbox_len - off < EXEC_FRAME_HEADER + len) break;
        const char *payload = s->inbox + off + EXEC_FRAME_HEADER;
        if (type == EXEC_STDIN && !s->stdin_eof) {
            if (s->in_fd >= 0) { /* else the command closed its stdin: drop it */
                memcpy(s->stdin_buf + s->stdin_len, payload, len);
                s->stdin_len += len;
            }
        } else if (type == EXEC_STDIN_EOF) {
            s->stdin_eof = s->tty_fd < 0; /* a terminal stays open: the shell's exit ends it */
        } else if (type == EXEC_RESIZE && len == 4) {
            const unsigned char *p = (const unsigned char *)payload;
            struct winsize ws = {.ws_row = (unsigned short)(p[0] << 8 | p[1]), .ws_col = (unsigned short)(p[2] << 8 | p[3])};
            if (s->tty_fd >= 0) ioctl(s->tty_fd, TIOCSWINSZ, &ws); /* the kernel sends SIGWINCH */
        } else if (type == EXEC_KILL) {
            kill_command(s);
        } else {
            kill_command(s);
            refuse(s->conn, "exec: unexpected frame of type %d", type);
        }
        off += EXEC_FRAME_HEADER + len;
    }
    memmove(s->inbox, s->inbox + off, s->inbox_len - off);
    s->inbox_len -= off;
    if (s->stdin_eof && s->stdin_len == 0 && s->in_fd >= 0) {
        close(s->in_fd);
        s->in_fd = -1;
    }
}

static void feed_stdin(struct session *s) {
    ssize_t n = write(s->in_fd, s->stdin_buf, s->stdin_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0) { /* the command closed its stdin */
        close(s->in_fd);
        s->in_fd = -1;
        s->stdin_len = 0;
        return;
    }
    memmove(s->stdin_buf, s->stdin_buf + n, s->stdin_len - (size_t)n);
    s->stdin_len -= (size_t)n;
    if (s->stdin_eof && s->stdin_len == 0) {
        close(s->in_fd);
        s->in_fd = -1;
    }
}

static void drain(struct session *s, int fd, int type) {
    static char buf[EXEC_MAX_PAYLOAD];
    ssize_t n;
    while (fd >= 0 && !s->host_gone && (n = read(fd, buf, sizeof buf)) > 0)
        if (send_frame(s->conn, type, buf, (size_t)n) != 0) s->host_gone = 1;
}

/* Pumps stdin, stdout and stderr until the command has exited; returns its wait status. */
static int pump(struct session *s, int sig_fd) {
    int status = 0;
    for (bool exited = false; !exited;) {
        /* Room for a whole frame in the inbox and its stdin in the buffer, or the host waits. */
        bool room = s->stdin_len + EXEC_MAX_PAYLOAD <= STDIN_BUFFER;
        struct pollfd p[5] = {{s->host_gone ? -1 : s->conn, room ? POLLIN : 0, 0},
                              {s->out_fd, POLLIN, 0}, {s->err_fd, POLLIN, 0},
                              {s->stdin_len ? s->in_fd : -1, POLLOUT, 0}, {sig_fd, POLLIN, 0}};
        if (poll(p, 5, -1) < 0) {
            if (errno == EINTR) continue;
            kill_command(s);
            waitpid(s->pid, &status, 0);
            s->host_gone = 1;
            return status;
        }
        if (p[0].revents && !room) { /* POLLHUP or POLLERR: the host went away */
            s->host_gone = 1;
            kill_command(s);
        } else if (p[0].revents) {
            ssize_t n = recv(s->conn, s->inbox + s->inbox_len, sizeof s->inbox - s->inbox_len, 0);
            if (n > 0) {
                s->inbox_len += (size_t)n;
                host_frames(s);
            } else if (n == 0 || errno != EINTR) { /* the host went away: nothing to run for */
                s->host_gone = 1;
                kill_command(s);
            }
        }
        if (p[1].revents && forward_output(s->conn, &s->out_fd, EXEC_STDOUT) != 0) s->host_gone = 1, kill_command(s);
        if (p[2].revents && forward_output(s->conn, &s->err_fd, EXEC_STDERR) != 0) s->host_gone = 1, kill_command(s);
        if (p[3].revents) feed_stdin(s);
        if (p[4].revents) {
            struct signalfd_siginfo si;
            while (read(sig_fd, &si, sizeof si) == sizeof si) {}
            exited = waitpid(s->pid, &status, WNOHANG) == s->pid;
        }
    }
    /* What the command wrote before it ended; a background child keeping the pipes open does
     * not hold the exit back. */
    drain(s, s->out_fd, EXEC_STDOUT);
    drain(s, s->err_fd, EXEC_STDERR);
    return status;
}

static _Noreturn void session(int conn, const struct init_config *c) {
    /* SIGCHLD stays blocked (as in PID 1) and is read from a signalfd. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    int sig_fd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);

    struct timeval limit = {REQUEST_WAIT_S, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    unsigned char h[EXEC_FRAME_HEADER];
    if (recv_all(conn, h, sizeof h) != 0) refuse(conn, "exec: no request within %d s", REQUEST_WAIT_S);
    uint32_t len = exec_frame_length(h);
    if (h[0] == EXEC_PS && len == 0) list_processes(conn);
    if (h[0] != EXEC_REQUEST) refuse(conn, "exec: the first frame must be a request, not type %d", h[0]);
    if (len > EXEC_MAX_PAYLOAD) refuse(conn, "exec: a request of %u bytes is larger than %d", len, EXEC_MAX_PAYLOAD);
    char *text = malloc(len + 1);
    if (!text) refuse(conn, "exec: out of memory");
    if (recv_all(conn, text, len) != 0) refuse(conn, "exec: the request was cut short");
    struct timeval none = {0, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);

    struct exec_request req;
    char err[512];
    if (exec_request_parse(text, len, &req, err, sizeof err) != 0) refuse(conn, "%s", err);
    free(text);
    const char *user = req.user ? req.user : c->user;
    const char *cwd = req.cwd ? req.cwd : c->cwd;
    struct user_ids ids;
    if (resolve_user(user, "/etc/passwd", "/etc/group", &ids, err, sizeof err) != 0) refuse(conn, "exec: %s", err);
    char **env = exec_merge_env(c->env, req.env);
    struct session *s = calloc(1, sizeof *s);
    char *stdin_buf = malloc(STDIN_BUFFER);
    if (!env || !s || !stdin_buf) refuse(conn, "exec: out of memory");

    int in[2], out[2], errp[2], failure[2];
    int tty = -1;
    char tty_name[64];
    if (req.tty) { /* one terminal instead of three pipes: its master is in[1] and out[0] */
        tty = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (tty < 0 || grantpt(tty) || unlockpt(tty) || ptsname_r(tty, tty_name, sizeof tty_name))
            refuse(conn, "exec: cannot allocate a terminal: %s", strerror(errno));
        struct winsize ws = {.ws_row = (unsigned short)req.rows, .ws_col = (unsigned short)req.cols};
        if (req.rows && req.cols) ioctl(tty, TIOCSWINSZ, &ws);
        in[0] = out[1] = errp[1] = -1;
        in[1] = fcntl(tty, F_DUPFD_CLOEXEC, 3);
        out[0] = fcntl(tty, F_DUPFD_CLOEXEC, 3);
        errp[0] = -1;
        if (pipe2(failure, O_CLOEXEC)) refuse(conn, "exec: pipe: %s", strerror(errno));
    } else if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(errp, O_CLOEXEC) || pipe2(failure, O_CLOEXEC)) {
        refuse(conn, "exec: pipe: %s", strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) refuse(conn, "exec: fork: %s", strerror(errno));
    if (pid == 0) {
        child_signals_default();
        setsid(); /* its own process group, which a kill ends as a whole */
        if (tty >= 0) { /* the terminal becomes its controlling terminal */
            int slave = open(tty_name, O_RDWR);
            if (slave < 0) {
                struct exec_failure e = {.exit_code = 1};
                snprintf(e.message, sizeof e.message, "open %s: %s", tty_name, strerror(errno));
                ssize_t ignored = write(failure[1], &e, sizeof e);
                (void)ignored;
                _exit(1);
            }
            ioctl(slave, TIOCSCTTY, 0);
            in[0] = out[1] = errp[1] = slave;
        }
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(errp[1], 2);
        exec_as(req.argv, env, cwd, user, &ids, failure[1], false);
    }
    if (tty < 0) {
        close(in[0]);
        close(out[1]);
        close(errp[1]);
    }
    close(failure[1]);
    struct exec_failure f;
    ssize_t got;
    while ((got = read(failure[0], &f, sizeof f)) < 0 && errno == EINTR) {}
    close(failure[0]);
    if (got == (ssize_t)sizeof f) { /* it never ran: the reason on stderr, its code as the exit */
        f.message[sizeof f.message - 1] = '\0';
        char line[600];
        int n = snprintf(line, sizeof line, "flick-init: %s\n", f.message);
        send_frame(conn, EXEC_STDERR, line, n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        waitpid(pid, NULL, 0);
        char j[64];
        n = snprintf(j, sizeof j, "{\"exit_code\":%d}", f.exit_code);
        send_frame(conn, EXEC_EXIT, j, (size_t)n);
        session_end(conn);
    }

    *s = (struct session){.conn = conn, .pid = pid, .in_fd = in[1], .out_fd = out[0], .err_fd = errp[0],
                          .stdin_buf = stdin_buf, .tty_fd = tty};
    set_nonblocking(s->in_fd);
    set_nonblocking(s->out_fd);
    if (s->err_fd >= 0) set_nonblocking(s->err_fd);
    int status = pump(s, sig_fd);
    if (s->host_gone) _exit(0);
    char j[64];
    int n = WIFSIGNALED(status) ? snprintf(j, sizeof j, "{\"signal\":%d}", WTERMSIG(status))
                                : snprintf(j, sizeof j, "{\"exit_code\":%d}", WEXITSTATUS(status));
    send_frame(conn, EXEC_EXIT, j, (size_t)n);
    session_end(conn);
}

void exec_accept(int listen_fd, const struct init_config *c) {
    for (;;) {
        int conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) return; /* EAGAIN: all taken */
        pid_t pid = fork();
        if (pid == 0) {
            close(listen_fd);
            if (events_fd() >= 0) close(events_fd());
            session(conn, c);
        }
        if (pid < 0) say("exec: fork: %s", strerror(errno));
        close(conn);
    }
}
