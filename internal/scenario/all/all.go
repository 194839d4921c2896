// Package all registers every scenario family: importing it (as
// cmd/faultbox does) makes every scenario available to scenario.Run. A new
// family adds its import here.
package all

import (
	_ "github.com/faultbox/faultbox/internal/scenario/asa"
	_ "github.com/faultbox/faultbox/internal/scenario/closing"
	_ "github.com/faultbox/faultbox/internal/scenario/conntrack"
	_ "github.com/faultbox/faultbox/internal/scenario/deferaccept"
	_ "github.com/faultbox/faultbox/internal/scenario/elb"
	_ "github.com/faultbox/faultbox/internal/scenario/idle"
	_ "github.com/faultbox/faultbox/internal/scenario/pathmtu"
	_ "github.com/faultbox/faultbox/internal/scenario/tcpext"
)
