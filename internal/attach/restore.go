package attach

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// restore undoes what the record lists in the namespace at path ("" for
// this process's own), through nl: the local rule back where it was,
// attach's rules and tables gone, the sysctls back to their old values,
// the device's interfaces deleted if they are still there. It works from
// any point of a half-done attach, and twice: what is already undone is
// skipped. It returns what it could not undo.
func restore(r *Record, path string, nl *netlink.Handle) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, f := range r.Families {
		rules, err := nl.RuleList(f.Family)
		if err != nil {
			fail("%s rules: %w", familyName(f.Family), err)
			continue
		}
		hasLocalAt := func(pref int) bool {
			for _, ru := range rules {
				if ru.Table == unix.RT_TABLE_LOCAL && ru.Priority == pref {
					return true
				}
			}
			return false
		}
		if f.LocalTo != f.LocalFrom {
			if !hasLocalAt(f.LocalFrom) {
				if err := nl.RuleAdd(localRule(f.Family, f.LocalFrom, f.LocalProtocol)); err != nil {
					fail("%s local rule back at %d: %w", familyName(f.Family), f.LocalFrom, err)
				}
			}
			if hasLocalAt(f.LocalTo) {
				if err := nl.RuleDel(localRule(f.Family, f.LocalTo, 0)); err != nil && !notFound(err) {
					fail("%s local rule at %d: %w", familyName(f.Family), f.LocalTo, err)
				}
			}
		}
		for _, ru := range f.Rules {
			if err := nl.RuleDel(ru.netlink(f.Family)); err != nil && !notFound(err) {
				fail("%s rule %s: %w", familyName(f.Family), ru, err)
			}
		}
		for _, table := range []int{f.AppTable, f.WorldTable} {
			routes, err := nl.RouteListFiltered(f.Family, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
			if err != nil {
				fail("%s table %d: %w", familyName(f.Family), table, err)
				continue
			}
			for _, rt := range routes {
				if err := nl.RouteDel(&rt); err != nil && !notFound(err) {
					fail("%s route %v table %d: %w", familyName(f.Family), rt.Dst, table, err)
				}
			}
		}
	}
	for i := len(r.Sysctls) - 1; i >= 0; i-- {
		s := r.Sysctls[i]
		if err := writeSysctl(path, s.Key, s.Old); err != nil {
			fail("%w", err)
		}
	}
	for _, name := range []string{r.App, r.World} {
		if link, err := nl.LinkByName(name); err == nil {
			if err := nl.LinkDel(link); err != nil && !notFound(err) {
				fail("interface %s: %w", name, err)
			}
		}
	}
	return errs
}

func notFound(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV)
}
