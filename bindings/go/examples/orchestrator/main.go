// The orchestrator example: an app's three machines from one image, started, waited for,
// an exec in one, listed, stopped and destroyed. Needs KVM. Usage: orchestrator [IMAGE]
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"flick.dev/flick"
)

func main() {
	image := "busybox"
	if len(os.Args) > 1 {
		image = os.Args[1]
	}
	host, err := flick.OpenHost(flick.HostOptions{})
	check(err)
	defer host.Close()
	// Generous: a boot takes well under a second on KVM, a minute under emulation.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	_, err = host.CreateApp("shop", "")
	check(err)
	config := flick.MachineConfig{Image: image, Init: &flick.Init{Cmd: []string{"sleep", "3600"}},
		Guest: &flick.Guest{CPUs: 1, MemoryMB: 128}, Metadata: map[string]string{"role": "web"}}
	var machines []*flick.Machine
	for i := 1; i <= 3; i++ {
		m, err := host.CreateMachine(ctx, flick.MachineCreate{Config: config, App: "shop", Name: fmt.Sprintf("web-%d", i)})
		check(err)
		defer m.Close()
		check(m.Wait(ctx, flick.StateStarted))
		machines = append(machines, m)
	}
	out, err := machines[0].Exec(ctx, "uname", "-a")
	check(err)
	fmt.Printf("exec in %s: exit %d: %s", machines[0].ID(), out.ExitCode, out.Stdout)
	list, err := host.ListMachines(flick.MachineFilter{App: "shop", Metadata: map[string]string{"role": "web"}})
	check(err)
	for _, m := range list {
		fmt.Println(m.ID, m.Name, m.State)
	}
	for _, m := range machines {
		check(m.Stop(flick.StopOptions{}))
		check(m.Destroy(false))
	}
	check(host.DestroyApp("shop", false))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
