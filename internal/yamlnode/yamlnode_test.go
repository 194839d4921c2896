package yamlnode

import (
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func parse(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

func TestPairs_InOrderThroughAliases(t *testing.T) {
	n := parse(t, "a: &x 1\nb: *x\nc:\n")
	kvs, lerr := Pairs(n)
	if lerr != nil {
		t.Fatal(lerr)
	}
	var got []string
	for _, kv := range kvs {
		got = append(got, kv.Key+"="+Describe(kv.Val))
	}
	if want := `a="1" b="1" c=no value`; strings.Join(got, " ") != want {
		t.Fatalf("pairs %s, want %s", strings.Join(got, " "), want)
	}
	if kvs[1].ValLine() != 1 || kvs[2].ValLine() != 3 {
		t.Errorf("value lines %d %d, want 1 (the anchor) and 3 (no value: the key's)", kvs[1].ValLine(), kvs[2].ValLine())
	}
}

func TestPairs_Refuses(t *testing.T) {
	for src, want := range map[string]string{
		"a: 1\nb: 2\na: 3\n": `line 3: duplicate key "a" (first at line 1)`,
		"? [x]\n: 1\n":       "line 1: keys must be plain names, found a list",
		"~: 1\n":             "line 1: keys must be plain names, found no value",
	} {
		_, lerr := Pairs(parse(t, src))
		if lerr == nil || "line "+strconv.Itoa(lerr.Line)+": "+lerr.Error() != want {
			t.Errorf("%q: %v, want %s", src, lerr, want)
		}
	}
}

func TestDescribe(t *testing.T) {
	for src, want := range map[string]string{"{a: 1}": "a mapping", "[1]": "a list", "x": `"x"`, "~": "no value"} {
		if got := Describe(parse(t, src)); got != want {
			t.Errorf("%s: %s, want %s", src, got, want)
		}
	}
	if got := Describe(nil); got != "nothing" {
		t.Errorf("nil: %s", got)
	}
}

func TestQuote_ShortValuesWholeLongOnesAnExcerpt(t *testing.T) {
	if got := Quote("forwrd"); got != `"forwrd"` {
		t.Errorf("short: %s", got)
	}
	if s := strings.Repeat("x", 50); Quote(s) != strconv.Quote(s) {
		t.Errorf("a value of 50 characters is cut: %s", Quote(s))
	}
	long := "root:x:0:0:root:/root:/bin/bash " + strings.Repeat("daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin ", 100)
	want := `"root:x:0:0:root:/root:/bin/bash daemon:x"… (4832 characters)`
	if got := Quote(long); got != want {
		t.Errorf("long: %s, want %s", got, want)
	}
	// Cut at a character, not inside one.
	if got := Quote(strings.Repeat("é", 100)); got != strconv.Quote(strings.Repeat("é", 40))+"… (100 characters)" {
		t.Errorf("multibyte: %s", got)
	}
	if got := Describe(parse(t, long)); !strings.HasPrefix(got, `"root:x:0:0:root`) || len(got) > 80 {
		t.Errorf("Describe of a long scalar: %s", got)
	}
}
