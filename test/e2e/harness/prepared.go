package harness

import (
	"encoding/json"
	"fmt"
	"os"
)

// EnvPrepared names the JSON file (a Prepared) the host phase writes before
// it runs the scenarios inside the sealed network namespace.
const EnvPrepared = "CIEL_E2E_PREPARED"

// Prepared is what the host phase made for the netns phase: everything
// that needs the Go module proxy, which the sealed namespace cannot reach.
type Prepared struct {
	// Binaries maps a program name to its path: "etcd", "kube-apiserver",
	// "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet",
	// "kubelet-arm64", "coredns", "kaniko-executor-amd64",
	// "kaniko-executor-arm64", "pause-amd64", "pause-arm64", "ko".
	Binaries map[string]string `json:"binaries"`
	// PipelineSrc and TriggersSrc are writable copies of the Tekton
	// Pipelines and Triggers modules at the versions of build/tekton, with
	// their dependencies in the module cache (ko runs with GOPROXY=off).
	PipelineSrc string `json:"pipelineSrc"`
	TriggersSrc string `json:"triggersSrc"`
	// CielRoot is the ciel repository whose `make release` is installed.
	CielRoot string `json:"cielRoot"`
	// CacheDir is the suite's cache (binaries, registry storage, resolved
	// release files).
	CacheDir string `json:"cacheDir"`
}

// ReadPrepared reads the file EnvPrepared names.
func ReadPrepared() (*Prepared, error) {
	path := os.Getenv(EnvPrepared)
	if path == "" {
		return nil, fmt.Errorf("%s is not set: run the suite through cmd/e2e-run (make -C test/e2e e2e)", EnvPrepared)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the prepared manifest: %w", err)
	}
	var p Prepared
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return &p, nil
}

// Write writes p to path.
func (p *Prepared) Write(path string) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
