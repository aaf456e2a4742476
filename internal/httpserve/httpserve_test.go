package httpserve

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestServeAndShutdown: the server answers, a request in flight finishes
// during Shutdown, and Failed is closed without an error afterwards.
func TestServeAndShutdown(t *testing.T) {
	ln := listen(t)
	release := make(chan struct{})
	started := make(chan struct{})
	s := Start(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "ok")
	})}, ln)
	base := "http://" + ln.Addr().String()
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		slow <- string(b)
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(10 * time.Second) }()
	time.Sleep(20 * time.Millisecond) // Shutdown is waiting for /slow
	close(release)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	if got := <-slow; got != "ok" {
		t.Errorf("in-flight request got %q, want ok", got)
	}
	if err, open := <-s.Failed(); open || err != nil {
		t.Errorf("Failed() after Shutdown: %v, open %v; want closed", err, open)
	}
}

// TestFailed: a server that stops on its own (its listener closed) says so.
func TestFailed(t *testing.T) {
	ln := listen(t)
	s := Start(&http.Server{Handler: http.NotFoundHandler()}, ln)
	ln.Close()
	select {
	case err := <-s.Failed():
		if err == nil || !strings.HasPrefix(err.Error(), "serving: ") {
			t.Errorf("Failed() = %v, want a serving error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no failure after the listener closed")
	}
}

// TestShutdownTimeout: a request that outlives the timeout makes Shutdown
// fail with the context's error.
func TestShutdownTimeout(t *testing.T) {
	ln := listen(t)
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	s := Start(&http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(started)
		<-release
	})}, ln)
	go http.Get("http://" + ln.Addr().String() + "/") //nolint:errcheck // held open on purpose
	<-started
	if err := s.Shutdown(20 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown() = %v, want the deadline", err)
	}
}
