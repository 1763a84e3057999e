//go:build linuxguest

package flick_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"flick.dev/flick"
)

// End-to-end on a real Linux guest (build tag linuxguest): a machine boots, execs, logs, stops,
// starts again and is destroyed. Needs a /dev/kvm that runs Linux, the guest kernel in
// FLICK_KERNEL/FLICK_KERNEL_MODULES and a local busybox image in FLICK_TEST_IMAGE;
// tests/bindings/bindings_linux_test.py builds it with `go test -tags linuxguest -c` and runs it (in the
// test host where this machine's /dev/kvm cannot run Linux). Nothing here skips.

func TestLinuxGuestBootsExecsStopsAndStartsAgain(t *testing.T) {
	for _, name := range []string{"FLICK_KERNEL", "FLICK_KERNEL_MODULES", "FLICK_TEST_IMAGE"} {
		if os.Getenv(name) == "" {
			t.Fatalf("%s is not set (tests/bindings/bindings_linux_test.py sets it)", name)
		}
	}
	dir := t.TempDir()
	host, err := flick.OpenHost(flick.HostOptions{StateDir: dir + "/state", CacheDir: dir + "/cache",
		RunDir: dir + "/run", Networking: flick.NetworkingNone})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	config := flick.MachineConfig{Image: os.Getenv("FLICK_TEST_IMAGE"), Env: map[string]string{"MODE": "e2e"},
		Guest:   &flick.Guest{MemoryMB: 256},
		Init:    &flick.Init{Cmd: []string{"sh", "-c", "echo booted-$MODE; exec sleep 3600"}},
		Restart: &flick.Restart{Policy: "no"}}
	m, err := host.CreateMachine(ctx, flick.MachineCreate{Config: config, Name: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("wait started", m.Wait(ctx, flick.StateStarted))

	out, err := m.ExecWith(ctx, flick.ExecOptions{Argv: []string{"sh", "-c", `read line; echo "$line-$EXTRA"; echo oops >&2; exit 3`},
		Stdin: []byte("hello\n"), Env: []string{"EXTRA=x"}})
	must("exec", err)
	if out.ExitCode != 3 || string(out.Stdout) != "hello-x\n" || string(out.Stderr) != "oops\n" {
		t.Fatalf("exec: exit %d, stdout %q, stderr %q", out.ExitCode, out.Stdout, out.Stderr)
	}
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	_, err = m.Exec(short, "sleep", "30")
	cancelShort()
	if !errors.Is(err, flick.ErrTimeout) {
		t.Fatalf("an exec past its context's deadline: %v, want ErrTimeout", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		logs, err := m.Logs()
		must("logs", err)
		if bytes.Contains(logs, []byte("booted-e2e")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the program's output is not in the console log:\n%s", logs)
		}
		time.Sleep(200 * time.Millisecond)
	}

	must("stop", m.Stop(flick.StopOptions{}))
	must("wait stopped", m.Wait(ctx, flick.StateStopped))
	if _, err := m.Exec(ctx, "true"); !errors.Is(err, flick.ErrBusy) {
		t.Fatalf("exec in a stopped machine: %v, want ErrBusy", err)
	}
	must("start", m.Start())
	must("wait started again", m.Wait(ctx, flick.StateStarted))
	out, err = m.Exec(ctx, "echo", "again")
	must("exec again", err)
	if string(out.Stdout) != "again\n" {
		t.Fatalf("exec after the restart: %q", out.Stdout)
	}

	must("signal", m.Signal(syscall.SIGKILL)) // restart "no": the machine stops
	must("wait stopped after the signal", m.Wait(ctx, flick.StateStopped))
	events, err := m.Events()
	must("events", err)
	starts, exits := 0, 0
	for _, e := range events {
		switch e.Type {
		case "start":
			starts++
		case "exit":
			exits++
		}
	}
	if starts < 2 || exits < 1 {
		t.Fatalf("events: %d starts, %d exits: %+v", starts, exits, events)
	}
	must("destroy", m.Destroy(true))
	if list, err := host.ListMachines(flick.MachineFilter{}); err != nil || len(list) != 0 {
		t.Fatalf("after destroy: %d machines listed, %v", len(list), err)
	}
}
