package registrytest

import (
	"runtime"
	"testing"
)

// fatalTB records Fatal and stops its goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	failed bool
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatal(...any) {
	f.failed = true
	runtime.Goexit()
}

// failsOn runs parse with a fatalTB and reports whether it failed.
func failsOn(t *testing.T, parse func(testing.TB)) bool {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		parse(f)
	}()
	<-done
	return f.failed
}

func TestParseHelpers(t *testing.T) {
	tests := []struct {
		name     string
		parse    func(tb testing.TB, s string) string
		in, want string
		wantFail bool
	}{
		{"reference by tag", func(tb testing.TB, s string) string { return Ref(tb, s).String() }, "reg.example/app:v1", "reg.example/app:v1", false},
		{"reference, not one", func(tb testing.TB, s string) string { return Ref(tb, s).String() }, "reg.example/App:v1", "", true},
		{"tag", func(tb testing.TB, s string) string { return Tag(tb, s).String() }, "reg.example/app:v1", "reg.example/app:v1", false},
		{"tag given a digest", func(tb testing.TB, s string) string { return Tag(tb, s).String() }, "reg.example/app@sha256:abc", "", true},
		{"repository", func(tb testing.TB, s string) string { return Repo(tb, s).String() }, "reg.example/team/app", "reg.example/team/app", false},
		{"repository with a tag", func(tb testing.TB, s string) string { return Repo(tb, s).String() }, "reg.example/app:v1", "", true},
		{"platform with variant", func(tb testing.TB, s string) string { return Platform(tb, s).String() }, "linux/arm64/v8", "linux/arm64/v8", false},
		{"platform, bare arch refused", func(tb testing.TB, s string) string { return Platform(tb, s).String() }, "arm64", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			failed := failsOn(t, func(tb testing.TB) { got = tc.parse(tb, tc.in) })
			if failed != tc.wantFail || got != tc.want {
				t.Errorf("got %q, failed %v; want %q, failed %v", got, failed, tc.want, tc.wantFail)
			}
		})
	}
}

func TestRandomImages(t *testing.T) {
	imgs := RandomImages(t, "linux/amd64", "linux/arm/v7")
	var got []string
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, cf.Platform().String())
	}
	if len(got) != 2 || got[0] != "linux/amd64" || got[1] != "linux/arm/v7" {
		t.Errorf("platforms %v, want linux/amd64, linux/arm/v7", got)
	}
}
