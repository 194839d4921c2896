package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/faultbox/faultbox/internal/proxy"
	"github.com/faultbox/faultbox/profiles"
	"github.com/spf13/cobra"
)

var proxyOpts struct {
	profile  string
	listen   string
	backends []string
	log      string
	seed     uint64
}

var proxyCmd = &cobra.Command{
	Use:   "proxy --profile NAME|FILE --listen ADDR --backend ADDR[,ADDR...] [--log FILE] [--seed S]",
	Short: "Run the load-balancer emulation (juniper-dx, elb) between clients and backends",
	Long: `proxy is an HTTP/1.1 load balancer that opens, pools and reuses its backend
connections the way the devices of the field reports did. It uses the kernel's
TCP stack: run it inside a lab's lb host (faultbox lab exec lb -- faultbox
proxy ...) so both its legs cross the device, or on any host.

Its settings are the proxy: section of the profile (built-ins: juniper-dx, elb):
  juniper-dx  pool_size connections per backend opened at start, and re-opened
              when one closes, without sending any request; a connection the
              server closed is used anyway (unless check_before_reuse); a
              failed exchange closes the client's connection with no response
              (the blank page), or answers 502 (empty_reply: false).
  elb         a keep-alive pool per backend, most recently used first, closed
              after idle_timeout; 504 when the backend closes or resets before
              responding, 502 on a malformed response; hop_by_hop: buggy
              forwards Connection: keep-alive; aim_at_idle_timeout sends each
              request on a reused connection at the backend's idle timeout.

The keys of proxy: (durations as 300ms, 1.5s; unknown keys are errors):
  both        mode, order (mru|lru), check_before_reuse, balance (round-robin|
              random), connect_timeout (5s), response_timeout (60s),
              client_idle_timeout (60s), max_header_bytes (64kib)
  juniper-dx  pool_size (6), min_idle (0s), warm_interval (1s), queue_timeout
              (60s), empty_reply (true); order defaults to lru
  elb         idle_timeout (60s), max_idle (1024), retry_idempotent (false),
              hop_by_hop (correct|buggy), aim_at_idle_timeout: {backend_idle:
              1s, offset: 5ms} (offset may be negative)

Each request is one JSON line in --log: time, client, method, path, backend,
backend_conn, conn_age, conn_idle (ms), reuse_count, outcome (ok, empty_reply,
502, 504, reset, 400), status, backend_time (ms), and aimed/held, retries,
early_response, error when they apply. Pool events (a connection opened,
closed) are lines with an "event" key. SIGINT or SIGTERM stops it (exit 0).`,
	Example: `  # the Juniper DX pool in front of Apache with TCP_DEFER_ACCEPT
  faultbox lab exec lb -- faultbox proxy --profile juniper-dx --listen 198.18.0.3:80 --backend 198.18.0.2:80

  # the ELB, hitting a backend's 1 s keep-alive timeout on purpose; elb-aim.yaml:
  #   name: elb-aim
  #   behaviors: []
  #   proxy: {mode: elb, aim_at_idle_timeout: {backend_idle: 1s, offset: 5ms}}
  faultbox proxy --profile ./elb-aim.yaml --listen 127.0.0.1:8080 --backend 127.0.0.1:8081 --log /tmp/lb.jsonl

  # two backends, IPv6
  faultbox proxy --profile elb --listen [2001:db8::3]:80 --backend [2001:db8::2]:80,[2001:db8::2]:81`,
	Args:              cobra.NoArgs,
	ValidArgsFunction: cobra.NoFileCompletions,
	RunE: func(cmd *cobra.Command, _ []string) error {
		o := &proxyOpts
		if o.profile == "" || o.listen == "" || len(o.backends) == 0 {
			return usageError(fmt.Errorf("proxy needs --profile, --listen and --backend (see faultbox proxy --help)"))
		}
		p, err := profiles.Load(o.profile)
		if err != nil {
			return usageError(err)
		}
		cfg, err := proxy.FromProfile(p)
		if err != nil {
			return usageError(err)
		}
		seed := o.seed
		if !cmd.Flags().Changed("seed") && p.Seed != nil {
			seed = *p.Seed
		}
		var logw io.Writer = cmd.ErrOrStderr()
		if o.log != "" && o.log != "-" {
			f, err := os.OpenFile(o.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				return usageError(err)
			}
			defer f.Close()
			logw = f
		}
		var backends []string
		for _, b := range o.backends {
			if b = strings.TrimSpace(b); b != "" {
				backends = append(backends, b)
			}
		}
		px, err := proxy.New(cfg, proxy.Options{Backends: backends, Log: logw, Seed: seed})
		if err != nil {
			return usageError(err)
		}
		ln, err := proxy.Listen(o.listen)
		if err != nil {
			return usageError(err)
		}
		if err := px.Start(); err != nil {
			ln.Close()
			return usageError(err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "faultbox proxy: %s (%s) on %s -> %s, seed %d\n",
			p.Name, cfg.Mode, ln.Addr(), strings.Join(backends, ","), seed)
		ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		go func() {
			<-ctx.Done()
			px.Close()
		}()
		err = px.Serve(ln)
		px.Close()
		return err
	},
}

func init() {
	f := proxyCmd.Flags()
	f.StringVar(&proxyOpts.profile, "profile", "", "built-in profile name (juniper-dx, elb) or profile file with a proxy: section")
	f.StringVar(&proxyOpts.listen, "listen", "", `address to accept clients on, e.g. "198.18.0.3:80" or "[::]:8080"`)
	f.StringSliceVar(&proxyOpts.backends, "backend", nil, "backend HOST:PORT; comma-separated or repeated for several")
	f.StringVar(&proxyOpts.log, "log", "", `file the JSON access log is appended to (default stderr; "-" is stderr too)`)
	f.Uint64Var(&proxyOpts.seed, "seed", 0, "seed for balance: random (default: the profile's, else 0)")
	proxyCmd.RegisterFlagCompletionFunc("profile", completeProfiles)
	rootCmd.AddCommand(proxyCmd)
}
