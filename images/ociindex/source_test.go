package ociindex

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ciel-ci/ciel/images/platform"
)

func TestParseSource(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		in       string
		wantRef  string
		wantPlat string
		wantErr  string
	}{
		{in: "reg.example.com/app@" + d, wantRef: "reg.example.com/app@" + d},
		{in: "reg.example.com/app@" + d + "=linux/arm64/v8", wantRef: "reg.example.com/app@" + d, wantPlat: "linux/arm64/v8"},
		{in: "reg.example.com/app:abc-amd64=linux/amd64", wantRef: "reg.example.com/app:abc-amd64", wantPlat: "linux/amd64"},
		{in: "reg.example.com/app@" + d + "=linux", wantErr: "os/arch"},
		{in: "reg.example.com/App:x", wantErr: "parsing source"},
		{in: "=linux/amd64", wantErr: "parsing source"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSource(tt.in)
			if failedAs(t, err, tt.wantErr) {
				return
			}
			gotPlat := ""
			if got.Platform != nil {
				gotPlat = got.Platform.String()
			}
			if got.Ref.String() != tt.wantRef || gotPlat != tt.wantPlat {
				t.Errorf("got %s / %q, want %s / %q", got.Ref, gotPlat, tt.wantRef, tt.wantPlat)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want the input back", got.String())
			}
		})
	}
}

func TestExpandTemplate(t *testing.T) {
	ps, err := platform.ParseExactList("linux/amd64,linux/arm64/v8,linux/arm/v7")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		template string
		want     []string
		wantErr  string
	}{
		{template: "reg/app:abc-ARCH", want: []string{"reg/app:abc-amd64=linux/amd64", "reg/app:abc-arm64=linux/arm64/v8", "reg/app:abc-arm=linux/arm/v7"}},
		{template: "reg/app:abc-OS-ARCHVARIANT", want: []string{"reg/app:abc-linux-amd64=linux/amd64", "reg/app:abc-linux-arm64v8=linux/arm64/v8", "reg/app:abc-linux-armv7=linux/arm/v7"}},
		{template: "reg/app:abc-OS", wantErr: "gives reg/app:abc-linux for both"},
		{template: "reg/app:abc", wantErr: "none of OS, ARCH, VARIANT"},
	}
	for _, tt := range tests {
		t.Run(tt.template, func(t *testing.T) {
			got, err := ExpandTemplate(tt.template, ps)
			if failedAs(t, err, tt.wantErr) {
				return
			}
			var s []string
			for _, g := range got {
				s = append(s, strings.TrimPrefix(g.String(), "index.docker.io/"))
			}
			if diff := cmp.Diff(tt.want, s); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := ExpandTemplate("reg/app:ARCH", nil); err == nil {
		t.Error("no platforms accepted")
	}
}

func FuzzParseSource(f *testing.F) {
	for _, s := range []string{
		"reg/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef=linux/arm64/v8",
		"reg/app:tag=windows/amd64:10.0", "app", "=", "a=b=c", "reg/app:t=linux/arm/v7/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		src, err := ParseSource(s)
		if err != nil {
			return
		}
		if src.Platform != nil && (src.Platform.OS == "" || src.Platform.Architecture == "") {
			t.Fatalf("ParseSource(%q) accepted a platform without os or architecture: %+v", s, src.Platform)
		}
		again, err := ParseSource(src.String())
		if err != nil {
			t.Fatalf("ParseSource(%q).String() = %q does not parse: %v", s, src.String(), err)
		}
		if again.String() != src.String() {
			t.Fatalf("round trip of %q changed it: %q then %q", s, src.String(), again.String())
		}
	})
}
