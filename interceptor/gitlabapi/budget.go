package gitlabapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
)

// Errors of the caps: a lookup stopped by one is truncated, not failed.
var (
	errPageCap = errors.New("diff page limit reached")
	errByteCap = errors.New("response byte limit reached")
	errTimeCap = errors.New("time limit reached")
	errNotACap = errors.New("not a cap")
)

// budget is what one push's lookup may still spend.
type budget struct {
	limits
	pages int          // diff pages requested (one goroutine)
	read  atomic.Int64 // response bytes read (the transport's goroutines)
}

// capped reports whether err is a cap of b stopping the lookup (ctx is the
// lookup's context, whose deadline is the time cap).
func (b *budget) capped(ctx context.Context, err error) bool {
	return b.reason(ctx, err) != errNotACap
}

// reason is the cap that stopped the lookup, or errNotACap.
func (b *budget) reason(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, errPageCap):
		return errPageCap
	case errors.Is(err, errByteCap):
		return errByteCap
	case errors.Is(context.Cause(ctx), errTimeCap):
		return errTimeCap
	}
	return errNotACap
}

type budgetKey struct{}

func withBudget(ctx context.Context, b *budget) context.Context {
	return context.WithValue(ctx, budgetKey{}, b)
}

// countingTransport charges the bytes of each response body to the budget
// in the request's context, failing the read past the byte cap.
type countingTransport struct{ base http.RoundTripper }

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if b, ok := req.Context().Value(budgetKey{}).(*budget); ok && resp.Body != nil {
		resp.Body = &countedBody{ReadCloser: resp.Body, b: b}
	}
	return resp, nil
}

type countedBody struct {
	io.ReadCloser
	b *budget
}

func (c *countedBody) Read(p []byte) (int, error) {
	left := c.b.bytes - c.b.read.Load()
	if left <= 0 {
		return 0, errByteCap
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := c.ReadCloser.Read(p)
	c.b.read.Add(int64(n))
	return n, err
}
