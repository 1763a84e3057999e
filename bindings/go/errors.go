package flick

/*
#include <flick/flick.h>
*/
import "C"

import (
	"fmt"
	"syscall"
)

// Code is a FLICK_E* error code of the C ABI (negative; the list only grows).
type Code int

const (
	CodeInvalid     Code = C.FLICK_EINVAL
	CodeNotFound    Code = C.FLICK_ENOTFOUND
	CodeIO          Code = C.FLICK_EIO
	CodeKVM         Code = C.FLICK_EKVM
	CodeNoMemory    Code = C.FLICK_ENOMEM
	CodeMalformed   Code = C.FLICK_EMALFORMED
	CodeUnsupported Code = C.FLICK_EUNSUPPORTED
	CodeGuest       Code = C.FLICK_EGUEST
	CodeTimeout     Code = C.FLICK_ETIMEOUT
	CodeBusy        Code = C.FLICK_EBUSY
	CodeLimit       Code = C.FLICK_ELIMIT
	CodeCancelled   Code = C.FLICK_ECANCELLED
	CodeNetwork     Code = C.FLICK_ENETWORK
	CodeIntegrity   Code = C.FLICK_EINTEGRITY
	CodeExists      Code = C.FLICK_EEXISTS
	CodeLeaseHeld   Code = C.FLICK_ELEASE
	CodeInternal    Code = C.FLICK_EINTERNAL
)

var codeNames = map[Code]string{
	CodeInvalid: "invalid argument", CodeNotFound: "not found", CodeIO: "I/O error",
	CodeKVM: "KVM unavailable", CodeNoMemory: "out of memory", CodeMalformed: "malformed input",
	CodeUnsupported: "unsupported", CodeGuest: "guest failed", CodeTimeout: "timed out",
	CodeBusy: "busy", CodeLimit: "limit reached", CodeCancelled: "cancelled",
	CodeNetwork: "network error", CodeIntegrity: "integrity check failed", CodeExists: "already exists",
	CodeLeaseHeld: "lease held by another", CodeInternal: "internal error",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("flick error %d", int(c))
}

// Class says which part of flick a failure came from (flick_error_class).
type Class int

const (
	ClassNone            Class = C.FLICK_ERROR_NONE
	ClassInvalidArgument Class = C.FLICK_ERROR_INVALID_ARGUMENT
	ClassOS              Class = C.FLICK_ERROR_OS
	ClassVMM             Class = C.FLICK_ERROR_VMM
	ClassImage           Class = C.FLICK_ERROR_IMAGE
	ClassRegistry        Class = C.FLICK_ERROR_REGISTRY
	ClassMachine         Class = C.FLICK_ERROR_MACHINE
	ClassStore           Class = C.FLICK_ERROR_STORE
	ClassCallback        Class = C.FLICK_ERROR_CALLBACK
	ClassInternal        Class = C.FLICK_ERROR_INTERNAL
)

// Error is a failure the library reported: its code, class, the errno of a failed system
// call (0 if none) and a message saying what was attempted, on what, and why it failed.
type Error struct {
	Code    Code
	Class   Class
	Errno   syscall.Errno
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "flick: " + e.Code.String()
	}
	return "flick: " + e.Message
}

// Is makes errors.Is(err, ErrNotFound) and the like true for an *Error of that code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Unwrap gives the errno, so errors.Is(err, syscall.ENOENT) works for OS failures.
func (e *Error) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// Sentinels to compare with errors.Is; each matches every *Error of its code.
var (
	ErrInvalid     = &Error{Code: CodeInvalid}
	ErrNotFound    = &Error{Code: CodeNotFound}
	ErrIO          = &Error{Code: CodeIO}
	ErrKVM         = &Error{Code: CodeKVM}
	ErrNoMemory    = &Error{Code: CodeNoMemory}
	ErrMalformed   = &Error{Code: CodeMalformed}
	ErrUnsupported = &Error{Code: CodeUnsupported}
	ErrGuest       = &Error{Code: CodeGuest}
	ErrTimeout     = &Error{Code: CodeTimeout}
	ErrBusy        = &Error{Code: CodeBusy}
	ErrLimit       = &Error{Code: CodeLimit}
	ErrCancelled   = &Error{Code: CodeCancelled}
	ErrNetwork     = &Error{Code: CodeNetwork}
	ErrIntegrity   = &Error{Code: CodeIntegrity}
	ErrExists      = &Error{Code: CodeExists}
	ErrLeaseHeld   = &Error{Code: CodeLeaseHeld}
	ErrInternal    = &Error{Code: CodeInternal}
)

// lastError reads this thread's last error; rc is the code the call returned. The caller
// has locked the OS thread (see call).
func lastError(rc int) *Error {
	e := C.flick_error_last()
	err := &Error{Code: Code(rc)}
	if e != nil && int(e.code) == rc {
		err.Class = Class(e.error_class)
		err.Errno = syscall.Errno(e.sys_errno)
		err.Message = C.GoString(e.message)
	}
	return err
}

// CallbackPanicError is returned by the call during which a Go callback panicked: the
// panic was recovered, the call stopped (its *Error, with ErrCancelled, is Unwrap's).
type CallbackPanicError struct {
	Value interface{} // what the callback panicked with
	Err   error       // the library's error for the stopped call
}

func (e *CallbackPanicError) Error() string {
	return fmt.Sprintf("flick: callback panicked: %v", e.Value)
}

func (e *CallbackPanicError) Unwrap() error { return e.Err }
