package flick_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"flick.dev/flick"
)

// The last error is per OS thread: goroutines failing at once, each in its own way, each
// get their own error back.
func TestErrorsOfConcurrentCallsDoNotMix(t *testing.T) {
	f := newFixture(t)
	m := f.create(t, flick.MachineCreate{Config: f.config()})
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			key := fmt.Sprintf("missing-%d", g)
			for i := 0; i < 25; i++ {
				_, err := m.MetadataGet(key)
				if !errors.Is(err, flick.ErrNotFound) || !strings.Contains(err.Error(), key) {
					errs <- fmt.Errorf("goroutine %d: MetadataGet: %v", g, err)
				}
				err = m.MetadataSet("bad key!", "x")
				if !errors.Is(err, flick.ErrInvalid) {
					errs <- fmt.Errorf("goroutine %d: MetadataSet: %v", g, err)
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A handle closed while other goroutines use it: their calls succeed or fail with
// ErrInvalid, nothing else, and nothing crashes.
func TestClosingAMachineWhileOthersUseIt(t *testing.T) {
	f := newFixture(t)
	m, err := f.host.CreateMachine(context.Background(), flick.MachineCreate{Config: f.config(), SkipLaunch: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := m.Metadata(); err != nil && !errors.Is(err, flick.ErrInvalid) {
					errs <- err
				}
			}
		}()
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := m.Metadata(); !errors.Is(err, flick.ErrInvalid) {
		t.Fatalf("a closed machine handle: %v", err)
	}
}

// A machine destroyed through another host (as another process would) is ErrNotFound
// through this handle, and its state reads destroyed.
func TestAMachineDestroyedElsewhereIsNotFound(t *testing.T) {
	f := newFixture(t)
	m := f.create(t, flick.MachineCreate{Config: f.config()})
	second := f.open(t)
	there, err := second.OpenMachine(m.ID(), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if err := there.Destroy(true); err != nil { // its host closed: the handle still works
		t.Fatal(err)
	}
	there.Close()
	if err := m.Cordon(); !errors.Is(err, flick.ErrNotFound) {
		t.Fatalf("cordon of a machine destroyed elsewhere: %v", err)
	}
	if s, err := m.State(); err != nil || s != flick.StateDestroyed {
		t.Fatalf("State: %v %v", s, err)
	}
}
