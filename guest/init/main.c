/* flick-init: PID 1 of every flick machine. The contract with the host is
 * docs/init-protocol.md; the steps below are its boot sequence. */
#include "init.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct init_config config;
static bool switched;

/* Step 8: nothing may outlive the main process; then a clean file system and power off. */
static _Noreturn void power_off(void) {
    kill(-1, SIGKILL);
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 200; i++) {
        errno = 0;
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        if (errno == ECHILD) break;
        nanosleep(&tick, NULL);
    }
    if (switched) unmount_all(&config);
    sync();
    /* The last event must reach the host before the machine disappears: half-close and wait
     * for the host to close its side (bounded). */
    int fd = events_fd();
    if (fd >= 0 && shutdown(fd, SHUT_WR) == 0) {
        char buf[256];
        struct pollfd p = {fd, POLLIN, 0};
        while (poll(&p, 1, 2000) > 0 && read(fd, buf, sizeof buf) > 0) {}
    }
    reboot(RB_POWER_OFF);
    for (;;) pause();
}

static _Noreturn void fail(const char *message, int exit_code) {
    event_error(message, exit_code);
    power_off();
}

int main(void) {
    char err[1024];
    mount_early();
    if (load_modules("/flick/modules", err, sizeof err) != 0) fail(err, 1);
    if (config_load("/flick/config.json", &config, err, sizeof err) != 0) fail(err, 1);
    events_connect(config.vsock_port);
    char *metadata = carry_read("/flick/metadata.json");
    if (mount_root_and_switch(&config, err, sizeof err) != 0) fail(err, 1);
    switched = true;
    write_etc_files(&config);
    carry_write("/flick/metadata.json", metadata);
    free(metadata);
    if (net_configure(&config, err, sizeof err) != 0) fail(err, 1);
    struct user_ids ids;
    if (resolve_user(config.user, "/etc/passwd", "/etc/group", &ids, err, sizeof err) != 0) fail(err, 1);
    int exec_fd = config.vsock_port > 0 ? exec_listen() : -1;
    run_process(&config, &ids, exec_fd);
    power_off();
}
