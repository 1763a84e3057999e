#include "init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define NEWROOT "/newroot"

static int mount_one(const char *src, const char *target, const char *type, unsigned long flags,
                     const char *data) {
    mkdir(target, 0755);
    if (mount(src, target, type, flags, data) != 0 && errno != EBUSY) {
        say("mount %s on %s: %s", type, target, strerror(errno));
        return -1;
    }
    return 0;
}

int mount_early(void) {
    int rc = 0;
    rc |= mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    rc |= mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    rc |= mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    rc |= mount_one("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620");
    rc |= mount_one("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    rc |= mount_one("run", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    unlink("/dev/ptmx");
    symlink("pts/ptmx", "/dev/ptmx");
    return rc;
}

int load_modules(const char *list_path, char *err, size_t err_len) {
    FILE *list = fopen(list_path, "re");
    if (!list) return 0; /* everything built in */
    struct utsname u;
    uname(&u);
    char line[512];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, list)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        char path[768];
        snprintf(path, sizeof path, "/lib/modules/%s/%s", u.release, line);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)) {
            snprintf(err, err_len, "load module %s: %s", path, strerror(errno));
            rc = -1;
        }
        if (fd >= 0) close(fd);
    }
    fclose(list);
    return rc;
}

/* "rw,noatime,data=ordered" -> flags MS_NOATIME and data "data=ordered". */
static unsigned long mount_flags(const char *options, char *data, size_t data_len) {
    static const struct { const char *name; unsigned long set, clear; } known[] = {
        {"ro", MS_RDONLY, 0}, {"rw", 0, MS_RDONLY}, {"nosuid", MS_NOSUID, 0}, {"nodev", MS_NODEV, 0},
        {"noexec", MS_NOEXEC, 0}, {"noatime", MS_NOATIME, 0}, {"relatime", MS_RELATIME, 0},
        {"sync", MS_SYNCHRONOUS, 0}, {"suid", 0, MS_NOSUID}, {"dev", 0, MS_NODEV}, {"exec", 0, MS_NOEXEC},
    };
    unsigned long flags = 0;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", options);
    data[0] = '\0';
    for (char *save = NULL, *opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        size_t i;
        for (i = 0; i < sizeof known / sizeof known[0]; i++)
            if (strcmp(opt, known[i].name) == 0) break;
        if (i < sizeof known / sizeof known[0]) {
            flags = (flags | known[i].set) & ~known[i].clear;
        } else {
            size_t used = strlen(data);
            snprintf(data + used, data_len - used, "%s%s", used ? "," : "", opt);
        }
    }
    return flags;
}

static int wait_for(const char *device, int timeout_ms) {
    struct stat st;
    struct timespec tick = {0, 5 * 1000 * 1000};
    for (int waited = 0; stat(device, &st) != 0; waited += 5) {
        if (waited >= timeout_ms) return -1;
        nanosleep(&tick, NULL);
    }
    return 0;
}

/* ext4's online resize (fs/ext4/ext4.h; not in the kernel's uapi headers). */
#define EXT4_IOC_RESIZE_FS _IOW('f', 16, uint64_t)

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* An ext4 file system smaller than its device grows to fill it, mounted, as resize2fs would:
 * a volume extended while its machine was stopped. Its size is read from the superblock, so
 * one that already fills its device costs no resize (and no kernel message). */
static void grow_to_device(const struct mount_spec *m, const char *target) {
    unsigned char sb[1024];
    uint64_t bytes = 0;
    int dev = open(m->device, O_RDONLY | O_CLOEXEC);
    if (dev < 0) return;
    const int ok = ioctl(dev, BLKGETSIZE64, &bytes) == 0 && pread(dev, sb, sizeof sb, 1024) == (ssize_t)sizeof sb;
    close(dev);
    if (!ok || sb[0x38] != 0x53 || sb[0x39] != 0xef || le32(sb + 24) > 6) return;  /* not ext4 */
    const uint64_t block = 1024ull << le32(sb + 24);
    const int is_64bit = (le32(sb + 0x60) & 0x80) != 0;  /* INCOMPAT_64BIT */
    const uint64_t have = le32(sb + 4) | (is_64bit ? (uint64_t)le32(sb + 0x150) << 32 : 0);
    uint64_t want = bytes / block;
    if (!is_64bit && want > UINT32_MAX) want = UINT32_MAX;
    if (want <= have) return;
    int dir = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0 || ioctl(dir, EXT4_IOC_RESIZE_FS, &want) != 0)
        say("growing %s on %s to its device's %llu bytes: %s", m->device, m->path ? m->path : "/",
            (unsigned long long)bytes, strerror(errno));
    if (dir >= 0) close(dir);
}

static int mount_device(const struct mount_spec *m, const char *target, char *err, size_t err_len) {
    if (wait_for(m->device, 10000) != 0) {
        snprintf(err, err_len, "device %s did not appear within 10 s", m->device);
        return -1;
    }
    char data[512];
    unsigned long flags = mount_flags(m->options, data, sizeof data);
    if (mount(m->device, target, m->fstype, flags, data[0] ? data : NULL) != 0) {
        snprintf(err, err_len, "mount %s (%s, \"%s\") on %s: %s", m->device, m->fstype, m->options, target,
                 strerror(errno));
        return -1;
    }
    if (strcmp(m->fstype, "ext4") == 0 && !(flags & MS_RDONLY)) grow_to_device(m, target);
    return 0;
}

