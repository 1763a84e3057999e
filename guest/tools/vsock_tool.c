/* vsock_tool: a tiny static program for test guests (busybox has no vsock client).
 *
 *   vsock_tool send CID PORT MESSAGE   connect, send MESSAGE, print the reply until EOF
 *   vsock_tool echo PORT               accept one connection, reply "echo: <data>", exit
 */
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int die(const char* what) {
  perror(what);
  return 1;
}

static int cmd_send(unsigned cid, unsigned port, const char* msg) {
  int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
  if (fd < 0) return die("socket");
  struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
  if (connect(fd, (struct sockaddr*)&a, sizeof a) < 0) return die("connect");
  size_t len = strlen(msg);
  if (write(fd, msg, len) != (ssize_t)len) return die("write");
  shutdown(fd, SHUT_WR);
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)n, stdout);
  putchar('\n');
  return n < 0 ? die("read") : 0;
}

static int cmd_echo(unsigned port) {
  int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
  if (fd < 0) return die("socket");
  struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
  if (bind(fd, (struct sockaddr*)&a, sizeof a) < 0) return die("bind");
  if (listen(fd, 1) < 0) return die("listen");
  printf("vsock_tool: listening on %u\n", port);
  fflush(stdout);
  int c = accept(fd, NULL, NULL);
  if (c < 0) return die("accept");
  char buf[4096];
  ssize_t n = read(c, buf, sizeof buf);
  if (n < 0) return die("read");
  if (write(c, "echo: ", 6) != 6 || write(c, buf, (size_t)n) != n) return die("write");
  close(c);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 5 && !strcmp(argv[1], "send"))
    return cmd_send((unsigned)strtoul(argv[2], NULL, 10), (unsigned)strtoul(argv[3], NULL, 10), argv[4]);
  if (argc == 3 && !strcmp(argv[1], "echo")) return cmd_echo((unsigned)strtoul(argv[2], NULL, 10));
  fprintf(stderr, "usage: vsock_tool send CID PORT MESSAGE | echo PORT\n");
  return 2;
}
