/* Host-side tests of flick-init's pure parts: the JSON parser, the config schema, and user
 * resolution against sample passwd/group files, exec requests, the process list (read from the
 * host's own /proc).
 *   init_unit_test json|config|users|exec|processes */
#include "config.h"
#include "exec.h"
#include "json.h"
#include "processes.h"
#include "users.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

static int failures;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                          \
        }                                                                        \
    } while (0)

static struct json_value *parse(const char *text, char *err) {
    return json_parse(text, strlen(text), err, 128);
}

static void rejects(const char *text, const char *reason_part) {
    char err[128];
    struct json_value *v = parse(text, err);
    if (v || !strstr(err, reason_part)) {
        fprintf(stderr, "json %s: expected an error containing \"%s\", got %s\n", text, reason_part,
                v ? "a value" : err);
        failures++;
    }
    json_free(v);
}

static void test_json(void) {
    char err[128];
    struct json_value *v = parse(" {\"a\": [1, -2.5e3, true, false, null], \"s\": \"x\\n\\u00e9\\ud83d\\ude00\\\"\"} ", err);
    CHECK(v && v->type == JSON_OBJECT);
    const struct json_value *a = json_get(v, "a");
    CHECK(a && a->type == JSON_ARRAY && json_length(a) == 5);
    CHECK(a && a->child->type == JSON_NUMBER && a->child->number == 1 && a->child->integral);
    CHECK(a && a->child->next->number == -2500 && !a->child->next->integral);
    CHECK(a && a->child->next->next->type == JSON_BOOL && a->child->next->next->boolean);
    CHECK(a && !a->child->next->next->next->boolean);
    CHECK(a && a->child->next->next->next->next->type == JSON_NULL);
    const struct json_value *s = json_get(v, "s");
    CHECK(s && strcmp(s->string, "x\n\xc3\xa9\xf0\x9f\x98\x80\"") == 0);
    CHECK(json_get(v, "missing") == NULL);
    json_free(v);

    v = parse("\"caf\xc3\xa9\"", err);
    CHECK(v && strcmp(v->string, "caf\xc3\xa9") == 0);
    json_free(v);

    rejects("", "value expected");
    rejects("{\"a\":1,}", "member name expected");
    rejects("[1,]", "value expected");
    rejects("{'a':1}", "member name expected");
    rejects("01", "trailing");
    rejects("1.", "digit expected");
    rejects("-", "invalid number");
    rejects("NaN", "value expected");
    rejects("tru", "invalid literal");
    rejects("{\"a\":1} x", "trailing");
    rejects("{\"a\":1 /* c */}", "expected");
    rejects("{\"a\":1,\"a\":2}", "duplicate member \"a\"");
    rejects("\"tab\there\"", "control character");
    rejects("\"\\u0000\"", "not allowed");
    rejects("\"\\ud800\"", "unpaired surrogate");
    rejects("\"\\udc00\"", "unpaired surrogate");
    rejects("\"\\x\"", "invalid escape");
    rejects("\"unterminated", "unterminated");
    rejects("\"\xc0\xaf\"", "invalid UTF-8");       /* overlong '/' */
    rejects("\"\xed\xa0\x80\"", "invalid UTF-8");   /* encoded surrogate */
    char deep[80] = "";
    for (int i = 0; i < 33; i++) strcat(deep, "[");
    rejects(deep, "nesting deeper than 32");
    char ok_depth[80] = "";
    for (int i = 0; i < 32; i++) strcat(ok_depth, "[");
    for (int i = 0; i < 32; i++) strcat(ok_depth, "]");
    v = parse(ok_depth, err);
    CHECK(v != NULL);
    json_free(v);
    /* Length-bounded: bytes past len are not looked at. */
    v = json_parse("[1]]]", 3, err, sizeof err);
    CHECK(v && json_length(v) == 1);
    json_free(v);
}

