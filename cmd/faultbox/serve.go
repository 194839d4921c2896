package main

import (
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/faultbox/faultbox/internal/serve"
	"github.com/spf13/cobra"
)

var serveCfg = serve.DefaultConfig()
var serveLog string

var serveCmd = &cobra.Command{
	Use:   "serve [flags]",
	Short: "Run the reference HTTP/1.1 server the scenarios use",
	Long: `serve is a small HTTP/1.1 server with the timers and close behaviors of the
servers in the field reports under exact control: TCP_DEFER_ACCEPT, keep-alive
and read timeouts, lingering or abrupt close after error responses, early
responses before the request body, SO_SNDTIMEO and TCP_USER_TIMEOUT.

GET / answers --response-size bytes, GET /bytes/N answers N bytes (N may carry
a unit: /bytes/10mib), GET /sleep/DURATION waits without reading, then answers;
every other path answers 200.

Every step is a JSON line in --log: time (RFC 3339), t (seconds since start),
event (listen, accept, read, request, write, response, timeout, close, error,
linger, shutdown), conn, peer, bytes, status, reason, err; accept adds wait
and rtt (seconds, from TCP_INFO), listen adds defer and defer_effective (the
TCP_DEFER_ACCEPT value the kernel reads back, rounded up to its SYN-ACK
retransmit schedule: 1->1, 5->7, 30->31). SIGINT or SIGTERM closes the
listeners, logs shutdown and exits 0.`,
	Example: `  # like Apache's default AcceptFilter (30 s defer, 20 s read timeout)
  faultbox serve --listen 198.18.0.2:80 --listen [2001:db8::2]:80 --defer-accept 30

  # the lingering-close failure: an early 401 to a large POST, closed abruptly
  faultbox serve --early-response --log /tmp/serve.jsonl
  # ... and the fix
  faultbox serve --early-response --linger --linger-time 2s

  # akka in the ELB report: early response, closes without "Connection: close"
  faultbox serve --early-response --early-close-no-header --keepalive-timeout 60s

  # a big response to a vanished client, given up after 10 s without progress
  faultbox serve --response-size 50mib --sndtimeo 10s`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		if err := serveCfg.Validate(); err != nil {
			return usageError(err)
		}
		var logw io.Writer = cmd.ErrOrStderr()
		if serveLog != "" && serveLog != "-" {
			f, err := os.Create(serveLog)
			if err != nil {
				return usageError(err)
			}
			defer f.Close()
			logw = f
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return serve.Run(ctx, serveCfg, logw)
	},
}

func init() {
	f := serveCmd.Flags()
	f.StringArrayVar(&serveCfg.Listen, "listen", serveCfg.Listen,
		`address to listen on, may be given twice (e.g. "198.18.0.2:80" and "[2001:db8::2]:80"); "[::]:80" alone is dual stack`)
	f.IntVar(&serveCfg.DeferAccept, "defer-accept", serveCfg.DeferAccept,
		"TCP_DEFER_ACCEPT seconds on the listeners, 0 = off (e.g. 30 as Apache, 1 for fast tests)")
	f.DurationVar(&serveCfg.KeepAliveTimeout, "keepalive-timeout", serveCfg.KeepAliveTimeout,
		"idle time between requests before close(); 0 = no keep-alive, close after each response (e.g. 60s as akka-http)")
	f.DurationVar(&serveCfg.ReadTimeout, "read-timeout", serveCfg.ReadTimeout,
		"time to read a full request, from accept or the previous response; then close (0 = none)")
	f.BoolVar(&serveCfg.Linger, "linger", serveCfg.Linger,
		"lingering close after error responses: shutdown(SHUT_WR), drain input, then close (as Apache)")
	f.DurationVar(&serveCfg.LingerTime, "linger-time", serveCfg.LingerTime,
		"how long --linger drains the input at most (e.g. 500ms)")
	f.BoolVar(&serveCfg.EarlyResponse, "early-response", serveCfg.EarlyResponse,
		"answer 401 to a POST or PUT with a body before reading the body, then close (per --linger)")
	f.BoolVar(&serveCfg.EarlyCloseNoHeader, "early-close-no-header", serveCfg.EarlyCloseNoHeader,
		`with --early-response, leave out "Connection: close" although the server closes (akka, ELB report cause B)`)
	f.DurationVar(&serveCfg.SndTimeo, "sndtimeo", serveCfg.SndTimeo,
		"SO_SNDTIMEO on accepted sockets: a send that moves nothing for this long fails and the server closes (e.g. 600s as Varnish; 0 = none)")
	f.DurationVar(&serveCfg.UserTimeout, "user-timeout", serveCfg.UserTimeout,
		"TCP_USER_TIMEOUT on accepted sockets: the kernel drops a connection whose data stays unacknowledged this long (e.g. 30s; 0 = kernel default)")
	f.Var(&serveCfg.ResponseSize, "response-size",
		"body size for GET / and other plain paths (e.g. 1500b, 64kb, 10mib)")
	f.BoolVar(&serveCfg.FinWaitShutdown, "fin-wait-shutdown", serveCfg.FinWaitShutdown,
		"on keep-alive timeout call shutdown(SHUT_WR) and keep the fd instead of close(): FIN_WAIT_2 without the orphan timer")
	f.StringVar(&serveLog, "log", "",
		`file for the JSON event log, one line per event (default stderr; "-" is stderr too)`)
	rootCmd.AddCommand(serveCmd)
}
