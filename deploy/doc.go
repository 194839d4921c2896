// Package deploy holds faultbox's deployment files: the container image's
// Containerfile (image/), podman's settings for the test machines
// (podman/) and the Kubernetes manifests (kubernetes/), described in
// docs/kubernetes.md. It is a module of its own so that the Kubernetes API
// types its tests decode the manifests into stay out of faultbox's own
// go.mod; its only code is those tests.
package deploy
