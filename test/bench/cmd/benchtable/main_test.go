package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/ciel-ci/ciel/test/bench
cpu: AMD EPYC
BenchmarkDecision/ciel-2         	   13674	     20000 ns/op	   26670 B/op	     300 allocs/op
BenchmarkDecision/triggers-2     	    1004	   1000000 ns/op	  280120 B/op	    4495 allocs/op
BenchmarkDecision/ciel-2         	   13674	     10000 ns/op	   26670 B/op	     300 allocs/op
BenchmarkDecision/triggers-2     	    1004	   1200000 ns/op	  280120 B/op	    4495 allocs/op
BenchmarkDecision/ciel-2         	   13674	     30000 ns/op	   26670 B/op	     300 allocs/op
BenchmarkDecision/triggers-2     	    1004	    800000 ns/op	  280120 B/op	    4495 allocs/op
BenchmarkMonorepoPush/interceptor-2 	 10	 50000000 ns/op	 4300000 body-bytes	 900000 resp-bytes	 9000000 B/op	 1000 allocs/op
BenchmarkMonorepoPush/encoding_json-2	 10	 40000000 ns/op	 4300000 body-bytes	 80000000 B/op	 1000000 allocs/op
BenchmarkIndexCreate/ciel/platforms=2-2  	       5	  10000000 ns/op	         7.000 requests/op
BenchmarkIndexCreate/crane/platforms=2-2 	       5	  20000000 ns/op	        11.00 requests/op
BenchmarkChangedFiles/1k-2       	    4612	    293119 ns/op	  112384 B/op	      11 allocs/op
PASS
`

func TestTable(t *testing.T) {
	results, header, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(header) != 3 {
		t.Errorf("header %q, want goos, goarch, cpu", header)
	}
	var out bytes.Buffer
	if err := write(&out, results, header); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Log("\n" + got)
	for _, want := range []string{
		// median 20 µs against median 1 ms: 50×
		"BenchmarkDecision/ciel                 ns/op        20.0 µs",
		"triggers  ",
		"50.0×",
		"BenchmarkMonorepoPush/interceptor",
		"encoding_json",
		"0.8×",
		"resp-bytes",
		"BenchmarkIndexCreate/ciel/platforms=2  requests/op  7",
		"crane/platforms=2",
		"1.6×",
		"BenchmarkChangedFiles/1k",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	for _, anchor := range []string{"BenchmarkDecision/triggers ", "BenchmarkIndexCreate/crane/platforms=2 "} {
		if strings.Contains(got, anchor) {
			t.Errorf("anchor %q listed as a figure of its own", anchor)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 2, 3}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
