package main

import (
	"bytes"
	"regexp"
	"runtime"
	"testing"
)

func TestVersion_LinkedAndFromBuildInfo(t *testing.T) {
	saved := version
	t.Cleanup(func() { version = saved })

	version = "v1.2.3-4-gabcdef0"
	cmd := newVersionCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := "faultbox v1.2.3-4-gabcdef0 (" + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if out.String() != want {
		t.Errorf("version printed %q, want %q", out.String(), want)
	}

	// Not linked in: "devel", with the commit when the build was stamped
	// (test binaries are not).
	version = ""
	if v := Version(); !regexp.MustCompile(`^devel(-[0-9a-f]{1,12}(-dirty)?)?$`).MatchString(v) {
		t.Errorf("Version() = %q, want devel or devel-COMMIT[-dirty]", v)
	}
}
