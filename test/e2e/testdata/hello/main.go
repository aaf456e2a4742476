// Command hello is the end-to-end suite's test project: it prints the
// platform it was built for and, with -write FILE, also writes that line to
// FILE (the Dockerfile RUNs it at build time, on each architecture).
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	line := fmt.Sprintf("hello from %s/%s\n", runtime.GOOS, runtime.GOARCH)
	switch {
	case len(os.Args) == 1:
	case len(os.Args) == 3 && os.Args[1] == "-write":
		if err := os.WriteFile(os.Args[2], []byte(line), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "hello:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: hello [-write FILE]")
		os.Exit(2)
	}
	fmt.Print(line)
}
