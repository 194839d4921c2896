package device

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Capabilities the device's commands need (capability(7) numbers).
const (
	CapNetAdmin = 12
	CapSysAdmin = 21
)

// HasCaps reports whether this process has every one of caps in its
// effective set.
func HasCaps(caps ...int) bool {
	eff, err := effectiveCaps()
	if err != nil {
		return false
	}
	for _, c := range caps {
		if eff&(1<<c) == 0 {
			return false
		}
	}
	return true
}

func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

// CheckTUN returns a clear error unless /dev/net/tun can be opened.
func CheckTUN() error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		hint := "load the tun module (modprobe tun)"
		if !errors.Is(err, fs.ErrNotExist) {
			hint = "check its permissions"
		}
		return fmt.Errorf("cannot open /dev/net/tun: %v; %s, or in a container pass the device (docker run --device /dev/net/tun --cap-add NET_ADMIN)", err, hint)
	}
	unix.Close(fd)
	return nil
}
