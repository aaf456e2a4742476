package ociindex

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckRevision(t *testing.T) {
	sha1 := strings.Repeat("0a", 20)
	sha256 := strings.Repeat("0b", 32)
	tests := []struct {
		name        string
		annotations map[string]string
		commit      string
		wantErr     error
		want        string
	}{
		{name: "sha-1 match", annotations: map[string]string{AnnotationRevision: sha1}, commit: sha1},
		{name: "sha-256 match", annotations: map[string]string{AnnotationRevision: sha256}, commit: sha256},
		{name: "other commit", annotations: map[string]string{AnnotationRevision: sha256}, commit: sha1, wantErr: ErrRevision, want: "not the commit"},
		{name: "prefix only", annotations: map[string]string{AnnotationRevision: sha1[:12]}, commit: sha1, wantErr: ErrRevision, want: "not the commit"},
		{name: "no annotations", commit: sha1, wantErr: ErrRevision, want: "has no " + AnnotationRevision},
		{name: "long hostile value is cut", annotations: map[string]string{AnnotationRevision: strings.Repeat("x", 10000)}, commit: sha1, wantErr: ErrRevision, want: "…"},
		{name: "abbreviated commit", annotations: map[string]string{AnnotationRevision: sha1}, commit: sha1[:8], want: "not a full commit SHA"},
		{name: "uppercase commit", annotations: map[string]string{AnnotationRevision: sha1}, commit: strings.ToUpper(sha1), want: "not a full commit SHA"},
		{name: "empty commit", annotations: map[string]string{AnnotationRevision: ""}, commit: "", want: "not a full commit SHA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRevision(tt.annotations, tt.commit)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.want)
			}
			if len(err.Error()) > 400 {
				t.Errorf("error of %d bytes: an attacker-chosen annotation is not bounded", len(err.Error()))
			}
		})
	}
}