static const char *const doc_example =
    "{\n"
    "  \"hostname\": \"m-3f2a9c\",\n"
    "  \"root\": {\"device\": \"/dev/vda\", \"fstype\": \"ext4\", \"options\": \"rw\"},\n"
    "  \"mounts\": [{\"device\": \"/dev/vdb\", \"path\": \"/data\", \"fstype\": \"ext4\", \"options\": \"rw\"}],\n"
    "  \"process\": {\n"
    "    \"argv\": [\"/bin/sh\", \"-c\", \"echo hi; exit 3\"],\n"
    "    \"env\": [\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\", \"FOO=bar\"],\n"
    "    \"cwd\": \"/\",\n"
    "    \"user\": \"nobody\",\n"
    "    \"terminal\": \"/dev/ttyS1\"\n"
    "  },\n"
    "  \"network\": {\"interface\": \"eth0\", \"address\": \"172.30.0.2/30\", \"gateway\": \"172.30.0.1\",\n"
    "              \"mtu\": 1500, \"dns\": [\"172.30.0.1\"]},\n"
    "  \"hosts\": [{\"address\": \"172.30.0.2\", \"names\": [\"m-3f2a9c\"]}],\n"
    "  \"stop\": {\"signal\": 2, \"timeout_ms\": 5000},\n"
    "  \"vsock\": {\"port\": 10000}\n"
    "}\n";

static void config_rejects(const char *text, const char *reason_part) {
    struct init_config c;
    char err[256];
    if (config_parse(text, strlen(text), &c, err, sizeof err) == 0 || !strstr(err, reason_part)) {
        fprintf(stderr, "config %s: expected an error containing \"%s\", got \"%s\"\n", text, reason_part, err);
        failures++;
    }
}

