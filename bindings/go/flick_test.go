package flick_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flick.dev/flick"
)

// Tests where nothing boots: machines are made (skip_launch) from a busybox OCI layout built
// here by scripts/busybox-image.py, with FLICK_TEST_KERNEL (the test guest) as the kernel.

func TestVersionAndFeatures(t *testing.T) {
	if v := flick.Version(); v != flick.HeaderVersion {
		t.Fatalf("library version %d, header %d", v, flick.HeaderVersion)
	}
	if !flick.HasFeature("machines") || !flick.HasFeature("images") {
		t.Error("machines and images are features of every build")
	}
	if flick.HasFeature("no-such-feature") || flick.HasFeature("") {
		t.Error("an unknown feature is reported present")
	}
}

func TestErrorsMatchSentinelsByCode(t *testing.T) {
	err := error(&flick.Error{Code: flick.CodeNotFound, Class: flick.ClassStore, Message: "no machine x"})
	if !errors.Is(err, flick.ErrNotFound) || errors.Is(err, flick.ErrInvalid) {
		t.Fatalf("errors.Is by code fails: %v", err)
	}
	var fe *flick.Error
	if !errors.As(err, &fe) || fe.Class != flick.ClassStore {
		t.Fatal("errors.As")
	}
	if got := err.Error(); got != "flick: no machine x" {
		t.Errorf("Error() = %q", got)
	}
	if (&flick.Error{Code: flick.CodeBusy}).Error() != "flick: busy" {
		t.Error("an error without message names its code")
	}
}

// skip skips the test, or fails it when FLICK_TEST_NO_SKIP is set (as the ctest sets it).
func skip(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("FLICK_TEST_NO_SKIP") != "" {
		t.Fatal(why + " (FLICK_TEST_NO_SKIP is set)")
	}
	t.Skip(why)
}

// testKernel is the kernel machines are made with (the ctest gives the test guest).
func testKernel(t *testing.T) string {
	k := os.Getenv("FLICK_TEST_KERNEL")
	if k == "" {
		skip(t, "FLICK_TEST_KERNEL is not set: no kernel to make machines with")
	}
	return k
}

// fixture is a host on a scratch state directory whose starts fail before a VM exists (no
// KVM device, no flick-vmm), and a busybox image as an OCI layout.
type fixture struct {
	dir   string
	image string
	opts  flick.HostOptions
	host  *flick.Host
}

