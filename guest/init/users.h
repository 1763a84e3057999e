/* The process's user: OCI "user" strings resolved against the rootfs's passwd and group files. */
#ifndef FLICK_INIT_USERS_H
#define FLICK_INIT_USERS_H

#include <stddef.h>
#include <sys/types.h>

#define USER_MAX_GROUPS 64

struct user_ids {
    uid_t uid;
    gid_t gid;
    gid_t groups[USER_MAX_GROUPS]; /* supplementary, primary first */
    size_t n_groups;
    char home[256];                /* "/" when the user has no passwd entry */
};

/* spec: "", "name", "uid", "name:group", "uid:gid" (group by name or number). A name must
 * exist in passwd_path (group names in group_path); a number need not. Supplementary groups are
 * the groups of group_path listing the user's name. Returns -1 with a reason in err. */
int resolve_user(const char *spec, const char *passwd_path, const char *group_path,
                 struct user_ids *out, char *err, size_t err_len);

#endif
