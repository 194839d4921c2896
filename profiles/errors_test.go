package profiles

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// hdr starts a profile whose first behavior is on line 3.
const hdr = "name: t\nbehaviors:\n"

// bomb is the YAML "billion laughs": nine levels of nine aliases each, the
// anchors in a list the profile accepts (sources), so only the budget can
// stop it.
var bomb = func() string {
	var b strings.Builder
	b.WriteString("name: bomb\nsources:\n  - &a0 lol\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "  - &a%d [", i)
		for j := 0; j < 9; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("behaviors: []\n")
	return b.String()
}()

// badProfiles are the error paths, each with the one-line error it must
// give (a prefix: suggestions and lists of known names follow).
var badProfiles = []struct{ name, yaml, want string }{
	// The file as a whole.
	{"empty", "", "t.yaml: is empty"},
	{"only comments", "# nothing\n\n", "t.yaml: is empty"},
	{"null document", "---\n", "t.yaml:2: the top level must be a mapping with keys name, description, sources, seed, behaviors, proxy; found no value"},
	{"top is a list", "- a\n- b\n", "t.yaml:1: the top level must be a mapping"},
	{"top is a scalar", "hello\n", `t.yaml:1: the top level must be a mapping with keys name, description, sources, seed, behaviors, proxy; found "hello"`},
	{"two documents", "name: a\nbehaviors: []\n---\nname: b\n", "t.yaml:3: holds more than one YAML document"},
	{"syntax", "name: [a, b\nbehaviors: []\n", "t.yaml:1: did not find expected ',' or ']'"},
	{"tab indentation", "name: t\nbehaviors:\n\t- type: drop\n", "t.yaml:3: found character that cannot start any token (tabs are not allowed for indentation; use spaces)"},
	{"bomb", bomb, "t.yaml:6: aliases expand to more than 1000 nodes"},
	{"alias cycle", "name: t\nbehaviors: &b [*b]\n", "t.yaml:2: nested deeper than 32 levels"},
	{"deep", "name: t\ndescription: " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\nbehaviors: []\n", "t.yaml:2: nested deeper than 32 levels"},
	{"deeper than yaml allows", "name: t\ndescription: " + strings.Repeat("[", 20000) + "\n", "t.yaml:2: nested deeper than 32 levels"},
	{"merge key", "name: t\nbehaviors:\n  - <<: {type: drop}\n", "t.yaml:3: merge keys (<<) are not supported"},
	{"custom tag", "name: !evil t\nbehaviors: []\n", `t.yaml:1: tag "!evil" is not supported`},
	{"binary tag", "name: !!binary aGk=\nbehaviors: []\n", `t.yaml:1: tag "!!binary" is not supported`},
	{"control chars", "name: t\x00\nbehaviors: []\n", "t.yaml: control characters are not allowed"},

	// Top-level keys.
	{"unknown key", "name: t\nbehavior: []\n", `t.yaml:2: unknown key "behavior"; did you mean "behaviors"? (known: name, description, sources, seed, behaviors, proxy)`},
	{"unknown key far", "name: t\nwhatever: 1\n", `t.yaml:2: unknown key "whatever" (known: name,`},
	{"duplicate key", "name: t\nbehaviors: []\nname: u\n", `t.yaml:3: duplicate key "name" (first at line 1)`},
	{"complex key", "? [a]\n: b\n", "t.yaml:1: keys must be plain names, found a list"},
	{"missing name", "behaviors: []\n", "t.yaml:1: name is missing"},
	{"missing behaviors", "name: t\n", "t.yaml:1: behaviors is missing (write `behaviors: []` for none)"},
	{"bad name", "name: a b\nbehaviors: []\n", `t.yaml:1: name: "a b" is not a name of letters, digits`},
	{"name is a list", "name: [a]\nbehaviors: []\n", "t.yaml:1: name: expected a string, found a list"},
	{"null name", "name:\nbehaviors: []\n", "t.yaml:1: name: has no value (expected a string)"},
	{"sources mapping", "name: t\nsources: {a: b}\nbehaviors: []\n", "t.yaml:2: sources: expected a string or a list of strings, found a mapping"},
	{"sources nested", "name: t\nsources:\n  - ok\n  - [no]\nbehaviors: []\n", "t.yaml:4: sources: expected a string or a list of strings, found a list in the list"},
	{"negative seed", "name: t\nseed: -1\nbehaviors: []\n", "t.yaml:2: seed: -1 is negative (expected 0 or more)"},
	{"string seed", "name: t\nseed: \"42\"\nbehaviors: []\n", `t.yaml:2: seed: expected a whole number, found "42"`},
	{"huge seed", "name: t\nseed: 18446744073709551616\nbehaviors: []\n", `t.yaml:2: seed: expected a whole number, found "18446744073709551616"`},

	// The behaviors list.
	{"behaviors null", "name: t\nbehaviors:\n", "t.yaml:2: behaviors: expected a list of behaviors (`[]` for none), found no value"},
	{"behaviors mapping", "name: t\nbehaviors: {type: drop}\n", "t.yaml:2: behaviors: expected a list of behaviors"},
	{"too many", "name: t\nbehaviors: [" + strings.Repeat("{type: drop}, ", 256) + "{type: drop}]\n", "t.yaml:2: behaviors: has 257 entries; a profile may have at most 256"},
	{"item scalar", hdr + "  - drop\n", `t.yaml:3: behaviors[0]: expected a mapping with a type, found "drop"`},
	{"missing type", hdr + "  - match: {port: 1}\n", "t.yaml:3: behaviors[0]: type is missing (one of "},
	{"unknown behavior", hdr + "  - type: dorp\n", `t.yaml:3: behaviors[0]: type: unknown behavior "dorp"; did you mean "drop"? (known: `},
	{"type list", hdr + "  - type: [drop]\n", "t.yaml:3: behaviors[0]: type: expected a string, found a list"},
	{"unknown parameter", hdr + "  - type: test-fake\n    dely: 1s\n", `t.yaml:4: behaviors[0] (test-fake): unknown parameter "dely"; did you mean "delay"? (test-fake takes: type, name, match, delay, count, small, big, ratio, on, mode, hosts, rate, size, loss)`},
	{"parameter of passthrough", hdr + "  - type: passthrough\n    delay: 1s\n", `t.yaml:4: behaviors[0] (passthrough): unknown parameter "delay" (passthrough takes: type, name, match)`},
	{"unexported field", hdr + "  - type: test-fake\n    private: 1\n", `t.yaml:4: behaviors[0] (test-fake): unknown parameter "private"`},
	{"duplicate parameter", hdr + "  - type: test-fake\n    delay: 1s\n    delay: 2s\n", `t.yaml:5: behaviors[0]: duplicate key "delay" (first at line 4)`},

	// Parameter values: units, types, ranges.
	{"bad unit", hdr + "  - type: test-fake\n    delay: 10 sec\n", `t.yaml:4: behaviors[0] (test-fake): delay: "10 sec" is not a duration such as 300ms or 1.5s`},
	{"duration without unit", hdr + "  - type: test-fake\n    delay: 300\n", `t.yaml:4: behaviors[0] (test-fake): delay: "300" is not a duration such as 300ms or 1.5s`},
	{"negative duration", hdr + "  - type: test-fake\n    delay: -1s\n", `t.yaml:4: behaviors[0] (test-fake): delay: "-1s" is negative`},
	{"duration list", hdr + "  - type: test-fake\n    delay: [1s]\n", "t.yaml:4: behaviors[0] (test-fake): delay: expected a duration such as 300ms or 1.5s, found a list"},
	{"null parameter", hdr + "  - type: test-fake\n    delay:\n", "t.yaml:4: behaviors[0] (test-fake): delay: has no value (expected a duration such as 300ms or 1.5s)"},
	{"int as string", hdr + "  - type: test-fake\n    count: many\n", `t.yaml:4: behaviors[0] (test-fake): count: expected an integer, found "many"`},
	{"int as float", hdr + "  - type: test-fake\n    count: 1.5\n", `t.yaml:4: behaviors[0] (test-fake): count: expected an integer, found "1.5"`},
	{"int overflow", hdr + "  - type: test-fake\n    big: 9223372036854775808\n", `t.yaml:4: behaviors[0] (test-fake): big: 9223372036854775808 is out of range for an integer of 64 bits`},
	{"uint8 overflow", hdr + "  - type: test-fake\n    small: 256\n", "t.yaml:4: behaviors[0] (test-fake): small: 256 is out of range for a whole number of 8 bits"},
	{"uint negative", hdr + "  - type: test-fake\n    small: -3\n", "t.yaml:4: behaviors[0] (test-fake): small: -3 is negative"},
	{"validate range", hdr + "  - type: test-fake\n    mode: x\n    count: 1000\n", "t.yaml:5: behaviors[0] (test-fake): count: 1000 is out of range 0-100"},
	{"validate unknown field", hdr + "  - type: test-fake\n    mode: bad\n", "t.yaml:3: behaviors[0] (test-fake): nowhere: a field the profile did not set"},
	{"real behavior range", hdr + "  - type: drop\n    count: -1\n", "t.yaml:4: behaviors[0] (drop): count: -1 is negative"},
	{"bool as yes", hdr + "  - type: test-fake\n    on: yes\n", `t.yaml:4: behaviors[0] (test-fake): on: expected true or false, found "yes"`},
	{"float as word", hdr + "  - type: test-fake\n    ratio: half\n", `t.yaml:4: behaviors[0] (test-fake): ratio: expected a number, found "half"`},
	{"float infinite", hdr + "  - type: test-fake\n    ratio: .inf\n", `t.yaml:4: behaviors[0] (test-fake): ratio: ".inf" is not a finite number`},
	{"string as mapping", hdr + "  - type: test-fake\n    mode: {a: b}\n", "t.yaml:4: behaviors[0] (test-fake): mode: expected a string, found a mapping"},
	{"list element", hdr + "  - type: test-fake\n    hosts:\n      - a\n      - {b: c}\n", "t.yaml:6: behaviors[0] (test-fake): hosts: expected a string or a list of strings, found a mapping in the list"},
	{"bad rate", hdr + "  - type: test-fake\n    rate: 40 kbits\n", `t.yaml:4: behaviors[0] (test-fake): rate: "40 kbits" is not a rate such as 40kbit, 2mbit or 1gbit`},
	{"bad size", hdr + "  - type: test-fake\n    size: lots\n", `t.yaml:4: behaviors[0] (test-fake): size: "lots" is not a size such as 1500b, 64kb or 1mib`},
	{"probability over 1", hdr + "  - type: test-fake\n    loss: 150%\n", `t.yaml:4: behaviors[0] (test-fake): loss: "150%" is not a probability between 0 and 1`},
	{"probability list", hdr + "  - type: test-fake\n    loss: [1]\n", "t.yaml:4: behaviors[0] (test-fake): loss: expected a probability, found a list"},
	{"unsupported type", hdr + "  - type: test-fake-unsupported\n    table: x\n", "t.yaml:4: behaviors[0] (test-fake-unsupported): table: parameter of unsupported type map[string]int (a bug in the behavior)"},

	// Matches.
	{"match scalar", hdr + "  - type: drop\n    match: all\n", `t.yaml:4: behaviors[0] (drop): match: expected a mapping of direction, from, to, protocol, port, tcp_flags, found "all"`},
	{"match unknown key", hdr + "  - type: drop\n    match: {prot: tcp}\n", `t.yaml:4: behaviors[0] (drop): match: unknown key "prot"; did you mean "port"? (known: direction, from, to, protocol, port, tcp_flags)`},
	{"match duplicate key", hdr + "  - type: drop\n    match:\n      port: 1\n      port: 2\n", `t.yaml:6: behaviors[0] (drop): match: duplicate key "port" (first at line 5)`},
	{"bad direction", hdr + "  - type: drop\n    match:\n      port: 80\n      direction: sideways\n", `t.yaml:6: behaviors[0] (drop): match.direction: "sideways" is not upstream, downstream or both`},
	{"bad protocol", hdr + "  - type: drop\n    match:\n      protocol: sctp\n", `t.yaml:5: behaviors[0] (drop): match.protocol: "sctp" is not tcp, udp, icmp or any`},
	{"port out of range", hdr + "  - type: drop\n    match:\n      port: 65536\n", "t.yaml:5: behaviors[0] (drop): match.port: 65536 is out of range 0-65535"},
	{"port not a number", hdr + "  - type: drop\n    match:\n      port: http\n", `t.yaml:5: behaviors[0] (drop): match.port: expected an integer, found "http"`},
	{"bad host name", hdr + "  - type: drop\n    match:\n      to: [server, Sever_1]\n", `t.yaml:5: behaviors[0] (drop): match.to: "Sever_1" is neither a CIDR prefix nor a lab host name`},
	{"bad cidr", hdr + "  - type: drop\n    match:\n      from: 198.18.0.0/40\n", `t.yaml:5: behaviors[0] (drop): match.from: "198.18.0.0/40" is neither`},
	{"bad tcp flag", hdr + "  - type: drop\n    match:\n      tcp_flags: [syn, psh]\n", `t.yaml:5: behaviors[0] (drop): match.tcp_flags: "psh" is not one of`},
	{"second behavior", hdr + "  - type: drop\n  - type: log\n    every: often\n", `t.yaml:5: behaviors[1] (log): every: expected an integer, found "often"`},
}

func TestParse_ErrorsNameFileLineAndField(t *testing.T) {
	for _, tc := range badProfiles {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("parsed: %+v", p)
			}
			wantErr(t, err, tc.want)
		})
	}
}

