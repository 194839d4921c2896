package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/faultbox/faultbox/client"
	"github.com/faultbox/faultbox/internal/api/apitest"
	"github.com/faultbox/faultbox/internal/packet"
)

// The examples run against a device in memory called "default", its socket
// where Dial looks for it, with a client host sending a SYN to the
// server's port 80 every 50 ms.
func TestMain(m *testing.M) {
	stop := startExampleDevice()
	code := m.Run()
	stop()
	os.Exit(code)
}

func startExampleDevice() (stop func()) {
	dir, err := os.MkdirTemp("", "fbx-client-examples-")
	if err != nil {
		panic(err)
	}
	client.RunDir = dir
	d, err := apitest.Start(dir, "default", log.New(io.Discard, "", 0))
	if err != nil {
		panic(err)
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		syn := apitest.Segment(true, 40000, 1, packet.SYN, 0)
		for {
			select {
			case <-quit:
				return
			case <-time.After(50 * time.Millisecond):
			}
			d.Send(syn)
			d.Receive(time.Second)
		}
	}()
	return func() {
		close(quit)
		<-done
		d.Close()
		os.RemoveAll(dir)
	}
}

func Example() {
	c, err := client.Dial("default") // the lab called default; a socket path works too
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	// 200 ms more for everything the server sends, while a test runs.
	_, err = c.AddBehavior(ctx, client.Spec{Type: "delay", Name: "slow",
		Match: &client.Match{Direction: "downstream"}, Params: client.Params{"delay": "200ms"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.RemoveBehavior(ctx, "slow")

	st, err := c.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, b := range st.Behaviors {
		fmt.Printf("%s (%s): %s\n", b.Name, b.Type, b.Match)
	}
	// Output:
	// passthrough (passthrough): all
	// slow (delay): direction: downstream
}

func ExampleClient_Apply() {
	c, err := client.Dial("default")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	p, err := c.Apply(ctx, []byte(`name: lossy
behaviors:
  - type: loss
    p: 2%
`), client.ApplyOptions{Source: "lossy.yaml"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("applied", p.Name, "from", p.Source)

	// A profile with an error changes nothing; the error says where it is.
	_, err = c.Apply(ctx, []byte("name: bad\nbehaviors:\n  - type: delay\n    delay: 2 sec\n"), client.ApplyOptions{Source: "bad.yaml"})
	var ce *client.Error
	if errors.As(err, &ce) {
		fmt.Println(ce.StatusCode, ce.Message)
	}
	p, _ = c.Profile(ctx)
	fmt.Println("still", p.Name)
	c.ApplyBuiltin(ctx, "passthrough", client.ApplyOptions{})
	// Output:
	// applied lossy from lossy.yaml
	// 400 bad.yaml:4: behaviors[0] (delay): delay: "2 sec" is not a duration such as 300ms or 1.5s
	// still lossy
}

func ExampleClient_PatchBehavior() {
	c, err := client.Dial("default")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	c.ApplyBuiltin(ctx, "passthrough", client.ApplyOptions{})
	if _, err := c.AddBehavior(ctx, client.Spec{Type: "delay", Name: "slow", Params: client.Params{"delay": "50ms"}}); err != nil {
		log.Fatal(err)
	}
	// The delay's parameters change; its counters and its state in every
	// connection stay.
	if _, err := c.PatchBehavior(ctx, "slow", client.Params{"delay": "250ms", "jitter": "20ms"}); err != nil {
		log.Fatal(err)
	}
	p, err := c.Profile(ctx)
	if err != nil {
		log.Fatal(err)
	}
	_, chain, _ := strings.Cut(p.YAML, "behaviors:\n")
	fmt.Print(chain)
	c.RemoveBehavior(ctx, "slow")
	// Output:
	//   - type: passthrough
	//     name: passthrough
	//   - type: delay
	//     name: slow
	//     delay: 250ms
	//     jitter: 20ms
}

func ExampleClient_RemoveBehavior() {
	c, err := client.Dial("default")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	err = c.RemoveBehavior(ctx, "no-such-behavior")
	fmt.Println(client.IsNotFound(err))
	// Output:
	// true
}

var errSeen = errors.New("seen one")

func ExampleClient_FollowEvents() {
	c, err := client.Dial("default")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	// Log every SYN from now on, and follow the log from here.
	c.AddBehavior(ctx, client.Spec{Type: "log", Name: "syns", Match: &client.Match{TCPFlags: []string{"syn"}}})
	defer c.RemoveBehavior(context.Background(), "syns")
	err = c.FollowEvents(ctx, st.Events, func(e client.Event) error {
		fmt.Println(e.Note, e.Proto, e.Src, "->", fmt.Sprintf("%s:%d", e.Dst, e.DstPort), e.Flags)
		return errSeen // enough
	})
	fmt.Println(err == errSeen)
	// Output:
	// log tcp 198.18.0.1 -> 198.18.0.2:80 S
	// true
}