func newFixture(t *testing.T) *fixture {
	kernel := testKernel(t)
	dir := t.TempDir()
	f := &fixture{dir: dir, image: os.Getenv("FLICK_TEST_IMAGE")}
	if f.image == "" {
		layout := filepath.Join(dir, "layout")
		out, err := exec.Command("python3", filepath.Join("..", "..", "scripts", "busybox-image.py"), layout).CombinedOutput()
		if err != nil {
			t.Fatalf("busybox-image.py: %v\n%s", err, out)
		}
		f.image = "oci:" + layout + ":latest"
	}
	f.opts = flick.HostOptions{
		StateDir:   filepath.Join(dir, "state"),
		CacheDir:   filepath.Join(dir, "cache"),
		RunDir:     filepath.Join(dir, "run"),
		Kernel:     kernel,
		KVMDevice:  "/nonexistent/kvm",
		VMMProgram: "/nonexistent/flick-vmm",
		Networking: flick.NetworkingNone,
	}
	f.host = f.open(t)
	t.Cleanup(func() {
		if err := f.host.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

func (f *fixture) open(t *testing.T) *flick.Host {
	h, err := flick.OpenHost(f.opts)
	if err != nil {
		t.Fatalf("OpenHost: %v", err)
	}
	return h
}

func (f *fixture) config() flick.MachineConfig {
	return flick.MachineConfig{
		Image:    f.image,
		Init:     &flick.Init{Cmd: []string{"sleep", "60"}},
		Metadata: map[string]string{"role": "web"},
	}
}

func (f *fixture) create(t *testing.T, c flick.MachineCreate) *flick.Machine {
	t.Helper()
	c.SkipLaunch = true
	m, err := f.host.CreateMachine(context.Background(), c)
	if err != nil {
		t.Fatalf("CreateMachine: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestAClosedHostIsRefused(t *testing.T) {
	f := newFixture(t)
	h := f.open(t)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := h.Images()
	if !errors.Is(err, flick.ErrInvalid) || !strings.Contains(err.Error(), "already freed") {
		t.Fatalf("a closed host used again: %v", err)
	}
	if err := h.Close(); !errors.Is(err, flick.ErrInvalid) {
		t.Fatalf("a second Close: %v", err)
	}
	var e *flick.Error
	if !errors.As(err, &e) || e.Class != flick.ClassInvalidArgument {
		t.Fatalf("class of %v", err)
	}
}

func TestBadConfigsNameTheField(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.config()
	c.Guest = &flick.Guest{CPUKind: "turbo"}
	_, err := f.host.CreateMachine(ctx, flick.MachineCreate{Config: c, SkipLaunch: true})
	if !errors.Is(err, flick.ErrInvalid) || !strings.Contains(err.Error(), "guest.cpu_kind") {
		t.Fatalf("a bad cpu_kind: %v", err)
	}
	_, err = f.host.CreateMachine(ctx, flick.MachineCreate{
		RawConfig: json.RawMessage(`{"image": "` + f.image + `", "guest": {"cpuz": 2}}`), SkipLaunch: true})
	if !errors.Is(err, flick.ErrInvalid) || !strings.Contains(err.Error(), "guest.cpuz") {
		t.Fatalf("an unknown field: %v", err)
	}
	_, err = f.host.CreateMachine(ctx, flick.MachineCreate{RawConfig: json.RawMessage(`{"image": `), SkipLaunch: true})
	if !errors.Is(err, flick.ErrMalformed) {
		t.Fatalf("JSON that does not parse: %v", err)
	}
	if list, err := f.host.ListMachines(flick.MachineFilter{}); err != nil || len(list) != 0 {
		t.Fatalf("nothing was made: %v %v", list, err)
	}
}

func TestServicesRoundTrip(t *testing.T) {
	f := newFixture(t)
	c := f.config()
	c.Services = []flick.Service{{
		Protocol:     "tcp",
		InternalPort: 8080,
		Ports:        []flick.Port{{Port: 18080}, {Port: 18443, Handlers: []string{"tls", "http"}}},
		Autostart:    true,
		Autostop:     flick.AutostopSuspend,
		Concurrency:  &flick.Concurrency{Type: "connections", SoftLimit: 20, HardLimit: 25},
		AutostopIdle: "2m",
	}}
	m := f.create(t, flick.MachineCreate{Config: c})
	info, err := m.Get()
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Services json.RawMessage `json:"services"`
	}
	want := `[{"protocol":"tcp","internal_port":8080,"ports":[{"port":18080},{"port":18443,"handlers":["tls","http"]}],` +
		`"autostart":true,"autostop":"suspend","concurrency":{"type":"connections","soft_limit":20,"hard_limit":25},` +
		`"autostop_idle":"2m"}]`
	if err := json.Unmarshal(info.Config, &raw); err != nil || string(raw.Services) != want {
		t.Fatalf("services as stored: %s %v", raw.Services, err)
	}
	got, err := info.DecodeConfig()
	if err != nil || len(got.Services) != 1 || got.Services[0].Autostop != flick.AutostopSuspend ||
		len(got.Services[0].Ports) != 2 || got.Services[0].Ports[1].Handlers[1] != "http" ||
		got.Services[0].Concurrency == nil || got.Services[0].Concurrency.HardLimit != 25 {
		t.Fatalf("decoded: %+v %v", got, err)
	}
	// Fly's older boolean autostop reads as "stop".
	var s flick.Service
	if err := json.Unmarshal([]byte(`{"internal_port":80,"autostop":true}`), &s); err != nil || s.Autostop != flick.AutostopStop {
		t.Fatalf("a boolean autostop: %+v %v", s, err)
	}
	// A bad service is refused naming the field.
	c.Services[0].Ports[0].Port = 70000
	_, err = f.host.CreateMachine(context.Background(), flick.MachineCreate{Config: c, SkipLaunch: true})
	if !errors.Is(err, flick.ErrInvalid) || !strings.Contains(err.Error(), "services[0].ports[0].port: 70000 is not in 1..65535") {
		t.Fatalf("a port out of range: %v", err)
	}
}

func TestImagesPullListAndRemove(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	calls := 0
	img, err := f.host.Pull(ctx, f.image, flick.PullOptions{Progress: func(done, total uint64) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if img.Reference != f.image || !strings.HasPrefix(img.ImageDigest, "sha256:") || img.BlobBytes == 0 {
		t.Fatalf("pulled %+v", img)
	}
	if calls != 0 {
		t.Errorf("a local layout reported progress %d times", calls)
	}
	images, err := f.host.Images()
	if err != nil || len(images) != 1 || images[0].ImageDigest != img.ImageDigest {
		t.Fatalf("Images: %+v %v", images, err)
	}
	_, err = f.host.Pull(ctx, "oci:"+filepath.Join(f.dir, "nowhere")+":latest", flick.PullOptions{Policy: flick.PullNever})
	if err == nil {
		t.Fatal("a pull of nothing succeeded")
	}
	if _, _, err := f.host.RemoveImage(f.image); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.host.RemoveImage(f.image); !errors.Is(err, flick.ErrNotFound) {
		t.Fatalf("a second RemoveImage: %v", err)
	}
}

func TestMachineLifecycleWithoutBooting(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m := f.create(t, flick.MachineCreate{Config: f.config(), Name: "web-1"})
	info, err := m.Get()
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != m.ID() || info.Name != "web-1" || info.App != "default" || info.State != "created" ||
		info.Region != "local" || info.Version != 1 || info.Cordoned {
		t.Fatalf("Get: %+v", info)
	}
	if len(info.Events) == 0 || info.Events[0].Type != "launch" {
		t.Fatalf("events: %+v", info.Events)
	}
	if !strings.HasPrefix(info.ImageRef.Digest, "sha256:") {
		t.Errorf("image_ref: %+v", info.ImageRef)
	}
	cfg, err := info.DecodeConfig()
	if err != nil || cfg.Image != f.image || cfg.Init == nil || cfg.Init.Cmd[0] != "sleep" || cfg.Guest == nil || cfg.Guest.CPUs != 1 {
		t.Fatalf("config: %+v %v", cfg, err)
	}
	if s, err := m.State(); err != nil || s != flick.StateCreated || s.String() != "created" {
		t.Fatalf("State: %v %v", s, err)
	}

	again, err := f.host.OpenMachine("web-1", "")
	if err != nil || again.ID() != m.ID() {
		t.Fatalf("OpenMachine: %v", err)
	}
	again.Close()
	if _, err := f.host.OpenMachine("web-2", ""); !errors.Is(err, flick.ErrNotFound) {
		t.Fatalf("OpenMachine of nothing: %v", err)
	}

	// A second machine in another app; filters by app, metadata and state.
	if _, err := f.host.CreateApp("shop", ""); err != nil {
		t.Fatal(err)
	}
	dbConfig := f.config()
	dbConfig.Metadata = map[string]string{"role": "db"}
	other := f.create(t, flick.MachineCreate{Config: dbConfig, App: "shop"})
	list := func(filter flick.MachineFilter) []flick.MachineInfo {
		t.Helper()
		l, err := f.host.ListMachines(filter)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if n := len(list(flick.MachineFilter{})); n != 2 {
		t.Fatalf("%d machines", n)
	}
	if l := list(flick.MachineFilter{App: "shop"}); len(l) != 1 || l[0].ID != other.ID() {
		t.Fatalf("app filter: %+v", l)
	}
	if l := list(flick.MachineFilter{Metadata: map[string]string{"role": "web"}}); len(l) != 1 || l[0].ID != m.ID() {
		t.Fatalf("metadata filter: %+v", l)
	}
	if l := list(flick.MachineFilter{States: []flick.State{flick.StateStopped}}); len(l) != 0 {
		t.Fatalf("state filter: %+v", l)
	}
	if _, err := f.host.ListMachines(flick.MachineFilter{States: []flick.State{12}}); !errors.Is(err, flick.ErrInvalid) {
		t.Fatalf("a bad state: %v", err)
	}

	// Update to a new version, left created; a stale version is busy.
	next := f.config()
	next.Guest = &flick.Guest{CPUs: 2, MemoryMB: 128}
	if err := m.Update(flick.MachineUpdate{Config: next, SkipLaunch: true}); err != nil {
		t.Fatal(err)
	}
	if info, _ := m.Get(); info.Version != 2 {
		t.Fatalf("version %d after update", info.Version)
	}
	if err := m.Update(flick.MachineUpdate{Config: next, SkipLaunch: true, CurrentVersion: 1}); !errors.Is(err, flick.ErrBusy) {
		t.Fatalf("an update from a stale version: %v", err)
	}

	// Not started: exec is busy, logs are empty, a start fails here (no KVM) with a reason.
	if _, err := m.Exec(ctx, "true"); !errors.Is(err, flick.ErrBusy) {
		t.Fatalf("exec in a created machine: %v", err)
	}
	if logs, err := m.Logs(); err != nil || len(logs) != 0 {
		t.Fatalf("logs: %q %v", logs, err)
	}
	if events, err := m.Events(); err != nil || len(events) < 2 || events[0].Type != "update" {
		t.Fatalf("events: %+v %v", events, err)
	}
	if err := m.Start(); err == nil || err.Error() == "flick: " {
		t.Fatalf("a start without KVM: %v", err)
	}
	if s, _ := m.State(); s == flick.StateStarted {
		t.Fatal("started without KVM")
	}

	// Wait with a deadline: it times out as ErrTimeout; cancelled, it is ctx.Err().
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := m.Wait(short, flick.StateStarted); !errors.Is(err, flick.ErrTimeout) {
		t.Fatalf("Wait past its deadline: %v", err)
	}
	cancelled, cancelNow := context.WithCancel(ctx)
	cancelNow()
	if err := m.Wait(cancelled, flick.StateStarted); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait cancelled: %v", err)
	}

	// Clone, left created.
	copy, err := f.host.Clone(m, flick.CloneOptions{Name: "web-copy", SkipLaunch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer copy.Close()
	if ci, err := copy.Get(); err != nil || ci.Name != "web-copy" || ci.ID == m.ID() {
		t.Fatalf("clone: %+v %v", ci, err)
	}

	// Destroy: gone from the list, there with IncludeDeleted; the handle says so.
	if err := m.Destroy(false); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancelWait := context.WithTimeout(ctx, time.Second)
	defer cancelWait()
	if err := m.Wait(waitCtx, flick.StateDestroyed); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(); !errors.Is(err, flick.ErrNotFound) || !strings.Contains(err.Error(), "was destroyed") {
		t.Fatalf("Get of a destroyed machine: %v", err)
	}
	if n := len(list(flick.MachineFilter{})); n != 2 {
		t.Fatalf("%d live machines", n)
	}
	if n := len(list(flick.MachineFilter{IncludeDeleted: true})); n != 3 {
		t.Fatalf("%d machines with the deleted", n)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); !errors.Is(err, flick.ErrInvalid) {
		t.Fatalf("a second Close: %v", err)
	}
}

func TestMetadataLeasesAndCordon(t *testing.T) {
	f := newFixture(t)
	m := f.create(t, flick.MachineCreate{Config: f.config()})
	if err := m.MetadataSet("tier", "gold"); err != nil {
		t.Fatal(err)
	}
	if v, err := m.MetadataGet("tier"); err != nil || v != "gold" {
		t.Fatalf("MetadataGet: %q %v", v, err)
	}
	if md, err := m.Metadata(); err != nil || len(md) != 2 || md["role"] != "web" {
		t.Fatalf("Metadata: %v %v", md, err)
	}
	if err := m.MetadataDelete("tier"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.MetadataGet("tier"); !errors.Is(err, flick.ErrNotFound) {
		t.Fatalf("a deleted key: %v", err)
	}
	if err := m.MetadataSet("bad key!", "x"); !errors.Is(err, flick.ErrInvalid) {
		t.Fatalf("a bad key: %v", err)
	}

	if _, err := m.Lease(); !errors.Is(err, flick.ErrNotFound) {
		t.Fatalf("no lease yet: %v", err)
	}
	lease, err := m.AcquireLease(time.Minute, "deploy")
	if err != nil || len(lease.Nonce) != 32 || lease.Description != "deploy" {
		t.Fatalf("AcquireLease: %+v %v", lease, err)
	}
	other, err := f.host.OpenMachine(m.ID(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Cordon(); !errors.Is(err, flick.ErrLeaseHeld) {
		t.Fatalf("cordon under another's lease: %v", err)
	}
	if err := m.Cordon(); err != nil {
		t.Fatal(err)
	}
	if info, _ := m.Get(); !info.Cordoned {
		t.Fatal("not cordoned")
	}
	if err := other.SetLeaseNonce(lease.Nonce); err != nil {
		t.Fatal(err)
	}
	if err := other.Uncordon(); err != nil {
		t.Fatal(err)
	}
	if err := m.ReleaseLease(lease.Nonce); err != nil {
		t.Fatal(err)
	}
	if err := other.SetLeaseNonce(""); err != nil {
		t.Fatal(err)
	}
	if err := other.Cordon(); err != nil {
		t.Fatal(err)
	}
}

func TestAppsAndVolumes(t *testing.T) {
	f := newFixture(t)
	v, err := f.host.CreateVolume("data", "", 1)
	if err != nil || v.Name != "data" || v.SizeGB != 1 || v.App != "default" || v.AttachedMachineID != nil {
		t.Fatalf("CreateVolume: %+v %v", v, err)
	}
	if _, err := f.host.CreateVolume("Bad Name", "", 1); !errors.Is(err, flick.ErrInvalid) {
		t.Fatalf("a bad name: %v", err)
	}
	if v2, err := f.host.ExtendVolume("data", "", 3); err != nil || v2.SizeGB != 3 {
		t.Fatalf("ExtendVolume: %+v %v", v2, err)
	}
	if _, err := f.host.CreateApp("shop", "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.host.CreateApp("shop", ""); !errors.Is(err, flick.ErrExists) {
		t.Fatalf("an app twice: %v", err)
	}
	if _, err := f.host.CreateVolume("data", "shop", 1); err != nil {
		t.Fatal(err)
	}
	if l, err := f.host.Volumes(""); err != nil || len(l) != 2 {
		t.Fatalf("Volumes: %+v %v", l, err)
	}
	apps, err := f.host.Apps()
	if err != nil || len(apps) != 2 || apps[1].Organization.Slug != "acme" || apps[1].VolumeCount != 1 {
		t.Fatalf("Apps: %+v %v", apps, err)
	}
	if err := f.host.DestroyApp("shop", false); !errors.Is(err, flick.ErrBusy) {
		t.Fatalf("destroying an app with a volume: %v", err)
	}
	if err := f.host.DestroyApp("shop", true); err != nil {
		t.Fatal(err)
	}
	if err := f.host.DestroyVolume(v.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.host.DestroyVolume("vol_0000000000000000", ""); !errors.Is(err, flick.ErrNotFound) {
		t.Fatalf("DestroyVolume of nothing: %v", err)
	}
	if l, err := f.host.Volumes(""); err != nil || len(l) != 0 {
		t.Fatalf("Volumes after: %+v %v", l, err)
	}
}
