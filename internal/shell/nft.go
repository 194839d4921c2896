package shell

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The host side masquerades the command's addresses in an nft table of
// the run's own, so that the answers to whatever it reaches come back
// without any route to Net4 or Net6 beyond this host:
//
//	table inet faultbox-run-NAME {
//		chain postrouting {
//			type nat hook postrouting priority srcnat; policy accept;
//			ip saddr COMMAND4 oifname != "fbxrunS" masquerade
//			ip6 saddr COMMAND6 oifname != "fbxrunS" masquerade
//		}
//	}
//
// Nothing else on the host changes; removing the table undoes it all.

// tableName is the run's nft table (family inet) on the host side.
func tableName(run string) string { return "faultbox-run-" + run }

func masqueradeTable(run string) *nftables.Table {
	return &nftables.Table{Name: tableName(run), Family: nftables.TableFamilyINet}
}

func masqueradeChain(t *nftables.Table) *nftables.Chain {
	return &nftables.Chain{
		Name:     "postrouting",
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	}
}

// masqueradeRules are the chain's rules: packets from the command's
// addresses that leave by any interface but the run's own port.
func masqueradeRules(ch *nftables.Chain, s slot) []*nftables.Rule {
	var rules []*nftables.Rule
	for _, a := range []netip.Addr{s.Command4(), s.Command6()} {
		proto, offset := byte(unix.NFPROTO_IPV4), uint32(12) // IPv4 source address
		if a.Is6() {
			proto, offset = unix.NFPROTO_IPV6, 8
		}
		rules = append(rules, &nftables.Rule{Table: ch.Table, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(a.BitLen() / 8)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(s.HostInterface())},
			&expr.Masq{},
		}})
	}
	return rules
}

// ifname is an interface name as the kernel compares it: IFNAMSIZ bytes,
// zero-padded.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// addMasquerade installs the run's table in one transaction. A table of
// that name left by an earlier run is replaced, not merged with.
func addMasquerade(c *nftables.Conn, run string, s slot) error {
	t := masqueradeTable(run)
	c.AddTable(t) // adding is idempotent, so the delete below cannot fail
	c.DelTable(t)
	c.AddTable(t)
	ch := c.AddChain(masqueradeChain(t))
	for _, r := range masqueradeRules(ch, s) {
		c.AddRule(r)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft table inet %s: %w", t.Name, err)
	}
	return nil
}

// removeMasquerade deletes the run's table if it exists and reports
// whether it did.
func removeMasquerade(c *nftables.Conn, run string) (bool, error) {
	t := masqueradeTable(run)
	tables, err := c.ListTablesOfFamily(t.Family)
	if err != nil {
		return false, fmt.Errorf("nft: listing tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == t.Name }) {
		return false, nil
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("nft: delete table inet %s: %w", t.Name, err)
	}
	return true, nil
}
