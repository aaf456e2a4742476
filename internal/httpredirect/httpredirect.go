// Package httpredirect holds the redirect rule of every ciel HTTP client
// that carries a credential (a GitLab PRIVATE-TOKEN, a bearer token).
//
// net/http drops Authorization and Cookie on a redirect to another host but
// forwards every other header, GitLab's PRIVATE-TOKEN included: a GitLab
// (or anything answering in its name) that redirects to another host would
// receive the token there. SameHost refuses such redirects.
package httpredirect

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// MaxRedirects bounds the redirects followed on the same host.
const MaxRedirects = 10

// ErrCrossHost is wrapped by the error of a refused redirect.
var ErrCrossHost = errors.New("redirect to another host refused: the request carries a token")

// SameHost is an http.Client CheckRedirect that follows a redirect only to
// the same scheme and host (port included) as the original request, and at
// most MaxRedirects of them. An https → http downgrade is refused too.
func SameHost(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	if len(via) >= MaxRedirects {
		return fmt.Errorf("stopped after %d redirects", MaxRedirects)
	}
	first := via[0].URL
	if !strings.EqualFold(req.URL.Scheme, first.Scheme) || !strings.EqualFold(req.URL.Host, first.Host) {
		return fmt.Errorf("%w: %s://%s redirected to %s://%s", ErrCrossHost, first.Scheme, first.Host, req.URL.Scheme, req.URL.Host)
	}
	return nil
}