static void test_config(void) {
    struct init_config c;
    char err[256] = "";
    CHECK(config_parse(doc_example, strlen(doc_example), &c, err, sizeof err) == 0);
    if (err[0]) fprintf(stderr, "doc example: %s\n", err);
    CHECK(c.hostname && strcmp(c.hostname, "m-3f2a9c") == 0);
    CHECK(c.root.device && strcmp(c.root.device, "/dev/vda") == 0 && strcmp(c.root.options, "rw") == 0);
    CHECK(c.n_mounts == 1 && strcmp(c.mounts[0].path, "/data") == 0);
    CHECK(c.argv && strcmp(c.argv[2], "echo hi; exit 3") == 0 && c.argv[3] == NULL);
    CHECK(c.env && strcmp(c.env[1], "FOO=bar") == 0 && c.env[2] == NULL);
    CHECK(c.user && strcmp(c.user, "nobody") == 0);
    CHECK(c.terminal && strcmp(c.terminal, "/dev/ttyS1") == 0);
    CHECK(c.has_network && strcmp(c.ifname, "eth0") == 0 && c.prefix_len == 30 && c.mtu == 1500);
    CHECK(c.address == htonl(0xAC1E0002) && c.has_gateway && c.gateway == htonl(0xAC1E0001));
    CHECK(c.dns && strcmp(c.dns[0], "172.30.0.1") == 0 && c.dns[1] == NULL);
    CHECK(c.n_hosts == 1 && strcmp(c.hosts[0].names[0], "m-3f2a9c") == 0);
    CHECK(c.stop_signal == 2 && c.stop_timeout_ms == 5000 && c.vsock_port == 10000);
    config_free(&c);

    const char *minimal = "{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":[\"app\"]}}";
    CHECK(config_parse(minimal, strlen(minimal), &c, err, sizeof err) == 0);
    CHECK(strcmp(c.root.fstype, "ext4") == 0 && strcmp(c.cwd, "/") == 0 && strcmp(c.user, "") == 0);
    CHECK(strcmp(c.terminal, "/dev/console") == 0);
    CHECK(c.stop_signal == SIGTERM && c.stop_timeout_ms == 10000 && c.vsock_port == 0);
    CHECK(!c.has_network && c.n_mounts == 0 && c.env && c.env[0] == NULL && c.hostname == NULL);
    config_free(&c);

    config_rejects("[]", "must be a JSON object");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":[\"a\"]},", "not valid JSON");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"}}", "\"process\" is required");
    config_rejects("{\"process\":{\"argv\":[\"a\"]}}", "\"root\" is required");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":[]}}", "must not be empty");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":[1]}}", "argv[0] must be a string");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":\"a\"}}", "must be an array");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":[\"a\"],\"cwd\":\"rel\"}}",
                   "cwd must be absolute");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":[\"a\"],\"terminal\":\"/etc/passwd\"}}",
                   "terminal must be under /dev");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":[\"a\"],\"env\":[\"NOEQ\"]}}",
                   "not NAME=VALUE");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":[\"a\"]},\"extra\":1}",
                   "unknown member \"extra\"");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":[\"a\"]},"
                   "\"network\":{\"address\":\"10.0.0.1\"}}", "IPv4 CIDR");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":[\"a\"]},"
                   "\"network\":{\"address\":\"10.0.0.1/33\"}}", "IPv4 CIDR");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":[\"a\"]},"
                   "\"stop\":{\"signal\":2.5}}", "integer in [1, 64]");
    config_rejects("{\"root\":{\"device\":\"/dev/vda\"},\"process\":{\"argv\":[\"a\"]},"
                   "\"mounts\":[{\"device\":\"/dev/vdb\",\"path\":\"data\"}]}", "path must be absolute");

    /* Oversized: rejected by size before parsing, from memory and from a file. */
    size_t big = CONFIG_MAX_BYTES + 1;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    memcpy(huge, minimal, strlen(minimal));
    huge[big] = '\0';
    CHECK(config_parse(huge, big, &c, err, sizeof err) == -1 && strstr(err, "more than"));
    char path[] = "/tmp/flick-init-config-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, huge, big) == (ssize_t)big);
    close(fd);
    CHECK(config_load(path, &c, err, sizeof err) == -1 && strstr(err, "more than"));
    /* Exactly at the limit is fine (whitespace after the value). */
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(write(fd, huge, big - 1) == (ssize_t)(big - 1));
    close(fd);
    CHECK(config_load(path, &c, err, sizeof err) == 0);
    config_free(&c);
    unlink(path);
    free(huge);
    CHECK(config_load("/nonexistent/config.json", &c, err, sizeof err) == -1 && strstr(err, "cannot open"));
}

static const char *const passwd =
    "root:x:0:0:root:/root:/bin/sh\n"
    "# a comment line is skipped\n"
    "broken-line\n"
    "app:x:1000:1000:App:/home/app:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
