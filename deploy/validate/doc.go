// Package validate checks deploy/ offline: the kustomize overlays build and
// decode strictly, the policy holds, and the Dockerfile parses.
package validate
