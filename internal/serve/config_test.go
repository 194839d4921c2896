package serve

import (
	"strings"
	"testing"
	"time"
)

func TestConfig_ValidateNamesTheFlag(t *testing.T) {
	for flag, mod := range map[string]func(*Config){
		"--listen":                func(c *Config) { c.Listen = nil },
		"--defer-accept":          func(c *Config) { c.DeferAccept = -1 },
		"--keepalive-timeout":     func(c *Config) { c.KeepAliveTimeout = -time.Second },
		"--read-timeout":          func(c *Config) { c.ReadTimeout = -1 },
		"--linger-time":           func(c *Config) { c.LingerTime = -1 },
		"--sndtimeo":              func(c *Config) { c.SndTimeo = time.Nanosecond },
		"--user-timeout":          func(c *Config) { c.UserTimeout = time.Microsecond },
		"--early-close-no-header": func(c *Config) { c.EarlyCloseNoHeader = true },
	} {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s: error %v does not name the flag", flag, err)
		}
	}
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestListenNetwork_DualStackUnlessIPv4AlsoGiven(t *testing.T) {
	for _, tc := range []struct {
		addr string
		all  []string
		want string
	}{
		{"[::]:80", []string{"[::]:80"}, "tcp"},
		{":80", []string{":80"}, "tcp"},
		{"[::]:80", []string{"0.0.0.0:80", "[::]:80"}, "tcp6"},
		{":80", []string{"198.18.0.2:80", ":80"}, "tcp6"},
		{"[::]:80", []string{"0.0.0.0:8080", "[::]:80"}, "tcp"},
		{"198.18.0.2:80", nil, "tcp4"},
		{"[2001:db8::2]:80", nil, "tcp6"},
		{"server:80", nil, "tcp"},
	} {
		if got := listenNetwork(tc.addr, tc.all); got != tc.want {
			t.Errorf("%s among %v: %s, want %s", tc.addr, tc.all, got, tc.want)
		}
	}
}

func TestRoute_Paths(t *testing.T) {
	for _, tc := range []struct {
		path   string
		status int
		size   int64
		wait   time.Duration
	}{
		{"/", 200, 777, 0},
		{"/anything/else", 200, 777, 0},
		{"/bytes/12345", 200, 12345, 0},
		{"/bytes/1mib", 200, 1 << 20, 0},
		{"/bytes/x", 400, 0, 0},
		{"/sleep/250ms", 200, 777, 250 * time.Millisecond},
		{"/sleep/-1s", 400, 0, 0},
		{"/sleep/2h", 400, 0, 0},
	} {
		status, size, wait, _ := route(tc.path, 777)
		if status != tc.status || size != tc.size || wait != tc.wait {
			t.Errorf("%s: %d %d %v, want %d %d %v", tc.path, status, size, wait, tc.status, tc.size, tc.wait)
		}
	}
}

func TestPatternAt_ContinuousAcrossChunks(t *testing.T) {
	var got []byte
	for off := int64(0); off < 3*writeChunk; off += writeChunk {
		got = append(got, patternAt(off, writeChunk)...)
	}
	for i := 64; i < len(got); i++ {
		if got[i] != got[i-64] {
			t.Fatalf("body byte %d breaks the 64-byte period", i)
		}
	}
}

func TestConfig_ValidateRefusesListenAddressesThatAreNotIPPort(t *testing.T) {
	for _, a := range []string{"198.18.0.2:99999", "server:80", "198.18.0.2", "[2001:db8::2]"} {
		c := DefaultConfig()
		c.Listen = []string{a}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--listen "+a) {
			t.Errorf("--listen %s: %v", a, err)
		}
	}
}
