package control

import (
	"testing"

	"github.com/faultbox/faultbox/internal/engine"
	"github.com/faultbox/faultbox/profiles"
)

// A PUT of a whole profile that meets another change under way is
// refused, not queued behind it: its sender learns that someone else is
// changing the device. Behavior edits wait their turn.
func TestController_ApplyDuringAnotherChangeIsAConflict(t *testing.T) {
	e := engine.New(engine.Config{})
	defer e.Close()
	c := New(Config{Engine: e})
	p, err := profiles.Load("block-port-81")
	if err != nil {
		t.Fatal(err)
	}
	c.change.Lock() // another change under way
	_, err = c.Apply(ApplyRequest{Profile: p, Source: "block-port-81"})
	c.change.Unlock()
	if KindOf(err) != Conflict {
		t.Fatalf("apply during a change: %v, want a conflict", err)
	}
	if got, _ := c.Profile(); got.Name != "passthrough" || got.Version != 0 {
		t.Fatalf("the refused apply changed the profile: %+v", got)
	}
	if got, err := c.Apply(ApplyRequest{Profile: p, Source: "block-port-81"}); err != nil || got.Name != "block-port-81" || got.Version != 1 {
		t.Fatalf("apply: %+v %v", got, err)
	}
}
