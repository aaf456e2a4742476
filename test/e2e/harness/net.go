package harness

// The sealed network of the end-to-end cluster. Every cluster process, every
// client and every pod lives in the network namespace NetNS, which has no
// default route and no link to the host: a packet to any outside address
// fails there with "Network is unreachable".
const (
	// NetNS is the network namespace (/run/netns/NetNS) the cluster runs in.
	NetNS = "ciel-e2e"
	// EnvNetNS is set to NetNS in the environment of the program e2e-run
	// starts inside the namespace.
	EnvNetNS = "CIEL_E2E_NETNS"
	// NodeIP is the address of every node and of the processes the pods
	// reach (apiserver, registry, CoreDNS), on the bridge NodeBridge.
	NodeIP = "10.255.255.1"
	// NodeBridge carries NodeIP/32 inside NetNS.
	NodeBridge = "ciel0"
	// ServiceCIDR is the Service range; KubernetesServiceIP its first address.
	ServiceCIDR         = "10.96.0.0/24"
	KubernetesServiceIP = "10.96.0.1"
	// PodCIDR holds every node's pod range: node i gets 10.244.(i+1).0/24 on
	// the bridge cbr<i>.
	PodCIDR = "10.244.0.0/16"
	// CNINetworkPrefix starts the CNI network name of every node's pod
	// network (libcni names its cached results after it).
	CNINetworkPrefix = "ciel-e2e-"
	// APIServerPort is the apiserver's port on NodeIP.
	APIServerPort = 16443
	// RegistryHost is the plain-HTTP image registry inside NetNS.
	RegistryHost = NodeIP + ":5000"
	// ClusterDomain is the DNS domain served by CoreDNS on NodeIP:53.
	ClusterDomain = "cluster.local"
	// SealProbeIP is an outside (documentation) address that must be
	// unreachable from NetNS.
	SealProbeIP = "192.0.2.1"
)

// APIServerURL is the apiserver's address inside NetNS.
const APIServerURL = "https://10.255.255.1:16443"

// Fixed ports inside NetNS (nothing else listens there).
const (
	etcdClientPort    = 12379
	kcmPort           = 20257
	schedulerPort     = 20259
	kubeProxyPort     = 20246 // healthz; metrics +1
	kubeletPortBase   = 20250 // node i: 20250+10i, healthz +8
	corednsHealthPort = 20280
)
