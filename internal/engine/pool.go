package engine

import "github.com/faultbox/faultbox/tun"

// pool recycles packet buffers for packets that outlive their read batch
// (delayed, injected, split). Buffers come in three size classes so a
// queue of small segments does not pin 64 KiB each. After warm-up no packet
// allocates. Guarded by the engine lock.
type pool struct {
	classes [3]struct {
		size int
		free [][]byte
	}
}

func newPool() *pool {
	p := &pool{}
	for i, size := range []int{tun.Headroom + 2048, tun.Headroom + 16384, tun.BufSize} {
		p.classes[i].size = size
	}
	return p
}

// get returns a buffer able to hold n bytes after the headroom.
func (p *pool) get(n int) []byte {
	for i := range p.classes {
		c := &p.classes[i]
		if tun.Headroom+n > c.size {
			continue
		}
		if k := len(c.free); k > 0 {
			b := c.free[k-1]
			c.free = c.free[:k-1]
			return b
		}
		return make([]byte, c.size)
	}
	return make([]byte, tun.Headroom+n) // larger than any class: not pooled
}

func (p *pool) put(b []byte) {
	for i := range p.classes {
		if c := &p.classes[i]; cap(b) == c.size {
			c.free = append(c.free, b[:c.size])
			return
		}
	}
}
