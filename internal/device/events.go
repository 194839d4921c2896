package device

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/faultbox/faultbox/client"
)

// WriteEvents prints the event log of the device called name to w, one
// event a line, as text or as JSON objects. Following, it goes on printing
// events as they happen until ctx is done, which is how a follow ends: not
// an error.
func WriteEvents(ctx context.Context, w io.Writer, name string, follow, asJSON bool) error {
	c, err := Dial(name)
	if err != nil {
		return err
	}
	defer c.Close()
	enc := json.NewEncoder(w)
	print := func(e client.Event) error {
		if asJSON {
			return enc.Encode(e)
		}
		_, err := fmt.Fprintln(w, e.Text)
		return err
	}
	if follow {
		if err := c.FollowEvents(ctx, 0, print); err != nil && ctx.Err() == nil {
			return fmt.Errorf("%s: %w", name, apiErr(err))
		}
		return nil
	}
	evs, err := c.Events(ctx, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", name, apiErr(err))
	}
	for _, e := range evs {
		if err := print(e); err != nil {
			return err
		}
	}
	return nil
}