func TestParse_TooBig(t *testing.T) {
	data := []byte("name: t\nbehaviors: []\n" + strings.Repeat("#", MaxSize))
	_, err := Parse("t.yaml", data)
	wantErr(t, err, "t.yaml: is 1048598 bytes; a profile may be at most 1048576 bytes (1 MiB)")
}

// TestParse_BombIsRefusedQuickly: the budget stops expansion at once
// instead of after 9^9 nodes.
func TestParse_BombIsRefusedQuickly(t *testing.T) {
	start := time.Now()
	_, err := Parse("t.yaml", []byte(bomb))
	if err == nil || !strings.Contains(err.Error(), "aliases expand") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}

// TestParse_LargestAcceptedInputIsFast: 1 MiB of the cheapest nodes.
func TestParse_LargestAcceptedInputIsFast(t *testing.T) {
	data := []byte("name: t\nbehaviors: []\nsources: [" + strings.Repeat("a,", (MaxSize-40)/2) + "a]\n")
	start := time.Now()
	p, err := Parse("t.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Sources) < 500000 {
		t.Errorf("%d sources", len(p.Sources))
	}
	// About 0.6 s here; the bound is loose enough for -race and a busy
	// machine and still catches a parse that grows faster than linearly.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("%d bytes, %d nodes took %v", len(data), len(p.Sources), d)
	}
}

