package webhook

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCheckToken(t *testing.T) {
	tests := []struct {
		name    string
		header  string
		secret  string
		wantErr error
	}{
		{name: "match", header: "s3cr3t", secret: "s3cr3t"},
		{name: "secret file with trailing newline", header: "s3cr3t", secret: "s3cr3t\n"},
		{name: "mismatch", header: "s3cr3t", secret: "other", wantErr: ErrTokenMismatch},
		{name: "prefix is not a match", header: "s3cr", secret: "s3cr3t", wantErr: ErrTokenMismatch},
		{name: "longer is not a match", header: "s3cr3t!", secret: "s3cr3t", wantErr: ErrTokenMismatch},
		{name: "missing", header: "", secret: "s3cr3t", wantErr: ErrMissingToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.header != "" {
				h.Set(HeaderToken, tt.header)
			}
			err := CheckToken(h, []byte(tt.secret))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("CheckToken() = %v, want %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), tt.secret) && tt.secret != "" {
				t.Fatalf("error %q leaks the secret", err)
			}
		})
	}
}

// The test vector published with the Standard Webhooks specification.
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specPayload   = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestVerify(t *testing.T) {
	key, err := SigningKey([]byte(specSecret + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(specTimestamp, 0)
	headers := func(id, ts, sig string) http.Header {
		h := http.Header{}
		for k, v := range map[string]string{HeaderID: id, HeaderTimestamp: ts, HeaderSignature: sig} {
			if v != "" {
				h.Set(k, v)
			}
		}
		return h
	}
	ts := "1614265330"
	tests := []struct {
		name    string
		h       http.Header
		body    string
		now     time.Time
		wantErr error
		wantMsg string
	}{
		{name: "spec vector", h: headers(specID, ts, specSignature), body: specPayload, now: at},
		{name: "one of several signatures", h: headers(specID, ts, "v1,bm90IGl0 "+specSignature), body: specPayload, now: at},
		{name: "unknown versions are skipped", h: headers(specID, ts, "v1a,xyz "+specSignature), body: specPayload, now: at},
		{name: "within tolerance, late", h: headers(specID, ts, specSignature), body: specPayload, now: at.Add(4 * time.Minute)},
		{name: "within tolerance, early", h: headers(specID, ts, specSignature), body: specPayload, now: at.Add(-4 * time.Minute)},
		{name: "stale", h: headers(specID, ts, specSignature), body: specPayload, now: at.Add(6 * time.Minute), wantErr: ErrStaleTimestamp, wantMsg: "tolerance 5m0s"},
		{name: "from the future", h: headers(specID, ts, specSignature), body: specPayload, now: at.Add(-6 * time.Minute), wantErr: ErrStaleTimestamp},
		{name: "timestamp not a number", h: headers(specID, "yesterday", specSignature), body: specPayload, now: at, wantErr: ErrStaleTimestamp, wantMsg: "not Unix seconds"},
		{name: "tampered body", h: headers(specID, ts, specSignature), body: `{"test": 2432232315}`, now: at, wantErr: ErrBadSignature},
		{name: "other id", h: headers("msg_other", ts, specSignature), body: specPayload, now: at, wantErr: ErrBadSignature},
		{name: "not base64", h: headers(specID, ts, "v1,!!!"), body: specPayload, now: at, wantErr: ErrBadSignature},
		{name: "no version", h: headers(specID, ts, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), body: specPayload, now: at, wantErr: ErrBadSignature},
		{name: "missing all", h: http.Header{}, body: specPayload, now: at, wantErr: ErrMissingSignature, wantMsg: "webhook-id, webhook-timestamp, webhook-signature"},
		{name: "missing signature", h: headers(specID, ts, ""), body: specPayload, now: at, wantErr: ErrMissingSignature, wantMsg: "webhook-signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Verifier{Key: key, Now: func() time.Time { return tt.now }}
			err := v.Verify(tt.h, []byte(tt.body))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() = %v, want %v", err, tt.wantErr)
			}
			if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Verify() = %q, want it to mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestSignRoundTrip(t *testing.T) {
	key, err := SigningKey([]byte(specSecret))
	if err != nil {
		t.Fatal(err)
	}
	ts, sig := Sign(key, specID, time.Unix(specTimestamp, 0), []byte(specPayload))
	if ts != "1614265330" || sig != specSignature {
		t.Fatalf("Sign() = %q, %q; want the spec's %q", ts, sig, specSignature)
	}
	now := time.Now()
	ts, sig = Sign([]byte("raw key"), "id-1", now, []byte("{}"))
	h := http.Header{}
	h.Set(HeaderID, "id-1")
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, sig)
	if err := (Verifier{Key: []byte("raw key")}).Verify(h, []byte("{}")); err != nil {
		t.Fatalf("Verify(Sign()) = %v", err)
	}
}

func TestSigningKey(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "plain-key", want: "plain-key"},
		{in: "plain-key\r\n", want: "plain-key"},
		{in: "whsec_aGVsbG8=", want: "hello"},
		{in: "whsec_***", wantErr: "decoding signing token"},
		{in: "whsec_", wantErr: "empty key"},
		{in: "\n", wantErr: "empty"},
	} {
		got, err := SigningKey([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("SigningKey(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("SigningKey(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(specID, "1614265330", specSignature, []byte(specPayload))
	f.Add("", "-1", "v1,", []byte{})
	f.Add("a", "99999999999999999999", "v1,a v1,b v2,c", []byte("x"))
	key, _ := SigningKey([]byte(specSecret))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		v := Verifier{Key: key, Now: func() time.Time { return time.Unix(specTimestamp, 0) }}
		err := v.Verify(h, body)
		if err == nil && !(id == specID && string(body) == specPayload) {
			t.Fatalf("accepted a forged delivery: id=%q ts=%q sig=%q body=%q", id, ts, sig, body)
		}
	})
}
