package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// NodeRegistry is the cluster's image registry: Debian's docker-registry
// (CNCF Distribution) on the node address, plain HTTP, as reachable from
// containerd, from pods and from the clients in the network namespace.
// Its storage lives in the cache directory, so images pushed by one run
// (Tekton's, Kaniko's, ciel's release) are there for the next.
type NodeRegistry struct {
	// Host is "NODE_IP:PORT", the registry part of image references.
	Host    string
	Process *Process
}

// StartNodeRegistry starts docker-registry on addr with its storage in
// storageDir and waits until it answers /v2/.
func StartNodeRegistry(ctx context.Context, sup *Supervisor, addr, storageDir string) (*NodeRegistry, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, fmt.Errorf("the cluster's registry: docker-registry is not installed (Debian: apt-get install docker-registry): %w", err)
	}
	if err := os.MkdirAll(storageDir, 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: ciel-e2e
`, storageDir, addr)
	cfgFile := filepath.Join(sup.LogDir(), "..", "registry.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := sup.Start(ProcessSpec{Name: "registry", Path: bin, Args: []string{"serve", cfgFile}})
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = waitUntil(wctx, 100*time.Millisecond, "registry /v2/", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, hc, "http://"+addr+"/v2/")
	}, p)
	if err != nil {
		return nil, err
	}
	return &NodeRegistry{Host: addr, Process: p}, nil
}
