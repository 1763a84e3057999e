package flick_test

import (
	"os"
	"strconv"
	"testing"

	"flick.dev/flick"
)

// Benchmarks for bench/bindings/bindings_bench.py, which makes the state directory and names it
// in FLICK_BENCH_* (run alone, they skip): the Go column of its get and list per-call times.

func benchHost(b *testing.B) (*flick.Host, string, string, int) {
	state := os.Getenv("FLICK_BENCH_STATE_DIR")
	if state == "" {
		b.Skip("FLICK_BENCH_STATE_DIR is not set: bench/bindings/bindings_bench.py sets it")
	}
	machines, err := strconv.Atoi(os.Getenv("FLICK_BENCH_MACHINES"))
	if err != nil {
		b.Fatalf("FLICK_BENCH_MACHINES: %v", err)
	}
	host, err := flick.OpenHost(flick.HostOptions{
		StateDir: state, CacheDir: os.Getenv("FLICK_BENCH_CACHE_DIR"), RunDir: os.Getenv("FLICK_BENCH_RUN_DIR"),
		Kernel: os.Getenv("FLICK_BENCH_KERNEL"), VMMProgram: os.Getenv("FLICK_BENCH_VMM"),
		Networking: flick.NetworkingNone,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { host.Close() })
	return host, os.Getenv("FLICK_BENCH_APP"), os.Getenv("FLICK_BENCH_ID"), machines
}

func BenchmarkCallGet(b *testing.B) {
	host, app, id, _ := benchHost(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, err := host.OpenMachine(id, app)
		if err != nil {
			b.Fatal(err)
		}
		info, err := m.Get()
		if err != nil || info.ID != id {
			b.Fatalf("get: %v", err)
		}
		m.Close()
	}
}

func BenchmarkCallList(b *testing.B) {
	host, app, _, machines := benchHost(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		list, err := host.ListMachines(flick.MachineFilter{App: app})
		if err != nil || len(list) != machines {
			b.Fatalf("list: %d machines, %v", len(list), err)
		}
	}
}
