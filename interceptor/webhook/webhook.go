// Package webhook authenticates GitLab webhook deliveries.
//
// GitLab offers two mechanisms, and a hook may use both:
//
//   - the secret token, sent verbatim in the X-Gitlab-Token header
//     (CheckToken compares it in constant time);
//   - the signing token (GitLab 18.x, Standard Webhooks format,
//     https://www.standardwebhooks.com): GitLab sends webhook-id (equal to
//     the Idempotency-Key), webhook-timestamp (Unix seconds) and
//     webhook-signature, a space-separated list of "v1,<base64 HMAC-SHA256>"
//     over "{webhook-id}.{webhook-timestamp}.{body}". Verify checks it and
//     rejects timestamps outside a tolerance window, so a captured delivery
//     cannot be replayed later.
//
// Errors never contain the expected token or signature.
package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names used by GitLab.
const (
	HeaderToken     = "X-Gitlab-Token"
	HeaderID        = "Webhook-Id"
	HeaderTimestamp = "Webhook-Timestamp"
	HeaderSignature = "Webhook-Signature"
)

// DefaultTolerance is how far webhook-timestamp may be from the receiver's
// clock, in either direction: the Standard Webhooks recommendation.
const DefaultTolerance = 5 * time.Minute

// SecretPrefix marks a Standard Webhooks secret whose key is the base64
// text that follows it (GitLab's signing tokens look like "whsec_<base64>").
const SecretPrefix = "whsec_"

var (
	// ErrMissingToken means the delivery has no X-Gitlab-Token header.
	ErrMissingToken = errors.New("missing X-Gitlab-Token header")
	// ErrTokenMismatch means X-Gitlab-Token is not the configured secret.
	ErrTokenMismatch = errors.New("X-Gitlab-Token does not match the configured secret")
	// ErrMissingSignature means a signing token is configured but the
	// delivery carries no webhook-id, webhook-timestamp or webhook-signature.
	ErrMissingSignature = errors.New("missing webhook signature headers")
	// ErrStaleTimestamp means webhook-timestamp is outside the tolerance.
	ErrStaleTimestamp = errors.New("webhook-timestamp outside the accepted window")
	// ErrBadSignature means no v1 signature in webhook-signature matches.
	ErrBadSignature = errors.New("webhook-signature does not match the body")
)

// SecretValue is the one rule for a token stored in a Secret, shared by
// CheckToken, SigningKey and CEL's compareSecret: trailing line breaks
// (\n, \r\n), which `kubectl create secret --from-file` and editors keep,
// are not part of the token. An HTTP header value cannot end with one, so
// a token with them could never match. Nothing else is trimmed.
func SecretValue(secret []byte) []byte {
	return bytes.TrimRight(secret, "\r\n")
}

// CheckToken compares the delivery's X-Gitlab-Token with secret (see
// SecretValue) in constant time (both sides are hashed first, so not even
// the length leaks).
func CheckToken(h http.Header, secret []byte) error {
	got := h.Get(HeaderToken)
	if got == "" {
		return ErrMissingToken
	}
	a := sha256.Sum256([]byte(got))
	b := sha256.Sum256(SecretValue(secret))
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return ErrTokenMismatch
	}
	return nil
}

// SigningKey turns a signing token as stored in a Secret into the HMAC key:
// "whsec_<base64>" decodes to its bytes (the Standard Webhooks format GitLab
// issues); anything else is used as raw bytes. Trailing newlines, which
// `kubectl create secret --from-file` often keeps, are ignored.
func SigningKey(token []byte) ([]byte, error) {
	t := string(SecretValue(token))
	if t == "" {
		return nil, errors.New("signing token is empty")
	}
	if !strings.HasPrefix(t, SecretPrefix) {
		return []byte(t), nil
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(t, SecretPrefix))
	if err != nil {
		return nil, fmt.Errorf("decoding signing token after %q: %w", SecretPrefix, err)
	}
	if len(key) == 0 {
		return nil, errors.New("signing token has an empty key")
	}
	return key, nil
}

// Verifier checks Standard Webhooks signatures.
type Verifier struct {
	// Key is the HMAC key (see SigningKey).
	Key []byte
	// Tolerance bounds |now - webhook-timestamp|; DefaultTolerance if zero.
	Tolerance time.Duration
	// Now returns the current time; time.Now if nil.
	Now func() time.Time
}

// Verify checks the delivery's signature headers against body.
func (v Verifier) Verify(h http.Header, body []byte) error {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	var missing []string
	for _, p := range []struct{ name, val string }{{"webhook-id", id}, {"webhook-timestamp", ts}, {"webhook-signature", sigs}} {
		if p.val == "" {
			missing = append(missing, p.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingSignature, strings.Join(missing, ", "))
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: webhook-timestamp %q is not Unix seconds", ErrStaleTimestamp, ts)
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	skew := now().Sub(time.Unix(sec, 0))
	if skew > tol || skew < -tol {
		return fmt.Errorf("%w: timestamp is %s away from this server's clock (tolerance %s)", ErrStaleTimestamp, skew.Round(time.Second), tol)
	}
	want := sign(v.Key, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrBadSignature
}

// Sign returns the webhook-signature header value GitLab would send for
// body: for tests, load generators and `cel-eval`-style tooling.
func Sign(key []byte, id string, ts time.Time, body []byte) (timestamp, signature string) {
	timestamp = strconv.FormatInt(ts.Unix(), 10)
	return timestamp, "v1," + base64.StdEncoding.EncodeToString(sign(key, id, timestamp, body))
}

func sign(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}
