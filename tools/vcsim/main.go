// Command vcsim runs govmomi's vCenter simulator (VPX model) for Stratus's VMware driver tests.
//
// It listens on 127.0.0.1 only, prints the SDK URL (without credentials) as the first line of stdout,
// and serves until it receives SIGINT/SIGTERM, when it closes the server and removes the model's
// temporary datastore directories.
//
// Built from Debian's golang-github-vmware-govmomi-dev (GOPATH mode); see tools/build-vcsim.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func main() {
	port := flag.Int("port", envInt("VCSIM_PORT", 0), "TCP port on 127.0.0.1 (0: any free port) [env VCSIM_PORT]")
	user := flag.String("username", envOr("VCSIM_USERNAME", ""), "accepted user name; empty: any non-empty user/password [env VCSIM_USERNAME]")
	pass := flag.String("password", envOr("VCSIM_PASSWORD", ""), "accepted password (with -username) [env VCSIM_PASSWORD]")
	useTLS := flag.Bool("tls", os.Getenv("VCSIM_TLS") == "1", "serve https with a self-signed certificate [env VCSIM_TLS=1]")
	idle := flag.Duration("session-idle-timeout", 0, "expire idle sessions after this long (0: never)")
	clusters := flag.Int("cluster", 1, "clusters per datacenter")
	hosts := flag.Int("host", 0, "standalone hosts per datacenter")
	clusterHosts := flag.Int("cluster-host", 3, "hosts per cluster")
	vms := flag.Int("vm", 0, "pre-created VMs per host/cluster resource pool")
	flag.Parse()

	model := simulator.VPX()
	model.Cluster = *clusters
	model.Host = *hosts
	model.ClusterHost = *clusterHosts
	model.Machine = *vms
	if *idle > 0 {
		simulator.SessionIdleTimeout = *idle
	}

	if err := model.Create(); err != nil {
		log.Fatalf("vcsim: creating model: %v", err)
	}
	defer model.Remove()

	listen := &url.URL{Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))}
	if *user != "" {
		listen.User = url.UserPassword(*user, *pass)
	}
	model.Service.Listen = listen
	if *useTLS {
		model.Service.TLS = new(tls.Config)
	}

	server := model.Service.NewServer()
	u := *server.URL
	u.User = nil // never print credentials
	fmt.Fprintln(os.Stdout, u.String())
	_ = os.Stdout.Sync()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	<-sig
	done := make(chan struct{})
	go func() { server.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second): // idle keep-alive clients must not keep us alive
	}
	model.Remove()
}
