// Package flick runs OCI images as KVM microVMs with Fly's Machines lifecycle, through
// libflick's C ABI (flick.h). Hosts, machines and images are handles into the library;
// structured answers are Fly's JSON documents decoded into the types of this package.
//
// Every call may be made from any goroutine. Calls block the goroutine (and its OS thread)
// for as long as the C call runs; a context's deadline bounds the calls that wait.
package flick

/*
#cgo pkg-config: flick
#include <flick/flick.h>
#include <stdlib.h>
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Version is the library's version as major*10000 + minor*100 + patch (flick_version).
func Version() int { return int(C.flick_version()) }

// HeaderVersion is the version of flick.h this package was compiled against.
const HeaderVersion = C.FLICK_VERSION_NUMBER

// HasFeature says whether this build of the library has a feature: "kvm", "machines",
// "images", "registry", "volumes", "vsock", "suspend".
func HasFeature(name string) bool {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	return C.flick_has_feature(cs) != 0
}

// call runs one C call and reads the thread's last error on the same OS thread: the last
// error is per thread, and a goroutine may otherwise move between the two.
func call(f func() C.int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if rc := f(); rc != C.FLICK_OK {
		return lastError(int(rc))
	}
	return nil
}

// takeString copies a library string and frees it.
func takeString(s *C.char) string {
	if s == nil {
		return ""
	}
	defer C.flick_free(unsafe.Pointer(s))
	return C.GoString(s)
}

func takeBytes(s *C.char, n C.size_t) []byte {
	if s == nil {
		return nil
	}
	defer C.flick_free(unsafe.Pointer(s))
	return C.GoBytes(unsafe.Pointer(s), C.int(n))
}

// cstrings holds C copies of Go strings for the length of one call.
type cstrings []unsafe.Pointer

func (c *cstrings) str(s string) *C.char {
	p := C.CString(s)
	*c = append(*c, unsafe.Pointer(p))
	return p
}

// opt is str, with "" as NULL (the library's default).
func (c *cstrings) opt(s string) *C.char {
	if s == "" {
		return nil
	}
	return c.str(s)
}

// array makes a NULL-terminated char* array in C memory; nil for an empty list.
func (c *cstrings) array(list []string) **C.char {
	if len(list) == 0 {
		return nil
	}
	size := C.size_t(len(list)+1) * C.size_t(unsafe.Sizeof((*C.char)(nil)))
	mem := C.malloc(size)
	*c = append(*c, mem)
	arr := unsafe.Slice((**C.char)(mem), len(list)+1)
	for i, s := range list {
		arr[i] = c.str(s)
	}
	arr[len(list)] = nil
	return (**C.char)(mem)
}

func (c *cstrings) free() {
	for _, p := range *c {
		C.free(p)
	}
	*c = nil
}
