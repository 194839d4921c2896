package profiles

import (
	"strings"
	"testing"
)

// FuzzParse: no input makes Parse or Chain panic, and every error is one
// line that starts with the file's name.
//
//	go test ./profiles -run '^$' -fuzz FuzzParse -fuzztime 60s
func FuzzParse(f *testing.F) {
	for _, name := range Builtin() {
		data, err := builtinFS.ReadFile(builtinFile(name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(full))
	f.Add([]byte(bomb))
	for _, tc := range badProfiles {
		if len(tc.yaml) < 4096 {
			f.Add([]byte(tc.yaml))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", data)
		if err == nil {
			if _, err = p.Chain(1, nil); err == nil {
				return
			}
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "f.yaml") || strings.ContainsAny(msg, "\r\n") {
			t.Fatalf("error is not one line naming the file: %q", msg)
		}
	})
}
