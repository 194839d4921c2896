package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/profiles"
)

func parse(t *testing.T, proxyYAML string) (*Config, error) {
	t.Helper()
	p, err := profiles.Parse("t.yaml", []byte("name: t\nbehaviors: []\nproxy:\n"+proxyYAML))
	if err != nil {
		return nil, err
	}
	return FromProfile(p)
}

func TestConfig_BuiltinsDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		want func(*Config) bool
	}{
		{"juniper-dx", func(c *Config) bool {
			return c.Mode == ModeJuniperDX && c.PoolSize == 6 && c.Order == "lru" && c.EmptyReply && !c.CheckBeforeReuse
		}},
		{"elb", func(c *Config) bool {
			return c.Mode == ModeELB && c.IdleTimeout == 60*time.Second && c.Order == "mru" && !c.RetryIdempotent && c.HopByHop == "correct" && c.Aim == nil
		}},
	} {
		p, err := profiles.Load(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := FromProfile(p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !tc.want(c) {
			t.Errorf("%s decodes to %+v", tc.name, c)
		}
		if len(p.Sources) == 0 || p.Description == "" {
			t.Errorf("%s: no description or sources", tc.name)
		}
	}
}

func TestConfig_Decode(t *testing.T) {
	c, err := parse(t, "  mode: elb\n  idle_timeout: 1.5s\n  aim_at_idle_timeout: {backend_idle: 1s, offset: -5ms}\n  max_header_bytes: 8kib\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.IdleTimeout != 1500*time.Millisecond || c.Aim == nil || c.Aim.BackendIdle != time.Second || c.Aim.Offset != -5*time.Millisecond || c.MaxHeaderBytes != 8192 {
		t.Errorf("decoded %+v aim %+v", c, c.Aim)
	}
	c, err = parse(t, "  mode: juniper-dx\n  pool_size: 2\n  min_idle: 35s\n  queue_timeout: 2m\n  check_before_reuse: true\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.PoolSize != 2 || c.MinIdle != 35*time.Second || c.QueueTimeout != 2*time.Minute || !c.CheckBeforeReuse || !c.EmptyReply {
		t.Errorf("decoded %+v", c)
	}
}

func TestConfig_ErrorsNameLineAndKey(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no mode", "  pool_size: 3\n", "t.yaml:4: proxy: mode is missing (juniper-dx or elb)"},
		{"bad mode", "  mode: f5\n", `t.yaml:4: proxy: mode: "f5" is not one of juniper-dx, elb`},
		{"unknown key", "  mode: elb\n  idle_timout: 5s\n", `t.yaml:5: proxy: unknown key "idle_timout" (known: mode, order,`},
		{"other mode's key", "  mode: elb\n  pool_size: 3\n", "t.yaml:5: proxy: pool_size: applies to mode juniper-dx only (this profile's mode is elb)"},
		{"bad duration", "  mode: elb\n  idle_timeout: 5 sec\n", `t.yaml:5: proxy: idle_timeout: "5 sec" is not a duration such as 300ms or 1.5s`},
		{"zero timeout", "  mode: elb\n  idle_timeout: 0s\n", "t.yaml:5: proxy: idle_timeout: must be more than 0"},
		{"negative", "  mode: juniper-dx\n  min_idle: -1s\n", `t.yaml:5: proxy: min_idle: "-1s" is negative`},
		{"pool range", "  mode: juniper-dx\n  pool_size: 0\n", "t.yaml:5: proxy: pool_size: 0 is out of range (1 to 1000)"},
		{"pool not int", "  mode: juniper-dx\n  pool_size: six\n", `t.yaml:5: proxy: pool_size: expected a whole number from 1 to 1000, found "six"`},
		{"bool", "  mode: elb\n  retry_idempotent: maybe\n", `t.yaml:5: proxy: retry_idempotent: expected true or false, found "maybe"`},
		{"enum", "  mode: elb\n  hop_by_hop: sloppy\n", `t.yaml:5: proxy: hop_by_hop: "sloppy" is not one of correct, buggy`},
		{"size", "  mode: elb\n  max_header_bytes: 10\n", "t.yaml:5: proxy: max_header_bytes: 10 is out of range (1024 to 1048576 bytes)"},
		{"queue vs min_idle", "  mode: juniper-dx\n  min_idle: 2m\n", "t.yaml:5: proxy: min_idle: queue_timeout (1m0s) must be longer than min_idle (2m0s)"},
		{"aim key", "  mode: elb\n  aim_at_idle_timeout:\n    backend_idle: 1s\n    ofset: 5ms\n", `t.yaml:7: proxy: aim_at_idle_timeout: unknown key "ofset" (known: backend_idle, offset)`},
		{"aim no idle", "  mode: elb\n  aim_at_idle_timeout: {offset: 5ms}\n", "t.yaml:5: proxy: aim_at_idle_timeout: backend_idle is missing"},
		{"aim offset", "  mode: elb\n  aim_at_idle_timeout: {backend_idle: 1s, offset: x}\n", `t.yaml:5: proxy: aim_at_idle_timeout: offset: "x" is not a duration`},
		{"aim before use", "  mode: elb\n  aim_at_idle_timeout: {backend_idle: 1s, offset: -2s}\n", "t.yaml:5: proxy: aim_at_idle_timeout: offset: -2s makes the aim point -1s"},
		{"duplicate", "  mode: elb\n  order: mru\n  order: lru\n", `t.yaml:6: proxy: duplicate key "order" (first at line 5)`},
		{"not a mapping", "  - mode\n", "t.yaml:4: proxy: expected a mapping of proxy settings, found a list"},
	} {
		_, err := parse(t, tc.in)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: error\n  %v\nwant prefix\n  %s", tc.name, err, tc.want)
		}
	}
}

func TestConfig_ProfileWithoutProxySection(t *testing.T) {
	p, err := profiles.Load("passthrough")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromProfile(p); err == nil || !strings.Contains(err.Error(), "has no proxy: section") {
		t.Fatalf("FromProfile(passthrough): %v", err)
	}
}
