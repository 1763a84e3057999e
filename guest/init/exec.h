/* The exec agent's wire format and requests (docs/exec-protocol.md): the pure parts, which the
 * host's unit tests build too. */
#ifndef FLICK_INIT_EXEC_H
#define FLICK_INIT_EXEC_H

#include <stddef.h>
#include <stdint.h>

#define EXEC_PORT 10001                 /* the vsock port flick-init listens on */
#define EXEC_FRAME_HEADER 5             /* type (1 byte), payload length (4 bytes, big-endian) */
#define EXEC_MAX_PAYLOAD (64 * 1024)    /* a larger frame is a protocol error, either way */

enum exec_frame_type {
    /* guest -> host */
    EXEC_STDOUT = 1,
    EXEC_STDERR = 2,
    EXEC_EXIT = 3,       /* {"exit_code":N} or {"signal":N}; the last frame */
    EXEC_ERROR = 4,      /* UTF-8 text: the request was refused; the last frame */
    EXEC_PROCESS = 5,    /* ps: one process, a JSON object (processes.h) */
    EXEC_PROCESS_END = 6, /* ps: empty; the last frame */
    /* host -> guest */
    EXEC_REQUEST = 16,   /* JSON, the first frame */
    EXEC_STDIN = 17,
    EXEC_STDIN_EOF = 18,
    EXEC_KILL = 19,      /* SIGKILL to the command's process group */
    EXEC_RESIZE = 20,    /* tty only: rows, cols (2 bytes each, big-endian) */
    EXEC_PS = 21,        /* empty, instead of a request: list the processes */
};

struct exec_request {
    char **argv;  /* NULL-terminated, non-empty */
    char **env;   /* NAME=VALUE overrides of the main program's env, NULL-terminated */
    char *user;   /* NULL: the main program's */
    char *cwd;    /* NULL: the main program's */
    int tty;      /* a terminal (stdout and stderr merged) instead of pipes */
    int rows, cols; /* the terminal's size; 0: the kernel's default */
};

/* Parses and validates the REQUEST frame's JSON. On failure returns -1 with a reason in err. */
int exec_request_parse(const char *text, size_t len, struct exec_request *out, char *err, size_t err_len);
void exec_request_free(struct exec_request *r);

/* base with each NAME=VALUE of over replacing base's NAME (or added): a new NULL-terminated
 * vector whose strings are those of base and over. NULL when out of memory. */
char **exec_merge_env(char *const *base, char *const *over);

/* The header of a frame: writes 5 bytes; reads them back (returns the payload length). */
void exec_frame_header(unsigned char out[EXEC_FRAME_HEADER], int type, uint32_t len);
uint32_t exec_frame_length(const unsigned char header[EXEC_FRAME_HEADER]);

#endif
