package flick

/*
#include <flick/flick.h>
#include <stdint.h>

static inline uintptr_t flick_go_host_token(flick_host* h) { return (uintptr_t)h; }
static inline uintptr_t flick_go_machine_token(flick_machine* m) { return (uintptr_t)m; }
*/
import "C"

// Handles are numbers the library hands out (table tokens, not addresses): they are kept
// as uintptr so the Go runtime never takes them for pointers.
func hostToken(h *C.flick_host) C.uintptr_t       { return C.flick_go_host_token(h) }
func machineToken(m *C.flick_machine) C.uintptr_t { return C.flick_go_machine_token(m) }
