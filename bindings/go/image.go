package flick

/*
#include <flick/flick.h>
#include <stdint.h>

static inline flick_host* flick_go_host(uintptr_t t) { return (flick_host*)t; }

// The exported Go callback takes the handle as a number; this adapts it to
// flick_pull_progress_fn without a Go-side integer-to-pointer conversion.
extern int flickGoPullProgress(uintptr_t userdata, uint64_t done, uint64_t total);
static int flick_go_progress(void* userdata, uint64_t done, uint64_t total) {
	return flickGoPullProgress((uintptr_t)userdata, done, total);
}
static inline void flick_go_set_progress(flick_pull_options* o, uintptr_t handle) {
	o->progress = flick_go_progress;
	o->progress_userdata = (void*)handle;
}
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/cgo"
)

// PullPolicy says when the registry is asked (flick_pull_policy).
type PullPolicy int

const (
	PullMissing PullPolicy = C.FLICK_PULL_MISSING // only for what the cache lacks
	PullAlways  PullPolicy = C.FLICK_PULL_ALWAYS  // the reference is resolved again
	PullNever   PullPolicy = C.FLICK_PULL_NEVER   // the cache only: ErrNotFound when it lacks the image
)

// PullOptions are flick_pull_options.
type PullOptions struct {
	Policy PullPolicy
	// Progress is called on the pulling goroutine about ten times a second during a registry
	// pull (local transports do not report). A panic in it stops the pull, and Pull returns
	// the panic as a *CallbackPanicError.
	Progress func(done, total uint64)
}

// ImageConfig is the OCI image's config as the library reports it.
type ImageConfig struct {
	Entrypoint   []string          `json:"entrypoint"`
	Cmd          []string          `json:"cmd"`
	Env          []string          `json:"env"`
	WorkingDir   string            `json:"working_dir"`
	User         string            `json:"user"`
	ExposedPorts []string          `json:"exposed_ports"`
	Labels       map[string]string `json:"labels"`
	OS           string            `json:"os"`
	Architecture string            `json:"architecture"`
}

// Image is a pulled image.
type Image struct {
	Reference   string      `json:"reference"`
	ImageDigest string      `json:"image_digest"`
	BlobBytes   uint64      `json:"blob_bytes"`
	Config      ImageConfig `json:"config"`
}

// CachedImage is an image in the host's cache.
type CachedImage struct {
	Reference   string   `json:"reference"`
	ImageDigest string   `json:"image_digest"`
	BlobBytes   uint64   `json:"blob_bytes"`
	Rootfs      []string `json:"rootfs"`
}

// pullOptions fills o for the duration of one call; release frees the callback's handle.
func pullOptions(ctx context.Context, o *C.flick_pull_options, opts PullOptions) (p *pullCall, release func(), err error) {
	if err := call(func() C.int { return C.flick_pull_options_init(o, C.FLICK_PULL_OPTIONS_VERSION) }); err != nil {
		return nil, nil, err
	}
	o.policy = C.flick_pull_policy(opts.Policy)
	p = &pullCall{progress: opts.Progress, stop: func() bool { return ctx.Err() != nil }}
	h := cgo.NewHandle(p)
	C.flick_go_set_progress(o, C.uintptr_t(h))
	return p, h.Delete, nil
}

// pullError turns a stopped pull's error into what stopped it: a panic or the context.
func pullError(ctx context.Context, p *pullCall, err error) error {
	if p.panicked {
		return &CallbackPanicError{Value: p.value, Err: err}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// Pull pulls ref ("busybox", "localhost:5000/app:1", "oci:DIR:TAG", "oci-archive:FILE",
// "docker-archive:FILE") into the cache. Cancelling ctx stops a registry pull at its next
// progress report (what was downloaded stays cached).
func (h *Host) Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	var cs cstrings
	defer cs.free()
	var o C.flick_pull_options
	p, release, err := pullOptions(ctx, &o, opts)
	if err != nil {
		return nil, err
	}
	defer release()
	var out *C.char
	cref := cs.str(ref)
	if err := call(func() C.int { return C.flick_image_pull(&out, h.c(), cref, &o) }); err != nil {
		return nil, pullError(ctx, p, err)
	}
	var img Image
	if err := json.Unmarshal([]byte(takeString(out)), &img); err != nil {
		return nil, fmt.Errorf("flick: decoding the pulled image: %w", err)
	}
	return &img, nil
}

// Rootfs pulls as opts says and builds (once) the image's ext4 root filesystem; the path is
// the cached file, which must not be written to.
func (h *Host) Rootfs(ctx context.Context, ref string, opts PullOptions) (string, error) {
	var cs cstrings
	defer cs.free()
	var o C.flick_pull_options
	p, release, err := pullOptions(ctx, &o, opts)
	if err != nil {
		return "", err
	}
	defer release()
	var out *C.char
	cref := cs.str(ref)
	if err := call(func() C.int { return C.flick_image_rootfs(&out, h.c(), cref, &o) }); err != nil {
		return "", pullError(ctx, p, err)
	}
	return takeString(out), nil
}

// Images lists the cached images.
func (h *Host) Images() ([]CachedImage, error) {
	var out *C.char
	if err := call(func() C.int { return C.flick_image_list(&out, h.c()) }); err != nil {
		return nil, err
	}
	var list []CachedImage
	return list, decode(takeString(out), &list)
}

// Prune removes blobs and root filesystems no reference uses.
func (h *Host) Prune() (filesRemoved, bytesFreed uint64, err error) {
	var files, bytes C.uint64_t
	err = call(func() C.int { return C.flick_image_prune(&files, &bytes, h.c()) })
	return uint64(files), uint64(bytes), err
}

// RemoveImage forgets ref and removes what no other reference uses; ErrNotFound if not cached.
func (h *Host) RemoveImage(ref string) (filesRemoved, bytesFreed uint64, err error) {
	var cs cstrings
	defer cs.free()
	var files, bytes C.uint64_t
	cref := cs.str(ref)
	err = call(func() C.int { return C.flick_image_rm(&files, &bytes, h.c(), cref) })
	return uint64(files), uint64(bytes), err
}

func decode(doc string, v interface{}) error {
	if err := json.Unmarshal([]byte(doc), v); err != nil {
		return fmt.Errorf("flick: decoding the library's answer: %w", err)
	}
	return nil
}
