#include "init.h"

#include "json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static int channel = -1;
static char inbox[4096];
static size_t inbox_len;

void say(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dprintf(STDERR_FILENO, "flick-init: %s\n", line);
}

void events_connect(int port) {
    if (port <= 0) return;
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST,
                               .svm_port = (unsigned)port};
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        say("cannot connect to the host on vsock port %d: %s (events go to the console only)", port,
            strerror(errno));
        if (fd >= 0) close(fd);
        return;
    }
    channel = fd;
}

int events_fd(void) { return channel; }

/* Events go to the host over vsock. The console gets them only when there is no channel, or
 * when they say something went wrong: the console is the program's output. */
static void send_line(const char *json, int on_console) {
    if (on_console || channel < 0) say("%s", json);
    if (channel < 0) return;
    char line[1200];
    int n = snprintf(line, sizeof line, "%s\n", json);
    for (int off = 0; off < n;) {
        ssize_t w = write(channel, line + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { say("lost the vsock channel: %s", strerror(errno)); close(channel); channel = -1; return; }
        off += (int)w;
    }
}

void event_started(pid_t pid) {
    char j[64];
    snprintf(j, sizeof j, "{\"event\":\"started\",\"pid\":%d}", (int)pid);
    send_line(j, 0);
}

void event_exited(int status) {
    char j[64];
    if (WIFSIGNALED(status)) snprintf(j, sizeof j, "{\"event\":\"exited\",\"signal\":%d}", WTERMSIG(status));
    else snprintf(j, sizeof j, "{\"event\":\"exited\",\"exit_code\":%d}", WEXITSTATUS(status));
    send_line(j, 0);
}

void event_oom(void) { send_line("{\"event\":\"oom\"}", 1); }

void event_error(const char *message, int exit_code) {
    char escaped[900];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)message; *p && n + 7 < sizeof escaped; p++) {
        if (*p == '"' || *p == '\\') { escaped[n++] = '\\'; escaped[n++] = (char)*p; }
        else if (*p < 0x20) n += (size_t)snprintf(escaped + n, sizeof escaped - n, "\\u%04x", *p);
        else escaped[n++] = (char)*p;
    }
    escaped[n] = '\0';
    char j[1024];
    snprintf(j, sizeof j, "{\"event\":\"error\",\"message\":\"%s\",\"exit_code\":%d}", escaped, exit_code);
    send_line(j, 1);
}

static int parse_command(const char *line, size_t len, struct command *cmd) {
    char err[128];
    struct json_value *v = json_parse(line, len, err, sizeof err);
    const struct json_value *name = json_get(v, "command");
    int ok = 0;
    if (name && name->type == JSON_STRING && strcmp(name->string, "stop") == 0) {
        const struct json_value *sig = json_get(v, "signal"), *ms = json_get(v, "timeout_ms");
        cmd->kind = CMD_STOP;
        cmd->signal = 0;
        cmd->timeout_ms = -1;
        ok = 1;
        if (sig) {
            ok = sig->type == JSON_NUMBER && sig->integral && sig->number >= 1 && sig->number <= 64;
            cmd->signal = ok ? (int)sig->number : 0;
        }
        if (ms && ok) {
            ok = ms->type == JSON_NUMBER && ms->integral && ms->number >= 0 && ms->number <= 86400000;
            cmd->timeout_ms = ok ? (int)ms->number : -1;
        }
    } else if (name && name->type == JSON_STRING && strcmp(name->string, "signal") == 0) {
        const struct json_value *sig = json_get(v, "signal");
        if (sig && sig->type == JSON_NUMBER && sig->integral && sig->number >= 1 && sig->number <= 64) {
            cmd->kind = CMD_SIGNAL;
            cmd->signal = (int)sig->number;
            ok = 1;
        }
    }
    if (!ok) say("ignoring a command from the host: %.*s%s%s", (int)len, line, v ? "" : ": ", v ? "" : err);
    json_free(v);
    return ok;
}

int events_read_command(struct command *cmd) {
    for (;;) {
        char *nl = memchr(inbox, '\n', inbox_len);
        if (nl) {
            size_t len = (size_t)(nl - inbox);
            int ok = parse_command(inbox, len, cmd);
            memmove(inbox, nl + 1, inbox_len - len - 1);
            inbox_len -= len + 1;
            if (ok) return 1;
            continue;
        }
        if (channel < 0) return -1;
        if (inbox_len == sizeof inbox) {
            say("a command from the host is longer than %zu bytes; dropping it", sizeof inbox);
            inbox_len = 0;
        }
        ssize_t n = recv(channel, inbox + inbox_len, sizeof inbox - inbox_len, MSG_DONTWAIT);
        if (n > 0) { inbox_len += (size_t)n; continue; }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
        return -1; /* closed: the host will not command any more; events still try to go out */
    }
}