// A well-formed host name that is not a host of the lab passes parsing (a
// lab may have more hosts than client, server and lb) and fails when the
// chain is built, still naming file and line.
func TestChain_UnknownHostNameFailsWithLine(t *testing.T) {
	p, err := Parse("t.yaml", []byte(hdr+"  - type: drop\n    match:\n      to: [server, sever]\n"))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	_, err = p.Chain(0, nil)
	if err == nil || !strings.Contains(err.Error(), "t.yaml:5") || !strings.Contains(err.Error(), `"sever"`) {
		t.Fatalf("chain error %v", err)
	}
	db := func(name string) ([]netip.Addr, bool) {
		if name == "sever" {
			return []netip.Addr{netip.MustParseAddr("198.18.0.10")}, true
		}
		return DefaultResolver(name)
	}
	if _, err := p.Chain(0, db); err != nil {
		t.Fatalf("a lab with host sever: %v", err)
	}
}

// passwd is a file that is not a profile: YAML reads it as one long
// scalar.
var passwd = "root:x:0:0:root:/root:/bin/bash\n" + strings.Repeat("daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n", 60)

// TestParse_ErrorsQuoteAnExcerpt: an error quotes at most a short excerpt
// of what it found, never the file or a whole long value.
func TestParse_ErrorsQuoteAnExcerpt(t *testing.T) {
	_, err := Parse("/etc/passwd", []byte(passwd))
	want := `/etc/passwd:1: the top level must be a mapping with keys name, description, sources, seed, behaviors, proxy; ` +
		`found "root:x:0:0:root:/root:/bin/bash daemon:x"… (2911 characters)`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	long := strings.Repeat("swallow", 1000)
	for _, doc := range []string{
		hdr + "  - type: asa-teardown\n    fin: " + long + "\n",        // the behavior's own message
		hdr + "  - type: delay\n    delay: " + long + "\n",             // the decoder's
		hdr + "  - type: delay\n    " + long[:105] + ": 1\n",           // an unknown key (YAML keys are short)
		hdr + "  - type: " + long + "\n",                               // an unknown behavior
		hdr + "  - type: delay\n    match: {protocol: " + long + "}\n", // the match's
	} {
		_, err := Parse("p.yaml", []byte(doc))
		if err == nil || len(err.Error()) > 650 || !strings.Contains(err.Error(), "swallowswallow") {
			t.Errorf("%d-byte error: %.200s", len(fmt.Sprint(err)), err)
		}
	}
	// A message cut for length keeps its tail, which says what was wrong.
	_, err = Parse("p.yaml", []byte(hdr+"  - type: asa-teardown\n    fin: "+long+"\n"))
	if err == nil || !strings.HasSuffix(err.Error(), `swallow" is not forward or swallow`) || !strings.Contains(err.Error(), "characters cut") {
		t.Errorf("got %v", err)
	}
}