static const char *const group =
    "root:x:0:\n"
    "audio:x:29:app,other\n"
    "video:x:44:other,app\n"
    "app:x:1000:\n"
    "nogroup:x:65534:\n";

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_users(void) {
    char dir[] = "/tmp/flick-init-users-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char pw[128], gr[128];
    snprintf(pw, sizeof pw, "%s/passwd", dir);
    snprintf(gr, sizeof gr, "%s/group", dir);
    write_text(pw, passwd);
    write_text(gr, group);
    struct user_ids u;
    char err[256];

    CHECK(resolve_user("", pw, gr, &u, err, sizeof err) == 0 && u.uid == 0 && u.gid == 0);
    CHECK(strcmp(u.home, "/root") == 0 && u.n_groups == 1 && u.groups[0] == 0);
    CHECK(resolve_user("nobody", pw, gr, &u, err, sizeof err) == 0 && u.uid == 65534 && u.gid == 65534);
    CHECK(strcmp(u.home, "/nonexistent") == 0);
    CHECK(resolve_user("app", pw, gr, &u, err, sizeof err) == 0 && u.uid == 1000 && u.gid == 1000);
    CHECK(u.n_groups == 3 && u.groups[0] == 1000 && u.groups[1] == 29 && u.groups[2] == 44);
    CHECK(resolve_user("1000", pw, gr, &u, err, sizeof err) == 0 && u.uid == 1000 && u.gid == 1000 && u.n_groups == 3);
    CHECK(resolve_user("4242", pw, gr, &u, err, sizeof err) == 0 && u.uid == 4242 && u.gid == 0);
    CHECK(u.n_groups == 1 && strcmp(u.home, "/") == 0);
    CHECK(resolve_user("app:audio", pw, gr, &u, err, sizeof err) == 0 && u.uid == 1000 && u.gid == 29);
    CHECK(u.groups[0] == 29 && u.n_groups == 2); /* audio once, then video */
    CHECK(resolve_user("app:55", pw, gr, &u, err, sizeof err) == 0 && u.gid == 55);
    CHECK(resolve_user("4242:4343", pw, gr, &u, err, sizeof err) == 0 && u.uid == 4242 && u.gid == 4343);
    CHECK(resolve_user("ghost", pw, gr, &u, err, sizeof err) == -1 && strstr(err, "user \"ghost\" not found"));
    CHECK(resolve_user("app:ghosts", pw, gr, &u, err, sizeof err) == -1 && strstr(err, "group \"ghosts\" not found"));
    CHECK(resolve_user("app:", pw, gr, &u, err, sizeof err) == -1 && strstr(err, "empty group"));
    CHECK(resolve_user(":29", pw, gr, &u, err, sizeof err) == -1 && strstr(err, "empty user"));
    CHECK(resolve_user("4294967295", pw, gr, &u, err, sizeof err) == -1); /* (uid_t)-1 is not a user */
    /* An image without /etc/passwd: numbers work, names do not. */
    CHECK(resolve_user("123:456", "/nonexistent/passwd", "/nonexistent/group", &u, err, sizeof err) == 0 &&
          u.uid == 123 && u.gid == 456);
    CHECK(resolve_user("root", "/nonexistent/passwd", gr, &u, err, sizeof err) == -1);
    unlink(pw);
    unlink(gr);
    rmdir(dir);
}

/* check-config FILE: parses a host-written /flick/config.json as flick-init does. */
static int check_config(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 2; }
    static char text[256 * 1024 + 1];
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    struct init_config c;
    char err[256];
    if (config_parse(text, len, &c, err, sizeof err) != 0) {
        printf("config: %s\n", err);
        return 1;
    }
    config_free(&c);
    printf("config: ok\n");
    return 0;
}

static void exec_rejects(const char *text, const char *reason_part) {
    struct exec_request r;
    char err[256];
    if (exec_request_parse(text, strlen(text), &r, err, sizeof err) == 0 || !strstr(err, reason_part)) {
        fprintf(stderr, "exec request %s: expected an error containing \"%s\", got %s\n", text, reason_part, err);
        failures++;
    }
}

