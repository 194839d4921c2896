package attach

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/faultbox/faultbox/internal/netns"
)

// Sysctl is one setting attach changes in the namespace, with the value it
// had, so that detach puts it back.
type Sysctl struct {
	Key string `json:"key"` // under /proc/sys, e.g. net/ipv4/ip_early_demux
	Old string `json:"old"`
	New string `json:"new"`
}

func (s Sysctl) String() string { return strings.ReplaceAll(s.Key, "/", ".") + "=" + s.New }

// readSysctls reads keys in namespace ns (a path; "" the current one).
// A key that does not exist reads as "" with no error.
func readSysctls(ns string, keys []string) (map[string]string, error) {
	vals := map[string]string{}
	err := netns.Do(ns, func() error {
		for _, k := range keys {
			b, err := os.ReadFile(filepath.Join("/proc/sys", k))
			if errors.Is(err, fs.ErrNotExist) {
				vals[k] = ""
				continue
			}
			if err != nil {
				return err
			}
			vals[k] = strings.TrimSpace(string(b))
		}
		return nil
	})
	return vals, err
}

// writeSysctl sets one key in namespace ns (a path; "" the current one),
// unless it has that value already: a container's /proc/sys is read-only,
// and what its pod set when it started must not make attach fail.
func writeSysctl(ns, key, val string) error {
	return netns.Do(ns, func() error {
		path := filepath.Join("/proc/sys", key)
		if cur, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(cur)) == val {
			return nil
		}
		err := os.WriteFile(path, []byte(val+"\n"), 0)
		if err != nil {
			hint := ""
			if errors.Is(err, fs.ErrPermission) || strings.Contains(err.Error(), "read-only") {
				hint = fmt.Sprintf(" (a container's /proc/sys is often read-only: set %s=%s when it starts, e.g. docker run --sysctl, or Kubernetes securityContext.sysctls)",
					strings.ReplaceAll(key, "/", "."), val)
			}
			return fmt.Errorf("sysctl %s=%s: %w%s", strings.ReplaceAll(key, "/", "."), val, err, hint)
		}
		return nil
	})
}
