package main

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// raisePermittedCaps makes the capabilities this process is permitted
// effective, on every thread. The container image gives the binary the
// file capability cap_net_admin+p, permitted but not effective: a
// non-root container process gets no capabilities of its own under
// Kubernetes (no ambient set), so the file capability is how it gets
// NET_ADMIN; and where the runtime does not allow NET_ADMIN the binary
// still runs and says what is missing, where a file capability marked
// effective would make the kernel refuse to execute it at all.
//
// Capabilities belong to threads, so the change is made on all of them at
// once (possible without cgo, which is how the image is built). Root,
// whose effective set is its permitted set, makes no system call.
func raisePermittedCaps() {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return
	}
	if data[0].Effective == data[0].Permitted && data[1].Effective == data[1].Permitted {
		return
	}
	data[0].Effective, data[1].Effective = data[0].Permitted, data[1].Permitted
	// On failure (a cgo build) the commands that need a capability say so.
	syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
}
