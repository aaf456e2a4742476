package platform_test

import (
	"fmt"
	"log"

	"github.com/ciel-ci/ciel/images/platform"
)

// Plan a multi-arch build: the matrix fans out over NodeArchs, each
// build's pod selects kubernetes.io/arch by it, and each build resolves
// its architecture back to the planned platform.
func ExampleNewPlan() {
	pl, err := platform.NewPlan("linux/amd64", "aarch64", "linux/arm/v6")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pl.Strings())
	fmt.Println(pl.NodeArchs())

	p, err := platform.Resolve("arm", pl.Strings())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.String(), platform.Slug(p))

	_, err = platform.NewPlan("linux/arm/v6", "linux/arm/v7")
	fmt.Println(err)
	// Output:
	// [linux/amd64 linux/arm64 linux/arm/v6]
	// [amd64 arm64 arm]
	// linux/arm/v6 linux-arm-v6
	// platforms need the same node architecture: linux/arm/v6 and linux/arm/v7 both need nodes labelled kubernetes.io/arch=arm, and nodes do not advertise their variant: build them in separate runs
}
