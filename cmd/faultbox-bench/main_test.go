package main

import (
	"strings"
	"testing"
)

func TestConfigsOf_OnlyInOrder(t *testing.T) {
	all, err := configsOf(strings.Join(configNames, ","), "log.yaml")
	if err != nil || len(all) != len(configNames) {
		t.Fatalf("every name: %d configurations, %v; want %d", len(all), err, len(configNames))
	}
	got, err := configsOf(" log-cpu,, veth ", "log.yaml")
	if err != nil || len(got) != 2 || got[0].profile != "log.yaml" || got[0].kind != "lab" || got[1].kind != "veth" {
		t.Errorf("configsOf(\" log-cpu,, veth \"): %+v, %v", got, err)
	}
	if got, err := configsOf("", "log.yaml"); err != nil || len(got) != 0 {
		t.Errorf("configsOf(\"\"): %+v, %v; want none", got, err)
	}
	if _, err := configsOf("veth,bogus", "log.yaml"); err == nil || !strings.Contains(err.Error(), `"bogus"`) || !strings.Contains(err.Error(), "passthrough-spin") {
		t.Errorf("unknown name: %v; want it named and the known ones listed", err)
	}
}
