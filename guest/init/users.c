#include "users.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Splits a colon-separated line in place into at most max fields; returns the count. */
static size_t split_fields(char *line, char **fields, size_t max) {
    size_t n = 0;
    line[strcspn(line, "\n")] = '\0';
    while (n < max) {
        fields[n++] = line;
        char *colon = strchr(line, ':');
        if (!colon) break;
        *colon = '\0';
        line = colon + 1;
    }
    return n;
}

/* A decimal id: digits only, below 2^32-1 (which means "no id"). */
static bool parse_id(const char *s, unsigned long *out) {
    if (!*s) return false;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9') return false;
    errno = 0;
    unsigned long v = strtoul(s, NULL, 10);
    if (errno || v >= 0xFFFFFFFFul) return false;
    *out = v;
    return true;
}

struct passwd_entry {
    bool found;
    char name[64];
    unsigned long uid, gid;
    char home[256];
};

/* Finds the passwd line whose name (by_name) or uid matches. A missing file finds nothing. */
static void find_passwd(const char *path, const char *name, unsigned long uid, bool by_name,
                        struct passwd_entry *out) {
    out->found = false;
    FILE *f = fopen(path, "re");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *fl[7];
        unsigned long u, g;
        if (split_fields(line, fl, 7) < 7 || !parse_id(fl[2], &u) || !parse_id(fl[3], &g)) continue;
        if (by_name ? strcmp(fl[0], name) != 0 : u != uid) continue;
        out->found = true;
        snprintf(out->name, sizeof out->name, "%s", fl[0]);
        out->uid = u;
        out->gid = g;
        snprintf(out->home, sizeof out->home, "%s", fl[5][0] ? fl[5] : "/");
        break;
    }
    fclose(f);
}

static bool has_group(const struct user_ids *ids, gid_t g) {
    for (size_t i = 0; i < ids->n_groups; i++)
        if (ids->groups[i] == g) return true;
    return false;
}

/* Resolves a group name to its gid, and collects the groups listing `member`. */
static int scan_groups(const char *path, const char *group_name, unsigned long *gid_out,
                       const char *member, struct user_ids *ids) {
    int found = 0;
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char *fl[4];
        unsigned long g;
        if (split_fields(line, fl, 4) < 4 || !parse_id(fl[2], &g)) continue;
        if (group_name && !found && strcmp(fl[0], group_name) == 0) {
            *gid_out = g;
            found = 1;
        }
        if (!member) continue;
        for (char *save = NULL, *m = strtok_r(fl[3], ",", &save); m; m = strtok_r(NULL, ",", &save)) {
            if (strcmp(m, member) == 0 && !has_group(ids, (gid_t)g) && ids->n_groups < USER_MAX_GROUPS)
                ids->groups[ids->n_groups++] = (gid_t)g;
        }
    }
    fclose(f);
    return found;
}

int resolve_user(const char *spec, const char *passwd_path, const char *group_path,
                 struct user_ids *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    char user[256], group[256] = "";
    if (snprintf(user, sizeof user, "%s", spec) >= (int)sizeof user) {
        snprintf(err, err_len, "user \"%s\" is too long", spec);
        return -1;
    }
    char *colon = strchr(user, ':');
    bool explicit_group = colon != NULL;
    if (colon) {
        *colon = '\0';
        snprintf(group, sizeof group, "%s", colon + 1);
        if (!group[0]) {
            snprintf(err, err_len, "user \"%s\": empty group", spec);
            return -1;
        }
    }
    if (!user[0]) {
        if (explicit_group) {
            snprintf(err, err_len, "user \"%s\": empty user", spec);
            return -1;
        }
        snprintf(user, sizeof user, "0");
    }

    struct passwd_entry pw;
    unsigned long id;
    if (parse_id(user, &id)) {
        find_passwd(passwd_path, NULL, id, false, &pw);
        out->uid = (uid_t)id;
        out->gid = pw.found ? (gid_t)pw.gid : 0;
    } else {
        find_passwd(passwd_path, user, 0, true, &pw);
        if (!pw.found) {
            snprintf(err, err_len, "user \"%s\" not found in %s", user, passwd_path);
            return -1;
        }
        out->uid = (uid_t)pw.uid;
        out->gid = (gid_t)pw.gid;
    }
    snprintf(out->home, sizeof out->home, "%s", pw.found ? pw.home : "/");

    if (explicit_group) {
        unsigned long gid;
        if (parse_id(group, &gid)) out->gid = (gid_t)gid;
        else if (scan_groups(group_path, group, &gid, NULL, out)) out->gid = (gid_t)gid;
        else {
            snprintf(err, err_len, "group \"%s\" not found in %s", group, group_path);
            return -1;
        }
    }
    out->groups[out->n_groups++] = out->gid;
    if (pw.found) scan_groups(group_path, NULL, NULL, pw.name, out);
    return 0;
}
