package lab

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/faultbox/faultbox/internal/device"
	"github.com/faultbox/faultbox/internal/netns"
)

// Down removes lab: it asks the device to shut down (SIGKILL after 2 s),
// then removes whatever is left — processes in the lab's namespaces, the
// namespaces, their /etc/netns files, the runtime directory — found from
// state.json and from the namespace names, so it works after the device
// was killed and after a half-finished `lab up`. It returns what it removed;
// nothing to remove is not an error. A device of another kind under that
// name is left alone.
func Down(lab string) ([]string, error) {
	if err := device.CheckName(lab); err != nil {
		return nil, err
	}
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	var removed []string
	var errs []error

	// Everything of the lab that exists now, before the device removes any
	// of it, so that the report names what went away.
	nss := map[string]bool{}
	st, err := device.ReadState(lab)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err) // a damaged state.json: carry on by name
	}
	if st != nil {
		if err := st.WantKind(device.KindLab); err != nil {
			return nil, fmt.Errorf("%w; `%s` removes it", err, device.RemoveCommand(st.KindOf(), lab))
		}
		hosts, err := Hosts(st)
		if err != nil {
			errs = append(errs, err)
		}
		for _, h := range hosts {
			nss[h.Namespace] = true
		}
	}
	found, err := labNamespaces(lab)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range found {
		nss[ns] = true
	}
	existed := map[string]bool{}
	for ns := range nss {
		existed[ns] = netnsExists(ns)
	}
	_, dirErr := os.Stat(device.Dir(lab))
	dirExisted := dirErr == nil

	if st != nil {
		stopped, err := device.StopIfAlive(st)
		if err != nil {
			return removed, err // its ports and namespaces are in use: leave them
		}
		if stopped != "" {
			removed = append(removed, stopped)
		}
	}
	for _, ns := range slices.Sorted(maps.Keys(nss)) {
		r, err := removeNetns(ns)
		if err != nil {
			errs = append(errs, err)
		}
		if len(r) == 0 && existed[ns] && !netnsExists(ns) {
			r = []string{"namespace " + ns} // the device removed it
		}
		removed = append(removed, r...)
	}
	if _, err := os.Stat(device.Dir(lab)); err == nil {
		if err := os.RemoveAll(device.Dir(lab)); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, device.Dir(lab))
		}
	} else if dirExisted {
		removed = append(removed, device.Dir(lab))
	}
	return removed, errors.Join(errs...)
}

// knownNamespaces returns the names of the namespaces that exist and of
// the /etc/netns entries (which may outlive their namespace); a name may
// come twice. The error is listing's; the names found are returned all the
// same.
func knownNamespaces() ([]string, error) {
	names, err := netns.List()
	if ents, rerr := os.ReadDir(NetnsEtc); rerr == nil {
		for _, e := range ents {
			names = append(names, e.Name())
		}
	}
	return names, err
}

// labNamespaces returns the known namespaces (knownNamespaces) named as
// lab's.
func labNamespaces(lab string) ([]string, error) {
	names, err := knownNamespaces()
	var out []string
	for _, ns := range names {
		if namespaceOf(lab, ns) {
			out = append(out, ns)
		}
	}
	return out, err
}

// DownAll removes every lab with a runtime directory, then every namespace
// named fbx-* (leftovers of labs and of faultbox's tests) and its /etc
// files. Devices of other kinds (attach, run) are left alone.
func DownAll() ([]string, error) {
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	labs, err := device.OfKind(device.KindLab)
	if err != nil {
		errs = append(errs, err)
	}
	for _, st := range labs {
		r, err := Down(st.Name)
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, fmt.Errorf("lab %s: %w", st.Name, err))
		}
	}
	known, err := knownNamespaces()
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range leftoverNamespaces(known) {
		r, err := removeNetns(ns)
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// leftoverNamespaces picks, from the known namespaces (knownNamespaces),
// the ones faultbox made: named fbx-*, each once.
func leftoverNamespaces(known []string) []string {
	var out []string
	for _, ns := range known {
		if strings.HasPrefix(ns, NSPrefix) && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}
