package flick

/*
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
)

// pullCall is what a pull's progress callback reaches through its cgo.Handle.
type pullCall struct {
	progress func(done, total uint64)
	stop     func() bool // true: stop the pull (the context ended)
	panicked bool
	value    interface{}
}

// flickGoPullProgress is the C progress callback of every pull. A panic in the user's
// function is recovered here (it must not unwind through C) and stops the pull; Pull then
// returns it as a *CallbackPanicError.
//
//export flickGoPullProgress
func flickGoPullProgress(userdata C.uintptr_t, done, total C.uint64_t) (rc C.int) {
	p := cgo.Handle(userdata).Value().(*pullCall)
	defer func() {
		if v := recover(); v != nil {
			p.panicked, p.value = true, v
			rc = 1
		}
	}()
	if p.stop != nil && p.stop() {
		return 1
	}
	if p.progress != nil {
		p.progress(uint64(done), uint64(total))
	}
	return 0
}
