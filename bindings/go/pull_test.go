package flick_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flick.dev/flick"
)

// A registry on loopback (docker-registry, the busybox image copied in with skopeo): a
// pull reports progress to a Go callback; a callback that panics stops the pull and the
// panic comes back from Pull, the process going on; a cancelled context stops it too.
func TestRegistryPullProgressPanicAndCancel(t *testing.T) {
	f := newFixture(t)
	for _, tool := range []string{"docker-registry", "skopeo"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip(t, tool+" is not installed (scripts/install-deps.sh installs it)")
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	registry := l.Addr().String()
	l.Close()
	cfg := filepath.Join(f.dir, "registry.yml")
	yml := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(f.dir, "registry"), registry)
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	serve := exec.Command("docker-registry", "serve", cfg)
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serve.Process.Kill(); serve.Wait() })
	ref := registry + "/busybox:latest"
	var pushed []byte
	for i := 0; i < 100; i++ {
		if pushed, err = exec.Command("skopeo", "copy", "-q", "--dest-tls-verify=false", f.image, "docker://"+ref).CombinedOutput(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, pushed)
	}

	opts := f.opts
	opts.CacheDir = filepath.Join(f.dir, "pull-cache")
	opts.InsecureRegistries = []string{registry}
	h, err := flick.OpenHost(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()

	_, err = h.Pull(ctx, ref, flick.PullOptions{Progress: func(done, total uint64) { panic("boom") }})
	var pe *flick.CallbackPanicError
	if !errors.As(err, &pe) || pe.Value != "boom" || !errors.Is(err, flick.ErrCancelled) {
		t.Fatalf("a panicking callback: %v", err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.Pull(cancelled, ref, flick.PullOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled pull: %v", err)
	}

	var calls int
	var lastTotal uint64
	img, err := h.Pull(ctx, ref, flick.PullOptions{Progress: func(done, total uint64) { calls++; lastTotal = total }})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(img.ImageDigest, "sha256:") || calls == 0 || lastTotal == 0 {
		t.Fatalf("pulled %+v after %d reports (total %d)", img, calls, lastTotal)
	}
}
