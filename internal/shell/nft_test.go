package shell

import (
	"bytes"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TestMasqueradeRules checks the rules as the kernel gets them: the
// address family, then the source address at its offset in the network
// header, then the output interface (not the run's own), then masquerade.
// An inet table needs the family test: without it, an IPv6 packet's bytes
// 12-15 would be compared with the IPv4 address.
func TestMasqueradeRules(t *testing.T) {
	s := slot(5)
	tab := masqueradeTable("web")
	if tab.Name != "faultbox-run-web" || tab.Family != nftables.TableFamilyINet {
		t.Fatalf("table %+v", tab)
	}
	ch := masqueradeChain(tab)
	if ch.Type != nftables.ChainTypeNAT || ch.Hooknum != nftables.ChainHookPostrouting || *ch.Priority != *nftables.ChainPriorityNATSource {
		t.Fatalf("chain %+v", ch)
	}
	rules := masqueradeRules(ch, s)
	if len(rules) != 2 {
		t.Fatalf("%d rules, want one per family", len(rules))
	}
	for i, c := range []struct {
		proto  byte
		offset uint32
		addr   []byte
	}{
		{unix.NFPROTO_IPV4, 12, s.Command4().AsSlice()},
		{unix.NFPROTO_IPV6, 8, s.Command6().AsSlice()},
	} {
		r := rules[i]
		if r.Table != tab || r.Chain != ch || len(r.Exprs) != 7 {
			t.Fatalf("rule %d: %+v", i, r)
		}
		if m, ok := r.Exprs[0].(*expr.Meta); !ok || m.Key != expr.MetaKeyNFPROTO {
			t.Errorf("rule %d: first %#v, want meta nfproto", i, r.Exprs[0])
		}
		if cmp, ok := r.Exprs[1].(*expr.Cmp); !ok || cmp.Op != expr.CmpOpEq || !bytes.Equal(cmp.Data, []byte{c.proto}) {
			t.Errorf("rule %d: family test %#v, want == %d", i, r.Exprs[1], c.proto)
		}
		p, ok := r.Exprs[2].(*expr.Payload)
		if !ok || p.Base != expr.PayloadBaseNetworkHeader || p.Offset != c.offset || p.Len != uint32(len(c.addr)) {
			t.Errorf("rule %d: load %#v, want the source address", i, r.Exprs[2])
		}
		if cmp, ok := r.Exprs[3].(*expr.Cmp); !ok || cmp.Op != expr.CmpOpEq || !bytes.Equal(cmp.Data, c.addr) {
			t.Errorf("rule %d: address test %#v, want == %v", i, r.Exprs[3], c.addr)
		}
		if m, ok := r.Exprs[4].(*expr.Meta); !ok || m.Key != expr.MetaKeyOIFNAME {
			t.Errorf("rule %d: %#v, want meta oifname", i, r.Exprs[4])
		}
		wantIf := append([]byte("fbxrun5"), make([]byte, unix.IFNAMSIZ-len("fbxrun5"))...)
		if cmp, ok := r.Exprs[5].(*expr.Cmp); !ok || cmp.Op != expr.CmpOpNeq || !bytes.Equal(cmp.Data, wantIf) {
			t.Errorf("rule %d: interface test %#v, want != fbxrun5 padded to IFNAMSIZ", i, r.Exprs[5])
		}
		if _, ok := r.Exprs[6].(*expr.Masq); !ok {
			t.Errorf("rule %d: verdict %#v, want masquerade", i, r.Exprs[6])
		}
	}
}
