#include <flick/flick.h>

#include <stdio.h>

int main(void) {
  if (flick_version() != FLICK_VERSION_NUMBER) return 1;
  printf("flick %d, last error \"%s\"\n", flick_version(), flick_last_error());
  return 0;
}
