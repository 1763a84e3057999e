package flick

/*
#include <flick/flick.h>
#include <stdint.h>
#include <stdlib.h>

static inline flick_host* flick_go_host(uintptr_t t) { return (flick_host*)t; }
static inline flick_machine* flick_go_machine(uintptr_t t) { return (flick_machine*)t; }
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"time"
	"unsafe"
)

// State is a machine's place in Fly's lifecycle:
// created -> starting -> started -> stopping -> stopped -> ... -> destroying -> destroyed.
type State int

const (
	StateCreated    State = C.FLICK_MACHINE_CREATED
	StateStarting   State = C.FLICK_MACHINE_STARTING
	StateStarted    State = C.FLICK_MACHINE_STARTED
	StateStopping   State = C.FLICK_MACHINE_STOPPING
	StateStopped    State = C.FLICK_MACHINE_STOPPED
	StateFailed     State = C.FLICK_MACHINE_FAILED
	StateDestroying State = C.FLICK_MACHINE_DESTROYING
	StateDestroyed  State = C.FLICK_MACHINE_DESTROYED
)

// String is the state's name in Fly's JSON ("started").
func (s State) String() string {
	if n := C.flick_machine_state_name(C.flick_machine_state(s)); n != nil {
		return C.GoString(n)
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MachineCreate says what machine to make. Config is marshalled as Fly's MachineConfig;
// RawConfig, when set, is used instead (any JSON document of Fly's schema).
type MachineCreate struct {
	Config     MachineConfig
	RawConfig  json.RawMessage
	App        string // "": "default"; others need CreateApp first
	Name       string // "": the machine's id
	Region     string // "", "local": the only region a host has
	SkipLaunch bool   // left created; otherwise started (and destroyed if that fails)
}

// Machine is a handle on one machine. The machine outlives the handle (and this process);
// Close frees the handle only.
type Machine struct {
	m  uintptr
	id string
}

func (h *Host) machineHandle(out *C.flick_machine) (*Machine, error) {
	m := &Machine{m: uintptr(machineToken(out))}
	var id *C.char
	if err := call(func() C.int { return C.flick_machine_id(&id, m.c()) }); err != nil {
		m.Close()
		return nil, err
	}
	m.id = takeString(id)
	return m, nil
}

func configJSON(raw json.RawMessage, config interface{}) (string, error) {
	if len(raw) != 0 {
		return string(raw), nil
	}
	b, err := json.Marshal(config)
	if err != nil {
		return "", fmt.Errorf("flick: encoding the machine config: %w", err)
	}
	return string(b), nil
}

// CreateMachine validates the config (a bad field: ErrInvalid naming it; JSON that does not
// parse: ErrMalformed), pulls the image, builds its root filesystem and makes the machine.
// ctx is checked before the call; the call itself runs to its end.
func (h *Host) CreateMachine(ctx context.Context, c MachineCreate) (*Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	doc, err := configJSON(c.RawConfig, c.Config)
	if err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	var o C.flick_machine_create_options
	if err := call(func() C.int {
		return C.flick_machine_create_options_init(&o, C.FLICK_MACHINE_CREATE_OPTIONS_VERSION)
	}); err != nil {
		return nil, err
	}
	o.config_json = cs.str(doc)
	o.app = cs.opt(c.App)
	o.name = cs.opt(c.Name)
	o.region = cs.opt(c.Region)
	o.skip_launch = cbool(c.SkipLaunch)
	var out *C.flick_machine
	if err := call(func() C.int { return C.flick_machine_create(&out, h.c(), &o) }); err != nil {
		return nil, err
	}
	return h.machineHandle(out)
}

// OpenMachine is a handle on a machine of the host's state directory, by id or name
// (within app when not ""). ErrNotFound when there is none.
func (h *Host) OpenMachine(idOrName, app string) (*Machine, error) {
	var cs cstrings
	defer cs.free()
	cid, capp := cs.str(idOrName), cs.opt(app)
	var out *C.flick_machine
	if err := call(func() C.int { return C.flick_machine_open(&out, h.c(), cid, capp) }); err != nil {
		return nil, err
	}
	return h.machineHandle(out)
}

// MachineFilter picks machines for ListMachines; the zero value: every live machine.
type MachineFilter struct {
	App            string            // "": every app
	States         []State           // nil: every state but destroyed
	Metadata       map[string]string // all must match
	IncludeDeleted bool              // with States nil: destroyed machines too
}

// ListMachines lists the machines the filter picks.
func (h *Host) ListMachines(f MachineFilter) ([]MachineInfo, error) {
	var cs cstrings
	defer cs.free()
	var cf C.flick_machine_filter
	if err := call(func() C.int { return C.flick_machine_filter_init(&cf, C.FLICK_MACHINE_FILTER_VERSION) }); err != nil {
		return nil, err
	}
	cf.app = cs.opt(f.App)
	if len(f.States) > 0 {
		mem := C.malloc(C.size_t(len(f.States)) * C.size_t(unsafe.Sizeof(C.flick_machine_state(0))))
		cs = append(cs, mem)
		states := unsafe.Slice((*C.flick_machine_state)(mem), len(f.States))
		for i, s := range f.States {
			states[i] = C.flick_machine_state(s)
		}
		cf.states = (*C.flick_machine_state)(mem)
		cf.state_count = C.size_t(len(f.States))
	}
	if len(f.Metadata) > 0 {
		var kv []string
		for k, v := range f.Metadata {
			kv = append(kv, k, v)
		}
		cf.metadata = cs.array(kv)
	}
	cf.include_deleted = cbool(f.IncludeDeleted)
	var out *C.char
	if err := call(func() C.int { return C.flick_machine_list(&out, h.c(), &cf) }); err != nil {
		return nil, err
	}
	var list []MachineInfo
	return list, decode(takeString(out), &list)
}

// ID is the machine's id.
func (m *Machine) ID() string { return m.id }

// Close frees the handle; the machine goes on. A second Close fails with ErrInvalid.
func (m *Machine) Close() error {
	if m == nil {
		return nil
	}
	return call(func() C.int {
		C.flick_machine_free(m.c())
		return C.flick_error_last().code
	})
}

// State is the machine's state now (StateDestroyed once it is gone).
func (m *Machine) State() (State, error) {
	var s C.flick_machine_state
	err := call(func() C.int { return C.flick_machine_get_state(&s, m.c()) })
	return State(s), err
}

// Get is Fly's Machine object for it, with its events newest first.
func (m *Machine) Get() (*MachineInfo, error) {
	var out *C.char
	if err := call(func() C.int { return C.flick_machine_get(&out, m.c()) }); err != nil {
		return nil, err
	}
	var info MachineInfo
	return &info, decode(takeString(out), &info)
}

// Start starts a created, stopped or failed machine; it returns once the VM runs.
func (m *Machine) Start() error {
	return call(func() C.int { return C.flick_machine_start(m.c()) })
}

// StopOptions say how to stop: Signal 0 is the config's stop signal; Timeout 0 is the
// config's time before the program is killed.
type StopOptions struct {
	Signal  syscall.Signal
	Timeout time.Duration
}

// Stop asks the program to end, kills it after the timeout, and returns once it is stopped.
func (m *Machine) Stop(opts StopOptions) error {
	timeout := C.int64_t(-1)
	if opts.Timeout > 0 {
		timeout = C.int64_t(opts.Timeout.Milliseconds())
	}
	return call(func() C.int { return C.flick_machine_stop(m.c(), C.int(opts.Signal), timeout) })
}

// Signal sends a signal to the machine's program.
func (m *Machine) Signal(sig syscall.Signal) error {
	return call(func() C.int { return C.flick_machine_signal(m.c(), C.int(sig)) })
}

// waitSlice bounds each wait in the library, so a cancelled context is seen soon.
const waitSlice = 200 * time.Millisecond

// Wait returns once the machine is in state: ErrGuest when it failed instead. ctx's
// deadline is the timeout (ErrTimeout); cancelling ctx returns ctx.Err() within ~200ms.
func (m *Machine) Wait(ctx context.Context, state State) error {
	var timedOut error // the library's last ErrTimeout, which names the machine
	for {
		if err := ctx.Err(); err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			if timedOut == nil {
				timedOut = &Error{Code: CodeTimeout, Class: ClassMachine,
					Message: fmt.Sprintf("waiting for machine %s to be %s: %v", m.id, state, err)}
			}
			return timedOut
		}
		slice := waitSlice
		if deadline, ok := ctx.Deadline(); ok {
			if left := time.Until(deadline); left < slice {
				slice = left
			}
			if slice < 0 {
				slice = 0
			}
		}
		err := call(func() C.int {
			return C.flick_machine_wait(m.c(), C.flick_machine_state(state), C.int64_t(slice.Milliseconds()))
		})
		if err == nil || !isCode(err, CodeTimeout) {
			return err
		}
		timedOut = err
	}
}

// MachineUpdate is a whole new config (no merge) for Update; by default the machine is left
// started on it.
type MachineUpdate struct {
	Config         MachineConfig
	RawConfig      json.RawMessage
	SkipLaunch     bool
	CurrentVersion uint64 // nonzero: ErrBusy unless the machine is at this version
}

// Update gives the machine u's config as a new version.
func (m *Machine) Update(u MachineUpdate) error {
	doc, err := configJSON(u.RawConfig, u.Config)
	if err != nil {
		return err
	}
	var cs cstrings
	defer cs.free()
	var o C.flick_machine_update_options
	if err := call(func() C.int {
		return C.flick_machine_update_options_init(&o, C.FLICK_MACHINE_UPDATE_OPTIONS_VERSION)
	}); err != nil {
		return err
	}
	o.config_json = cs.str(doc)
	o.skip_launch = cbool(u.SkipLaunch)
	o.current_version = C.uint64_t(u.CurrentVersion)
	return call(func() C.int { return C.flick_machine_update(m.c(), &o) })
}

// CloneOptions: the new machine's name ("": its id) and config (nil: the source's).
type CloneOptions struct {
	Name       string
	RawConfig  json.RawMessage
	SkipLaunch bool
}

// Clone makes a new machine in the source's app through host h.
func (h *Host) Clone(source *Machine, opts CloneOptions) (*Machine, error) {
	var cs cstrings
	defer cs.free()
	var o C.flick_machine_clone_options
	if err := call(func() C.int {
		return C.flick_machine_clone_options_init(&o, C.FLICK_MACHINE_CLONE_OPTIONS_VERSION)
	}); err != nil {
		return nil, err
	}
	o.name = cs.opt(opts.Name)
	if len(opts.RawConfig) != 0 {
		o.config_json = cs.str(string(opts.RawConfig))
	}
	o.skip_launch = cbool(opts.SkipLaunch)
	var out *C.flick_machine
	if err := call(func() C.int { return C.flick_machine_clone(&out, h.c(), source.c(), &o) }); err != nil {
		return nil, err
	}
	return h.machineHandle(out)
}

// Destroy removes the machine's files and releases its volumes; a running one needs force.
func (m *Machine) Destroy(force bool) error {
	return call(func() C.int { return C.flick_machine_destroy(m.c(), cbool(force)) })
}

// Events are Fly's events, newest first.
func (m *Machine) Events() ([]Event, error) {
	var out *C.char
	if err := call(func() C.int { return C.flick_machine_events(&out, m.c()) }); err != nil {
		return nil, err
	}
	var list []Event
	return list, decode(takeString(out), &list)
}

// Logs is everything the guest wrote to its console, as kept in its console log.
func (m *Machine) Logs() ([]byte, error) {
	var out *C.char
	var n C.size_t
	if err := call(func() C.int { return C.flick_machine_logs(&out, &n, m.c()) }); err != nil {
		return nil, err
	}
	return takeBytes(out, n), nil
}

// Metadata is the machine's metadata.
func (m *Machine) Metadata() (map[string]string, error) {
	var out *C.char
	if err := call(func() C.int { return C.flick_machine_metadata(&out, m.c()) }); err != nil {
		return nil, err
	}
	md := map[string]string{}
	return md, decode(takeString(out), &md)
}

// MetadataGet is one key's value; ErrNotFound for a missing key.
func (m *Machine) MetadataGet(key string) (string, error) {
	var cs cstrings
	defer cs.free()
	ck := cs.str(key)
	var out *C.char
	if err := call(func() C.int { return C.flick_machine_metadata_get(&out, m.c(), ck) }); err != nil {
		return "", err
	}
	return takeString(out), nil
}

// MetadataSet sets one key.
func (m *Machine) MetadataSet(key, value string) error {
	var cs cstrings
	defer cs.free()
	ck, cv := cs.str(key), cs.str(value)
	return call(func() C.int { return C.flick_machine_metadata_set(m.c(), ck, cv) })
}

// MetadataDelete deletes one key.
func (m *Machine) MetadataDelete(key string) error {
	var cs cstrings
	defer cs.free()
	ck := cs.str(key)
	return call(func() C.int { return C.flick_machine_metadata_delete(m.c(), ck) })
}

// AcquireLease takes the machine's lease for ttl; this handle then carries its nonce.
// While another holds it, calls that change the machine fail with ErrLeaseHeld.
func (m *Machine) AcquireLease(ttl time.Duration, description string) (*Lease, error) {
	var cs cstrings
	defer cs.free()
	cd := cs.opt(description)
	var out *C.char
	if err := call(func() C.int {
		return C.flick_machine_lease_acquire(&out, m.c(), C.uint32_t(ttl/time.Second), cd)
	}); err != nil {
		return nil, err
	}
	var l Lease
	return &l, decode(takeString(out), &l)
}

// Lease is the live lease; ErrNotFound when there is none.
func (m *Machine) Lease() (*Lease, error) {
	var out *C.char
	if err := call(func() C.int { return C.flick_machine_lease_get(&out, m.c()) }); err != nil {
		return nil, err
	}
	var l Lease
	return &l, decode(takeString(out), &l)
}

// ReleaseLease releases the lease with this nonce.
func (m *Machine) ReleaseLease(nonce string) error {
	var cs cstrings
	defer cs.free()
	cn := cs.str(nonce)
	return call(func() C.int { return C.flick_machine_lease_release(m.c(), cn) })
}

// SetLeaseNonce makes this handle carry a lease's nonce ("": none), as its holder.
func (m *Machine) SetLeaseNonce(nonce string) error {
	var cs cstrings
	defer cs.free()
	cn := cs.opt(nonce)
	return call(func() C.int { return C.flick_machine_set_lease_nonce(m.c(), cn) })
}

// Cordon takes the machine out of service; Uncordon puts it back.
func (m *Machine) Cordon() error {
	return call(func() C.int { return C.flick_machine_cordon(m.c()) })
}

// Uncordon undoes Cordon.
func (m *Machine) Uncordon() error {
	return call(func() C.int { return C.flick_machine_uncordon(m.c()) })
}

func (m *Machine) c() *C.flick_machine {
	if m == nil {
		return nil
	}
	return C.flick_go_machine(C.uintptr_t(m.m))
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func isCode(err error, c Code) bool {
	e, ok := err.(*Error)
	return ok && e.Code == c
}
