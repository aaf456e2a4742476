// Module pause builds the pod sandbox process of the end-to-end suite's
// nodes (containerd's sandbox_image): a static program that sleeps, reaps
// zombies and exits on SIGTERM or SIGINT.
module github.com/ciel-ci/ciel/test/e2e/build/pause

go 1.25.0
