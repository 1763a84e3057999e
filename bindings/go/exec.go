package flick

/*
#include <flick/flick.h>
#include <stdint.h>
#include <stdlib.h>

static inline flick_machine* flick_go_machine(uintptr_t t) { return (flick_machine*)t; }
*/
import "C"

import (
	"context"
	"time"
	"unsafe"
)

// ExecOptions say what to run in a started machine.
type ExecOptions struct {
	Argv    []string // at least one; Argv[0] is looked up in PATH
	Stdin   []byte
	Env     []string // "KEY=value", added to the program's
	User    string   // "": the main program's
	Workdir string   // "": the main program's
}

// ExecResult is a command's outcome; a command that fails has a nonzero ExitCode, not an error.
type ExecResult struct {
	ExitCode   int // -1 when a signal ended it
	ExitSignal int
	Stdout     []byte
	Stderr     []byte
	Truncated  bool // more than 1 MiB of a stream was dropped
}

// Exec runs argv in the started machine and waits for it.
func (m *Machine) Exec(ctx context.Context, argv ...string) (*ExecResult, error) {
	return m.ExecWith(ctx, ExecOptions{Argv: argv})
}

// ExecWith runs a command as opts says. ctx's deadline is the command's timeout (it is
// killed then: ErrTimeout); without one the command may run as long as it likes.
func (m *Machine) ExecWith(ctx context.Context, opts ExecOptions) (*ExecResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	var o C.flick_exec_options
	if err := call(func() C.int { return C.flick_exec_options_init(&o, C.FLICK_EXEC_OPTIONS_VERSION) }); err != nil {
		return nil, err
	}
	o.argv = cs.array(opts.Argv)
	if len(opts.Stdin) > 0 {
		p := C.CBytes(opts.Stdin)
		cs = append(cs, p)
		o.stdin_data = (*C.char)(p)
		o.stdin_len = C.size_t(len(opts.Stdin))
	}
	o.env = cs.array(opts.Env)
	o.user = cs.opt(opts.User)
	o.workdir = cs.opt(opts.Workdir)
	o.timeout_ms = 0
	if deadline, ok := ctx.Deadline(); ok {
		ms := time.Until(deadline).Milliseconds()
		if ms < 1 {
			ms = 1
		}
		o.timeout_ms = C.int64_t(ms)
	}
	var r C.flick_exec_result
	if err := call(func() C.int { return C.flick_machine_exec(&r, m.c(), &o) }); err != nil {
		return nil, err
	}
	defer C.flick_exec_result_free(&r)
	return &ExecResult{
		ExitCode:   int(r.exit_code),
		ExitSignal: int(r.exit_signal),
		Stdout:     C.GoBytes(unsafe.Pointer(r.stdout_data), C.int(r.stdout_len)),
		Stderr:     C.GoBytes(unsafe.Pointer(r.stderr_data), C.int(r.stderr_len)),
		Truncated:  r.truncated != 0,
	}, nil
}
