package pathglob_test

import (
	"fmt"

	"github.com/ciel-ci/ciel/interceptor/pathglob"
)

func ExampleCompileList() {
	l, err := pathglob.CompileList([]string{"src/**", "!src/**/*.md", "**/Dockerfile"})
	if err != nil {
		fmt.Println(err)
		return
	}
	changed := []string{"src/main.go", "src/README.md", "deploy/Dockerfile", "docs/intro.md"}
	fmt.Println(l.Filter(changed))
	fmt.Println(l.IncludesAny([]string{"docs/intro.md"}))
	// Output:
	// [src/main.go deploy/Dockerfile]
	// false
}

func ExampleCompile() {
	p, err := pathglob.Compile("*.jsx?")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Match("page.js"), p.Match("page.jsx"), p.Match("app/page.js"))

	_, err = pathglob.Compile("docs/[z-a]")
	fmt.Println(err)
	// Output:
	// true true false
	// invalid path pattern "docs/[z-a]": invalid range z-a: ranges must stay within a-z, A-Z or 0-9 and go upwards (at offset 6)
}
