package flick

/*
#include <flick/flick.h>
#include <stdint.h>

static inline flick_host* flick_go_host(uintptr_t t) { return (flick_host*)t; }
*/
import "C"

// CreateApp makes an app (orgSlug "": the default organization).
func (h *Host) CreateApp(name, orgSlug string) (*App, error) {
	var cs cstrings
	defer cs.free()
	cn, co := cs.str(name), cs.opt(orgSlug)
	var out *C.char
	if err := call(func() C.int { return C.flick_app_create(&out, h.c(), cn, co) }); err != nil {
		return nil, err
	}
	var a App
	return &a, decode(takeString(out), &a)
}

// Apps lists the apps.
func (h *Host) Apps() ([]App, error) {
	var out *C.char
	if err := call(func() C.int { return C.flick_app_list(&out, h.c()) }); err != nil {
		return nil, err
	}
	var list []App
	return list, decode(takeString(out), &list)
}

// DestroyApp destroys an app: ErrBusy while it has machines or volumes, unless force
// (they are destroyed first).
func (h *Host) DestroyApp(name string, force bool) error {
	var cs cstrings
	defer cs.free()
	cn := cs.str(name)
	return call(func() C.int { return C.flick_app_destroy(h.c(), cn, cbool(force)) })
}

// CreateVolume makes a volume of sizeGB in app ("": "default").
func (h *Host) CreateVolume(name, app string, sizeGB uint64) (*Volume, error) {
	var cs cstrings
	defer cs.free()
	cn, ca := cs.str(name), cs.opt(app)
	var out *C.char
	if err := call(func() C.int { return C.flick_volume_create(&out, h.c(), cn, ca, C.uint64_t(sizeGB)) }); err != nil {
		return nil, err
	}
	var v Volume
	return &v, decode(takeString(out), &v)
}

// Volumes lists the volumes of app ("": every app).
func (h *Host) Volumes(app string) ([]Volume, error) {
	var cs cstrings
	defer cs.free()
	ca := cs.opt(app)
	var out *C.char
	if err := call(func() C.int { return C.flick_volume_list(&out, h.c(), ca) }); err != nil {
		return nil, err
	}
	var list []Volume
	return list, decode(takeString(out), &list)
}

// ExtendVolume grows a volume (by id, or a name unique in app) to sizeGB.
func (h *Host) ExtendVolume(idOrName, app string, sizeGB uint64) (*Volume, error) {
	var cs cstrings
	defer cs.free()
	cn, ca := cs.str(idOrName), cs.opt(app)
	var out *C.char
	if err := call(func() C.int { return C.flick_volume_extend(&out, h.c(), cn, ca, C.uint64_t(sizeGB)) }); err != nil {
		return nil, err
	}
	var v Volume
	return &v, decode(takeString(out), &v)
}

// DestroyVolume destroys a volume (by id, or a name unique in app).
func (h *Host) DestroyVolume(idOrName, app string) error {
	var cs cstrings
	defer cs.free()
	cn, ca := cs.str(idOrName), cs.opt(app)
	return call(func() C.int { return C.flick_volume_destroy(h.c(), cn, ca) })
}
