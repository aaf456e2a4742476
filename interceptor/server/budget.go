package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"google.golang.org/grpc/codes"
)

const (
	// DefaultMaxBodyBytes is the largest webhook body the interceptor
	// command accepts by default: a GitLab push lists at most 20 commits,
	// and 20 commits adding 5,000 paths each (100,000 paths, a monorepo's
	// largest realistic push) make a 4.4 MB body (test/bench
	// BenchmarkMonorepoPush); 10 MiB leaves room for long paths and
	// messages.
	DefaultMaxBodyBytes = 10 << 20
	// DefaultMaxInFlightBytes bounds the bytes of all requests held in
	// memory at once; a request past it is answered Unavailable at once,
	// before its body is read.
	DefaultMaxInFlightBytes = 64 << 20
	// smallRequestBytes is the size up to which a request may use the
	// whole in-flight budget; larger ones leave reservedBytes free, so
	// that ordinary deliveries (a few KiB) are served during a flood of
	// large requests.
	smallRequestBytes = 1 << 20
	reservedBytes     = 8 << 20
)

// MaxRequestBytesFor is the InterceptorRequest bound for a webhook body
// bound: the body is a JSON string in the envelope, where escapes may make
// it up to twice as long (quotes, backslashes, newlines), plus 1 MiB for
// the header, params and context.
func MaxRequestBytesFor(maxBodyBytes int64) int64 { return 2*maxBodyBytes + 1<<20 }

// budget counts the bytes of the requests held in memory.
type budget struct {
	mu    sync.Mutex
	used  int64
	limit int64
}

// take reserves n bytes, or says no.
func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	limit := b.limit
	if n > smallRequestBytes {
		limit -= reservedBytes
	}
	if b.used+n > limit {
		return false
	}
	b.used += n
	return true
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// InFlightBytes is how many bytes of requests are held in memory now.
func (s *Server) InFlightBytes() int64 {
	s.budget.mu.Lock()
	defer s.budget.mu.Unlock()
	return s.budget.used
}

// readError is a request refused before it is decoded.
type readError struct {
	code   codes.Code
	status int
	msg    string
}

// readRequest reads the request's bytes once, into one buffer of exactly
// their size when the length is known (the EventListener always sends it),
// counted against the in-flight budget. The caller gives back held bytes
// when the response is written.
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request) (buf []byte, held int64, rerr *readError) {
	limit := s.cfg.MaxRequestBytes
	tooLarge := &readError{codes.InvalidArgument, http.StatusRequestEntityTooLarge,
		fmt.Sprintf("request larger than %d bytes: the webhook body is too large (the interceptor's --max-body-bytes)", limit)}
	busy := func(n int64) *readError {
		return &readError{codes.Unavailable, http.StatusServiceUnavailable, fmt.Sprintf(
			"the interceptor is holding its limit of %d bytes of requests; this %d-byte request was not read: retry later (the EventListener does not retry: redeliver from GitLab's webhook page)",
			s.cfg.MaxInFlightBytes, n)}
	}
	if n := r.ContentLength; n >= 0 {
		if n > limit {
			return nil, 0, tooLarge
		}
		if !s.budget.take(n) {
			return nil, 0, busy(n)
		}
		buf = make([]byte, n)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, n, &readError{codes.InvalidArgument, http.StatusBadRequest, "reading the request: " + err.Error()}
		}
		return buf, n, nil
	}
	// Unknown length: grow, taking each step from the budget.
	body := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(buf) == cap(buf) {
			// Double, up to one byte past the limit (MaxBytesReader
			// reports that byte as too large).
			grow := max(int64(cap(buf)), 64<<10)
			if room := limit + 1 - int64(cap(buf)); grow > room {
				grow = max(room, 1)
			}
			if !s.budget.take(grow) {
				return nil, held, busy(held + grow)
			}
			held += grow
			// Exactly the capacity the budget paid for (append could
			// round it up, and the loop would read into unpaid bytes).
			nb := make([]byte, len(buf), int64(cap(buf))+grow)
			copy(nb, buf)
			buf = nb
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, held, nil
		}
		if err != nil {
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				return nil, held, tooLarge
			}
			return nil, held, &readError{codes.InvalidArgument, http.StatusBadRequest, "reading the request: " + err.Error()}
		}
	}
}
