// COM1 output and the few libc functions the compiler may call.
#define TESTGUEST_LIBC_IMPL
#include <stdarg.h>

#include "testguest.h"

#define COM1_THR 0x3f8
#define COM1_LSR 0x3fd
#define LSR_DATA_READY 0x01

int g_failures;

void *memcpy(void *dst, const void *src, size_t n) {
  uint8_t *d = dst;
  const uint8_t *s = src;
  while (n--) *d++ = *s++;
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  uint8_t *d = dst;
  while (n--) *d++ = (uint8_t)c;
  return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
  const uint8_t *x = a, *y = b;
  for (; n; --n, ++x, ++y)
    if (*x != *y) return *x < *y ? -1 : 1;
  return 0;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) ++n;
  return n;
}

// Every byte is one port-I/O exit; the VMM's UART is always ready, so LSR is not polled.
void con_putc(char c) { outb(COM1_THR, (uint8_t)c); }

int con_poll(void) { return (inb(COM1_LSR) & LSR_DATA_READY) ? inb(COM1_THR) : -1; }

static void put_uint(uint64_t v, unsigned base) {
  char buf[20];
  int n = 0;
  do {
    buf[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v);
  while (n) con_putc(buf[--n]);
}

static void con_vprintf(const char *fmt, va_list ap) {
  for (; *fmt; ++fmt) {
    if (*fmt != '%') {
      con_putc(*fmt);
      continue;
    }
    bool is_long = false;
    if (*++fmt == 'l') {
      is_long = true;
      ++fmt;
    }
    switch (*fmt) {
      case 's':
        for (const char *s = va_arg(ap, const char *); *s; ++s) con_putc(*s);
        break;
      case 'c':
        con_putc((char)va_arg(ap, int));
        break;
      case 'd': {
        int64_t v = is_long ? va_arg(ap, int64_t) : va_arg(ap, int);
        if (v < 0) {
          con_putc('-');
          v = -v;
        }
        put_uint((uint64_t)v, 10);
        break;
      }
      case 'u':
        put_uint(is_long ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10);
        break;
      case 'x':
        put_uint(is_long ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16);
        break;
      case '\0':
        return;
      default:
        con_putc(*fmt);
    }
  }
}

void con_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  con_vprintf(fmt, ap);
  va_end(ap);
}

void pass(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  con_printf("ok ");
  con_vprintf(fmt, ap);
  con_putc('\n');
  va_end(ap);
}

void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ++g_failures;
  con_printf("FAIL ");
  con_vprintf(fmt, ap);
  con_putc('\n');
  va_end(ap);
}
