// Package e2e holds faultbox's end-to-end tests: real network namespaces,
// real TUN ports, real kernel TCP stacks and real clients and servers (curl,
// Python's http.server, ping, iperf3), all driven through the faultbox
// binary's lab CLI exactly as a user would. They need root and /dev/net/tun:
// without them they skip, except under CI=true, where they fail.
//
//	go test ./e2e/ -v -count=1 -timeout 30m
package e2e
