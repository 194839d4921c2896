package scenario

import "testing"

func TestParseNetstat(t *testing.T) {
	in := "TcpExt: SyncookiesSent TCPDeferAcceptDrop TSEcrRejected\n" +
		"TcpExt: 0 19 20\n" +
		"IpExt: InNoRoutes InTruncatedPkts\n" +
		"IpExt: 3 4\n" +
		"Tcp: RtoAlgorithm RetransSegs\n" +
		"Tcp: 1 58\n" +
		"Broken: a b\n" +
		"Broken: 1\n"
	got := parseNetstat(in)
	for k, want := range map[string]int64{"TcpExt.TCPDeferAcceptDrop": 19, "TcpExt.TSEcrRejected": 20, "IpExt.InTruncatedPkts": 4, "Tcp.RetransSegs": 58} {
		if got[k] != want {
			t.Errorf("%s = %d, want %d", k, got[k], want)
		}
	}
	if _, ok := got["Broken.a"]; ok {
		t.Error("a header and value line of different lengths was read")
	}
}
