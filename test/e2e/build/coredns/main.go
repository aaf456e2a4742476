// Command coredns is the cluster DNS of the end-to-end suite: CoreDNS with
// only the plugins the suite's Corefile uses, as CoreDNS documents for
// custom builds (a full build compiles every plugin and its cloud SDKs).
// Pods resolve Service names (the EventListener calling ciel's
// ClusterInterceptor by its Service name) through the kubernetes plugin;
// there is no forward plugin, so no name outside the cluster resolves.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives is the plugin order; a Corefile may use only these.
var directives = []string{"bind", "errors", "health", "ready", "cache", "kubernetes"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
