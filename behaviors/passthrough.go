package behaviors

// Passthrough forwards every packet unchanged. It is the template for new
// behaviors and the explicit "no fault" entry of a profile.
type Passthrough struct{}

func (*Passthrough) Handle(*Packet) Verdict { return Pass }

func init() {
	Register("passthrough", "forward every packet unchanged", func() Behavior { return &Passthrough{} })
}
