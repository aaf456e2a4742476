package kaniko_test

import (
	"fmt"
	"log"

	"github.com/ciel-ci/ciel/images/kaniko"
	"github.com/ciel-ci/ciel/images/platform"
)

// The per-platform flags of one build of a multi-arch run.
func ExampleBuild_Args() {
	p, err := platform.Parse("linux/arm64")
	if err != nil {
		log.Fatal(err)
	}
	args, err := kaniko.Build{
		Image:       "registry.example.com/group/app",
		Tag:         "1a2b3c4d",
		PlatformTag: true,
		Platform:    p,
		BuildArgs:   []string{"GO_VERSION=1.26"},
		CAFile:      "/workspace/ca-bundle/ca.crt",
	}.Args()
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range args {
		fmt.Println(a)
	}
	// Output:
	// --destination=registry.example.com/group/app:1a2b3c4d-linux-arm64
	// --custom-platform=linux/arm64
	// --build-arg=TARGETPLATFORM=linux/arm64
	// --build-arg=TARGETOS=linux
	// --build-arg=TARGETARCH=arm64
	// --build-arg=TARGETVARIANT=
	// --build-arg=GO_VERSION=1.26
	// --cache-repo=registry.example.com/group/app/cache-linux-arm64
	// --registry-certificate=registry.example.com=/workspace/ca-bundle/ca.crt
}
