// Package httpserve runs the HTTP server of a ciel process (the
// interceptor's service, the reporter's probes and metrics) the same way:
// served in the background on a listener the caller opened (Start), a
// failure of the server reported on a channel (Failed), and a shutdown that
// stops accepting and gives in-flight requests a bounded time (Shutdown).
// The http.Server itself, with its timeouts, is the caller's.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server is an http.Server serving in the background.
type Server struct {
	hs     *http.Server
	failed chan error
}

// Start serves hs on ln in a goroutine.
func Start(hs *http.Server, ln net.Listener) *Server {
	s := &Server{hs: hs, failed: make(chan error, 1)}
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.failed <- fmt.Errorf("serving: %w", err)
		}
		close(s.failed)
	}()
	return s
}

// Failed receives the error that stopped the server before Shutdown; it is
// closed once the server stopped.
func (s *Server) Failed() <-chan error { return s.failed }

// Shutdown stops accepting connections and waits for the requests in
// flight, for at most timeout.
func (s *Server) Shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.hs.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}
