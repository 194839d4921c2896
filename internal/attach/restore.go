package attach

import (
	"errors"
	"fmt"
	"slices"

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
	for _, f := range r.Families {
		errs = append(errs, restoreFamily(nl, f)...)
	}
	for i := len(r.Sysctls) - 1; i >= 0; i-- {
		s := r.Sysctls[i]
		if err := writeSysctl(path, s.Key, s.Old); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range []string{r.App, r.World} {
		if link, err := nl.LinkByName(name); err == nil {
			if err := nl.LinkDel(link); err != nil && !notFound(err) {
				errs = append(errs, fmt.Errorf("interface %s: %w", name, err))
			}
		}
	}
	return errs
}

// restoreFamily puts one IP version's rules back as they were and empties
// attach's two tables.
func restoreFamily(nl *netlink.Handle, f *Family) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(familyName(f.Family)+" "+format, args...))
	}
	rules, err := nl.RuleList(f.Family)
	if err != nil {
		fail("rules: %w", err)
		return errs
	}
	hasLocalAt := func(pref int) bool {
		return slices.ContainsFunc(rules, func(ru netlink.Rule) bool { return ru.Table == unix.RT_TABLE_LOCAL && ru.Priority == pref })
	}
	if f.LocalTo != f.LocalFrom {
		if !hasLocalAt(f.LocalFrom) {
			if err := nl.RuleAdd(localRule(f.Family, f.LocalFrom, f.LocalProtocol)); err != nil {
				fail("local rule back at %d: %w", f.LocalFrom, err)
			}
		}
		if hasLocalAt(f.LocalTo) {
			if err := nl.RuleDel(localRule(f.Family, f.LocalTo, 0)); err != nil && !notFound(err) {
				fail("local rule at %d: %w", f.LocalTo, err)
			}
		}
	}
	for _, ru := range f.Rules {
		if err := nl.RuleDel(ru.netlink(f.Family)); err != nil && !notFound(err) {
			fail("rule %s: %w", ru, err)
		}
	}
	for _, table := range []int{f.AppTable, f.WorldTable} {
		routes, err := nl.RouteListFiltered(f.Family, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			fail("table %d: %w", table, err)
			continue
		}
		for _, rt := range routes {
			if err := nl.RouteDel(&rt); err != nil && !notFound(err) {
				fail("route %v table %d: %w", rt.Dst, table, err)
			}
		}
	}
	return errs
}

func notFound(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV)
}
