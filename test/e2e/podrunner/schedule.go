package podrunner

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Unfit lists why pod cannot be placed on node, the way kube-scheduler's
// filters would (readiness, nodeName, nodeSelector, required node affinity,
// taints, required pod affinity and anti-affinity against placed pods);
// an empty result means it fits.
func Unfit(pod *corev1.Pod, node *corev1.Node, placed []PlacedPod) []string {
	var why []string
	if !nodeReady(node) {
		why = append(why, "node is not Ready")
	}
	if node.Spec.Unschedulable {
		why = append(why, "node is unschedulable")
	}
	if pod.Spec.NodeName != "" && pod.Spec.NodeName != node.Name {
		why = append(why, "pod names node "+pod.Spec.NodeName)
	}
	for _, k := range sortedKeys(pod.Spec.NodeSelector) {
		want := pod.Spec.NodeSelector[k]
		if got, ok := node.Labels[k]; !ok || got != want {
			why = append(why, fmt.Sprintf("nodeSelector %s=%s (node has %q)", k, want, got))
		}
	}
	if a := pod.Spec.Affinity; a != nil {
		if na := a.NodeAffinity; na != nil && na.RequiredDuringSchedulingIgnoredDuringExecution != nil {
			ok, err := matchNodeSelector(na.RequiredDuringSchedulingIgnoredDuringExecution, node)
			if err != nil {
				why = append(why, "node affinity: "+err.Error())
			} else if !ok {
				why = append(why, "required node affinity does not match")
			}
		}
		if pa := a.PodAffinity; pa != nil {
			for _, term := range pa.RequiredDuringSchedulingIgnoredDuringExecution {
				ok, err := termSatisfied(pod, node, term, placed)
				if err != nil {
					why = append(why, "pod affinity: "+err.Error())
				} else if !ok {
					why = append(why, "required pod affinity "+metav1.FormatLabelSelector(term.LabelSelector)+" on "+term.TopologyKey+" not satisfied")
				}
			}
		}
		if pa := a.PodAntiAffinity; pa != nil {
			for _, term := range pa.RequiredDuringSchedulingIgnoredDuringExecution {
				ok, err := termSatisfied(pod, node, term, placed)
				if err != nil {
					why = append(why, "pod anti-affinity: "+err.Error())
				} else if ok {
					why = append(why, "required pod anti-affinity "+metav1.FormatLabelSelector(term.LabelSelector)+" on "+term.TopologyKey+" violated")
				}
			}
		}
	}
	for _, t := range node.Spec.Taints {
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		tolerated := false
		for _, tol := range pod.Spec.Tolerations {
			if tolerates(tol, t) {
				tolerated = true
				break
			}
		}
		if !tolerated {
			why = append(why, "untolerated taint "+t.ToString())
		}
	}
	return why
}

// tolerates reports whether tol tolerates taint t (the Equal and Exists
// operators of the core API).
func tolerates(tol corev1.Toleration, t corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	switch tol.Operator {
	case corev1.TolerationOpExists:
		return tol.Key == "" || tol.Key == t.Key
	case corev1.TolerationOpEqual, "":
		return tol.Key == t.Key && tol.Value == t.Value
	}
	return false
}

// PlacedPod is a pod the runner has bound to a node, for pod (anti-)affinity.
type PlacedPod struct {
	Namespace string
	Labels    map[string]string
	Node      *corev1.Node
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// matchNodeSelector reports whether node matches any of the terms (each term
// is the conjunction of its expressions and fields).
func matchNodeSelector(ns *corev1.NodeSelector, node *corev1.Node) (bool, error) {
	for _, term := range ns.NodeSelectorTerms {
		if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
			continue // an empty term matches nothing
		}
		ok, err := matchTerm(term, node)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

func matchTerm(term corev1.NodeSelectorTerm, node *corev1.Node) (bool, error) {
	sel, err := requirementsSelector(term.MatchExpressions)
	if err != nil {
		return false, err
	}
	if !sel.Matches(labels.Set(node.Labels)) {
		return false, nil
	}
	for _, f := range term.MatchFields {
		if f.Key != "metadata.name" {
			return false, fmt.Errorf("unsupported field selector key %q", f.Key)
		}
	}
	fsel, err := requirementsSelector(term.MatchFields)
	if err != nil {
		return false, err
	}
	return fsel.Matches(labels.Set{"metadata.name": node.Name}), nil
}

func requirementsSelector(reqs []corev1.NodeSelectorRequirement) (labels.Selector, error) {
	sel := labels.NewSelector()
	for _, r := range reqs {
		var op selection.Operator
		switch r.Operator {
		case corev1.NodeSelectorOpIn:
			op = selection.In
		case corev1.NodeSelectorOpNotIn:
			op = selection.NotIn
		case corev1.NodeSelectorOpExists:
			op = selection.Exists
		case corev1.NodeSelectorOpDoesNotExist:
			op = selection.DoesNotExist
		case corev1.NodeSelectorOpGt:
			op = selection.GreaterThan
		case corev1.NodeSelectorOpLt:
			op = selection.LessThan
		default:
			return nil, fmt.Errorf("unknown operator %q", r.Operator)
		}
		req, err := labels.NewRequirement(r.Key, op, r.Values)
		if err != nil {
			return nil, err
		}
		sel = sel.Add(*req)
	}
	return sel, nil
}

// termSatisfied reports whether a placed pod matching term's selector runs
// in the same topology domain (term.TopologyKey) as node.
func termSatisfied(pod *corev1.Pod, node *corev1.Node, term corev1.PodAffinityTerm, placed []PlacedPod) (bool, error) {
	if term.NamespaceSelector != nil {
		return false, fmt.Errorf("namespaceSelector is not supported")
	}
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if err != nil {
		return false, err
	}
	namespaces := term.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{pod.Namespace}
	}
	domain, ok := node.Labels[term.TopologyKey]
	if !ok {
		return false, nil
	}
	for _, p := range placed {
		if !contains(namespaces, p.Namespace) || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		if v, ok := p.Node.Labels[term.TopologyKey]; ok && v == domain {
			return true, nil
		}
	}
	return false, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// describeUnfit formats per-node reasons for an unschedulable pod.
func describeUnfit(reasons map[string][]string) string {
	names := make([]string, 0, len(reasons))
	for n := range reasons {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "\n  node %s: %s", n, strings.Join(reasons[n], "; "))
	}
	return b.String()
}
