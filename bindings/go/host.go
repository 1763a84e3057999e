package flick

/*
#include <flick/flick.h>
#include <stdint.h>

static inline flick_host* flick_go_host(uintptr_t t) { return (flick_host*)t; }
*/
import "C"

// Networking says how machines get a network (flick_networking).
type Networking int

const (
	NetworkingAutomatic Networking = C.FLICK_NETWORKING_AUTOMATIC // a TAP per machine when this process may create one
	NetworkingRequired  Networking = C.FLICK_NETWORKING_REQUIRED  // machine create fails when it may not
	NetworkingNone      Networking = C.FLICK_NETWORKING_NONE      // loopback only
)

// HostOptions are flick_host_options; an empty string is flick's default (flick(1) says which).
type HostOptions struct {
	StateDir           string // default: $FLICK_STATE_DIR, else ~/.local/state/flick
	CacheDir           string // images and kernels; default: $FLICK_HOME, else ~/.cache/flick
	RunDir             string // sockets; default: $XDG_RUNTIME_DIR/flick
	Kernel             string // default guest kernel; default: $FLICK_KERNEL, else Debian's
	KernelModules      string // its lib/modules/<release> directory
	KVMDevice          string // default: $FLICK_KVM_DEVICE, else /dev/kvm
	VMMProgram         string // the flick-vmm machines run in; default: found beside libflick
	Networking         Networking
	DefaultRegistry    string   // default: "docker.io"
	InsecureRegistries []string // host[:port] names reached over plain HTTP
}

// Host is a state directory (apps, machines, volumes), an image cache and a default guest
// kernel. Several hosts, in one process or many, may open the same state directory.
type Host struct {
	h uintptr // the library's token
}

// OpenHost opens a host. Close it when done; machines keep running after.
func OpenHost(opts HostOptions) (*Host, error) {
	var cs cstrings
	defer cs.free()
	var o C.flick_host_options
	if err := call(func() C.int { return C.flick_host_options_init(&o, C.FLICK_HOST_OPTIONS_VERSION) }); err != nil {
		return nil, err
	}
	o.state_dir = cs.opt(opts.StateDir)
	o.cache_dir = cs.opt(opts.CacheDir)
	o.run_dir = cs.opt(opts.RunDir)
	o.kernel = cs.opt(opts.Kernel)
	o.kernel_modules = cs.opt(opts.KernelModules)
	o.kvm_device = cs.opt(opts.KVMDevice)
	o.vmm_program = cs.opt(opts.VMMProgram)
	o.networking = C.flick_networking(opts.Networking)
	o.default_registry = cs.opt(opts.DefaultRegistry)
	o.insecure_registries = cs.array(opts.InsecureRegistries)
	var out *C.flick_host
	if err := call(func() C.int { return C.flick_host_open(&out, &o) }); err != nil {
		return nil, err
	}
	return &Host{h: uintptr(hostToken(out))}, nil
}

// Close closes the host. Machines it made keep running and their *Machine values stay
// usable until closed. A host used after Close fails with ErrInvalid, as does a second Close.
func (h *Host) Close() error {
	return call(func() C.int { return C.flick_host_close(h.c()) })
}

func (h *Host) c() *C.flick_host {
	if h == nil {
		return nil
	}
	return C.flick_go_host(C.uintptr_t(h.h))
}
