// Command benchtable reads `go test -bench` output and prints one table:
// each of ciel's figures next to its anchor measured in the same run
// (Tekton Triggers, encoding/json, crane) and the ratio, medians over the
// -count runs.
//
//	go test ./test/bench -run '^$' -bench . -benchmem -count 5 | go run ./test/bench/cmd/benchtable
//
// A benchmark is paired with its anchor by name: a path element "ciel" or
// "interceptor" replaced by "triggers", "crane" or "encoding_json" names
// the anchor (BenchmarkDecision/ciel and BenchmarkDecision/triggers). The
// ratio is anchor / ciel: how many times faster (ns/op), how many times
// fewer requests (requests/op). Benchmarks without an anchor are listed
// with their figures alone.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// result is one benchmark's measurements, several runs each.
type result struct {
	name    string
	metrics map[string][]float64 // unit -> values
}

// Anchors, by the path element that names ciel's side.
var anchors = map[string][]string{
	"ciel":        {"triggers", "crane"},
	"interceptor": {"encoding_json"},
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parse reads benchmark lines; it returns results in first-seen order and
// the header lines (goos, goarch, pkg, cpu).
func parse(r io.Reader) ([]*result, []string, error) {
	var order []*result
	byName := map[string]*result{}
	var header []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "cpu:") || strings.HasPrefix(line, "goos:") || strings.HasPrefix(line, "goarch:") {
			if !slices.Contains(header, line) {
				header = append(header, line)
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		res := byName[name]
		if res == nil {
			res = &result{name: name, metrics: map[string][]float64{}}
			byName[name] = res
			order = append(order, res)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: value %q: %w", name, f[i], err)
			}
			res.metrics[f[i+1]] = append(res.metrics[f[i+1]], v)
		}
	}
	return order, header, sc.Err()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// anchorOf returns the anchor of r among results, nil if none.
func anchorOf(r *result, byName map[string]*result) *result {
	parts := strings.Split(r.name, "/")
	for i, p := range parts {
		for _, a := range anchors[p] {
			alt := slices.Clone(parts)
			alt[i] = a
			if x, ok := byName[strings.Join(alt, "/")]; ok {
				return x
			}
		}
	}
	return nil
}

// isAnchor reports whether r is some other result's anchor.
func isAnchor(r *result) bool {
	for _, p := range strings.Split(r.name, "/") {
		for _, as := range anchors {
			if slices.Contains(as, p) {
				return true
			}
		}
	}
	return false
}

// figure is the main unit of a result: requests/op when counted, else time.
func figure(r *result) string {
	if _, ok := r.metrics["requests/op"]; ok {
		return "requests/op"
	}
	return "ns/op"
}

func format(v float64, unit string) string {
	switch unit {
	case "ns/op":
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2f ms", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.1f µs", v/1e3)
		default:
			return fmt.Sprintf("%.0f ns", v)
		}
	case "B/op":
		switch {
		case v >= 1<<20:
			return fmt.Sprintf("%.1f MiB", v/(1<<20))
		case v >= 1<<10:
			return fmt.Sprintf("%.1f KiB", v/(1<<10))
		default:
			return fmt.Sprintf("%.0f B", v)
		}
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}

// allocs is r's median allocs/op, "-" without -benchmem.
func allocs(r *result) string {
	v, ok := r.metrics["allocs/op"]
	if !ok {
		return "-"
	}
	return format(median(v), "allocs/op")
}

func write(w io.Writer, results []*result, header []string) error {
	byName := map[string]*result{}
	for _, r := range results {
		byName[r.name] = r
	}
	for _, h := range header {
		fmt.Fprintln(w, h)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tunit\tciel\tallocs/op\tanchor\tanchor figure\tanchor allocs/op\tratio\truns")
	for _, r := range results {
		if isAnchor(r) {
			continue
		}
		unit := figure(r)
		ours := median(r.metrics[unit])
		row := []string{r.name, unit, format(ours, unit), allocs(r), "-", "-", "-", "-",
			strconv.Itoa(len(r.metrics[unit]))}
		if a := anchorOf(r, byName); a != nil {
			theirs := median(a.metrics[unit])
			row[4] = a.name[strings.LastIndex(a.name, "/")+1:]
			if parts := strings.Split(a.name, "/"); len(parts) > 2 {
				row[4] = strings.Join(parts[1:], "/")
			}
			row[5] = format(theirs, unit)
			row[6] = allocs(a)
			if ours > 0 {
				row[7] = fmt.Sprintf("%.1f×", theirs/ours)
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
		for unit, vs := range r.metrics {
			if unit == "body-bytes" || unit == "resp-bytes" {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t\t\t\t\t\t\n", "", unit, format(median(vs), unit))
			}
		}
	}
	return tw.Flush()
}

func main() {
	results, header, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark lines on stdin")
		os.Exit(1)
	}
	if err := write(os.Stdout, results, header); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}