static void test_exec(void) {
    struct exec_request r;
    char err[256];
    const char *full = "{\"cmd\":[\"sh\",\"-c\",\"echo hi\"],\"env\":{\"A\":\"1\",\"B\":\"x=y\"},"
                       "\"user\":\"nobody\",\"workdir\":\"/tmp\",\"tty\":false}";
    CHECK(exec_request_parse(full, strlen(full), &r, err, sizeof err) == 0);
    CHECK(r.argv && !strcmp(r.argv[0], "sh") && !strcmp(r.argv[2], "echo hi") && !r.argv[3]);
    CHECK(r.env && !strcmp(r.env[0], "A=1") && !strcmp(r.env[1], "B=x=y") && !r.env[2]);
    CHECK(r.user && !strcmp(r.user, "nobody"));
    CHECK(r.cwd && !strcmp(r.cwd, "/tmp"));
    exec_request_free(&r);
    const char *bare = "{\"cmd\":[\"true\"]}";
    CHECK(exec_request_parse(bare, strlen(bare), &r, err, sizeof err) == 0);
    CHECK(r.argv && !r.argv[1] && !r.env && !r.user && !r.cwd);
    exec_request_free(&r);

    exec_rejects("", "not valid JSON");
    exec_rejects("{\"cmd\":[\"a\"]", "not valid JSON");
    exec_rejects("[\"true\"]", "must be a JSON object");
    exec_rejects("{}", "\"cmd\" is required");
    exec_rejects("{\"cmd\":[]}", "non-empty array");
    exec_rejects("{\"cmd\":\"true\"}", "non-empty array");
    exec_rejects("{\"cmd\":[\"a\",1]}", "non-empty array");
    exec_rejects("{\"cmd\":[\"\"]}", "cmd[0] is empty");
    exec_rejects("{\"cmd\":[\"a\"],\"env\":{\"A\":1}}", "object of strings");
    exec_rejects("{\"cmd\":[\"a\"],\"env\":{\"A=B\":\"1\"}}", "has '='");
    exec_rejects("{\"cmd\":[\"a\"],\"workdir\":\"tmp\"}", "must be absolute");
    exec_rejects("{\"cmd\":[\"a\"],\"user\":0}", "\"user\" must be a string");
    exec_rejects("{\"cmd\":[\"a\"],\"tty\":1}", "\"tty\" must be a boolean");
    exec_rejects("{\"cmd\":[\"a\"],\"rows\":-1}", "\"rows\" and \"cols\"");
    exec_rejects("{\"cmd\":[\"a\"],\"cols\":1.5}", "\"rows\" and \"cols\"");
    const char *tty = "{\"cmd\":[\"sh\"],\"tty\":true,\"rows\":40,\"cols\":120}";
    CHECK(exec_request_parse(tty, strlen(tty), &r, err, sizeof err) == 0);
    CHECK(r.tty && r.rows == 40 && r.cols == 120);
    exec_request_free(&r);
    exec_rejects("{\"cmd\":[\"a\"],\"stdin\":\"x\"}", "unknown member \"stdin\"");
    exec_rejects("{\"cmd\":[\"a\"],\"cmd\":[\"b\"]}", "duplicate");

    char *base[] = {"PATH=/bin", "HOME=/root", "A=base", NULL};
    char *over[] = {"A=over", "NEW=1", NULL};
    char **env = exec_merge_env(base, over);
    CHECK(env && !strcmp(env[0], "PATH=/bin") && !strcmp(env[1], "HOME=/root") && !strcmp(env[2], "A=over") &&
          !strcmp(env[3], "NEW=1") && !env[4]);
    free(env);
    env = exec_merge_env(base, NULL);
    CHECK(env && !strcmp(env[2], "A=base") && !env[3]);
    free(env);

    unsigned char h[EXEC_FRAME_HEADER];
    exec_frame_header(h, EXEC_STDOUT, 0x01020304u);
    CHECK(h[0] == 1 && h[1] == 1 && h[2] == 2 && h[3] == 3 && h[4] == 4);
    CHECK(exec_frame_length(h) == 0x01020304u);
}

struct listed {
    int count, bad;
    struct json_value *self, *child;
    int self_pid, child_pid;
};

/* Each entry must be a JSON object our own strict parser takes; keeps two of them. */
static int keep_listed(void *ctx, const char *text, size_t len) {
    struct listed *l = ctx;
    char err[128];
    struct json_value *v = json_parse(text, len, err, sizeof err);
    l->count++;
    const struct json_value *pid = v ? json_get(v, "pid") : NULL;
    if (!v || v->type != JSON_OBJECT || !pid || len > PROCESS_JSON_MAX) {
        fprintf(stderr, "processes: a bad entry (%s): %.*s\n", v ? "fields" : err, (int)len, text);
        l->bad++;
    } else if ((int)pid->number == l->self_pid && !l->self) {
        l->self = v;
        return 0;
    } else if ((int)pid->number == l->child_pid && !l->child) {
        l->child = v;
        return 0;
    }
    json_free(v);
    return 0;
}

