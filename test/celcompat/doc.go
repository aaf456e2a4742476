// Package celcompat holds the differential tests that run the same CEL
// expressions through Tekton Triggers' CEL interceptor
// (github.com/tektoncd/triggers/pkg/interceptors/cel) and through ciel's
// environment (interceptor/celenv), and compare the results. Only its tests
// import Triggers: production packages must not.
package celcompat