/* Creates every missing directory of `path` (mkdir -p). */
static int make_dirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Frees the initramfs's memory: removes everything on the root device but not below mounts. */
static void remove_tree(int dirfd, dev_t rootdev) {
    DIR *d = fdopendir(dirfd);
    if (!d) { close(dirfd); return; }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        struct stat st;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != rootdev) continue;
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) remove_tree(sub, rootdev);
            unlinkat(dirfd, e->d_name, AT_REMOVEDIR);
        } else {
            unlinkat(dirfd, e->d_name, 0);
        }
    }
    closedir(d);
}

int mount_root_and_switch(const struct init_config *c, char *err, size_t err_len) {
    mkdir(NEWROOT, 0755);
    if (mount_device(&c->root, NEWROOT, err, err_len) != 0) return -1;
    for (size_t i = 0; i < c->n_mounts; i++) {
        char target[4096];
        snprintf(target, sizeof target, NEWROOT "%s", c->mounts[i].path);
        if (make_dirs(target) != 0) {
            snprintf(err, err_len, "create mount point %s: %s", c->mounts[i].path, strerror(errno));
            return -1;
        }
        if (mount_device(&c->mounts[i], target, err, err_len) != 0) return -1;
    }
    static const char *const moved[] = {"/proc", "/sys", "/dev", "/run"};
    for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++) {
        char target[64];
        snprintf(target, sizeof target, NEWROOT "%s", moved[i]);
        mkdir(target, 0755);
        if (mount(moved[i], target, NULL, MS_MOVE, NULL) != 0) {
            snprintf(err, err_len, "move %s into the root filesystem: %s", moved[i], strerror(errno));
            return -1;
        }
    }
    struct stat st;
    int old = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (old >= 0 && fstat(old, &st) == 0) remove_tree(old, st.st_dev);
    else if (old >= 0) close(old);
    /* switch_root: the initramfs cannot be unmounted (pivot_root refuses it), so mount over it. */
    if (chdir(NEWROOT) != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 || chdir("/") != 0) {
        snprintf(err, err_len, "switch to the root filesystem: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void write_file(const char *path, const char *text, const char *mode) {
    FILE *f = fopen(path, mode);
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) say("cannot write %s: %s", path, strerror(errno));
}

char *carry_read(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    char *buf = malloc(CARRY_MAX_BYTES + 1);
    size_t len = 0;
    ssize_t n = 0;
    while (buf && len < CARRY_MAX_BYTES && (n = read(fd, buf + len, CARRY_MAX_BYTES - len)) > 0) len += (size_t)n;
    close(fd);
    if (!buf || n < 0) {
        say("cannot read %s", path);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

void carry_write(const char *path, const char *text) {
    if (!text) return;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (make_dirs(dir) != 0) say("cannot create %s: %s", dir, strerror(errno));
    }
    /* Readable by the machine's programs whatever user they run as; replaced, never appended. */
    unlink(path);
    write_file(path, text, "we");
    chmod(path, 0644);
}

void write_etc_files(const struct init_config *c) {
    char buf[8192];
    size_t n = 0;
    if (c->hostname) {
        if (sethostname(c->hostname, strlen(c->hostname)) != 0) say("sethostname: %s", strerror(errno));
        snprintf(buf, sizeof buf, "%s\n", c->hostname);
        write_file("/etc/hostname", buf, "we");
    }
    n += (size_t)snprintf(buf + n, sizeof buf - n, "127.0.0.1\tlocalhost%s%s\n::1\tlocalhost ip6-localhost ip6-loopback\n",
                          c->hostname ? " " : "", c->hostname ? c->hostname : "");
    for (size_t i = 0; i < c->n_hosts && n < sizeof buf; i++) {
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s", c->hosts[i].address);
        for (char **name = c->hosts[i].names; *name && n < sizeof buf; name++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, " %s", *name);
        if (n < sizeof buf) n += (size_t)snprintf(buf + n, sizeof buf - n, "\n");
    }
    write_file("/etc/hosts", buf, "we");
    if (c->dns && c->dns[0]) {
        n = 0;
        for (char **s = c->dns; *s && n < sizeof buf; s++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "nameserver %s\n", *s);
        unlink("/etc/resolv.conf"); /* images often ship it as a dangling symlink */
        write_file("/etc/resolv.conf", buf, "we");
    }
}

void unmount_all(const struct init_config *c) {
    sync();
    for (size_t i = c->n_mounts; i-- > 0;)
        if (umount2(c->mounts[i].path, 0) != 0 && umount2(c->mounts[i].path, MNT_DETACH) != 0)
            say("unmount %s: %s", c->mounts[i].path, strerror(errno));
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL) != 0 && errno != EROFS)
        say("remount / read-only: %s", strerror(errno));
    sync();
}