static void test_processes(void) {
    struct process_stat st;
    const char *line = "42 (a) (b c) S 1 42 42 0 -1 4194560 10 0 0 0 7 3 0 0 20 0 1 0 1234 4096000 250 18446744073709551615";
    CHECK(process_stat_parse(line, strlen(line), &st) == 0);
    CHECK(st.pid == 42 && !strcmp(st.comm, "a) (b c") && st.ppid == 1 && st.flags == 4194560);
    CHECK(st.utime == 7 && st.stime == 3 && st.starttime == 1234 && st.rss == 250);
    CHECK(process_stat_parse(line, 30, &st) != 0);
    CHECK(process_stat_parse("x (y) S 1", 9, &st) != 0);
    CHECK(process_stat_parse("", 0, &st) != 0);

    char out[64];
    const char *raw = "a\"b\\\n\xc3\xa9\xff\xed\xa0\x80";
    size_t n = json_put_string(out, 0, sizeof out, raw, strlen(raw));
    CHECK(n < sizeof out && n == strlen("\"a\\\"b\\\\\\u000a\xc3\xa9??" "??\""));
    CHECK(n < sizeof out && !memcmp(out, "\"a\\\"b\\\\\\u000a\xc3\xa9??" "??\"", n));
    char err[128];
    struct json_value *v = json_parse(out, n, err, sizeof err);
    CHECK(v && v->type == JSON_STRING && !strcmp(v->string, "a\"b\\\n\xc3\xa9??" "??"));
    json_free(v);
    CHECK(json_put_string(out, 0, 8, raw, strlen(raw)) == 8);

    /* The host's own processes: a child in /tmp running `sleep 30`, and this test with a
     * listening TCP socket. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 && listen(s, 1) == 0 &&
          getsockname(s, (struct sockaddr *)&a, &alen) == 0);
    int ready[2];
    CHECK(pipe2(ready, O_CLOEXEC) == 0);
    pid_t child = fork();
    if (child == 0) {
        if (chdir("/tmp") != 0) _exit(1);
        execlp("sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    close(ready[1]);
    char byte;
    CHECK(read(ready[0], &byte, 1) == 0); /* closed by the exec */
    close(ready[0]);
    struct listed l = {.self_pid = getpid(), .child_pid = child};
    CHECK(processes_list("/proc", 0, keep_listed, &l) == 0);
    CHECK(l.bad == 0 && l.count >= 2 && l.self && l.child);
    const struct json_value *c = l.child;
    CHECK(c && !strcmp(json_get(c, "command")->string, "sleep 30") && !strcmp(json_get(c, "directory")->string, "/tmp"));
    CHECK(c && json_get(c, "ppid")->number == getpid() && json_get(c, "rss")->number > 0);
    CHECK(c && json_get(c, "stime")->number > 1.7e9 && json_get(c, "rtime")->number < 60);
    const struct json_value *sockets = l.self ? json_get(l.self, "listen_sockets") : NULL;
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%u", ntohs(a.sin_port));
    CHECK(sockets && json_length(sockets) == 1 && !strcmp(json_get(sockets->child, "proto")->string, "tcp") &&
          !strcmp(json_get(sockets->child, "address")->string, want));
    CHECK(c && json_length(json_get(c, "listen_sockets")) == 0);
    json_free(l.self);
    json_free(l.child);

    /* `skip` leaves a process out. */
    struct listed none = {.self_pid = getpid(), .child_pid = child};
    CHECK(processes_list("/proc", child, keep_listed, &none) == 0 && !none.child);
    json_free(none.self);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(s);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "check-config")) return check_config(argv[2]);
    if (argc != 2) {
        fprintf(stderr, "usage: %s json|config|users|exec|processes | check-config FILE\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "json")) test_json();
    else if (!strcmp(argv[1], "config")) test_config();
    else if (!strcmp(argv[1], "users")) test_users();
    else if (!strcmp(argv[1], "exec")) test_exec();
    else if (!strcmp(argv[1], "processes")) test_processes();
    else return 2;
    printf("%s: %s\n", argv[1], failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
