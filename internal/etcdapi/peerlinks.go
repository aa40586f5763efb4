package etcdapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// PeerLinksMetric is the gauge etcd keeps, per member, of its raft peer
// connections: etcd_network_active_peers{Local="<own id>",Remote="<peer
// id>"} is 1 while the link to that peer is active and 0 after it failed
// (server/etcdserver/api/rafthttp/metrics.go and peer_status.go, the same
// in 3.5, 3.6 and 3.7; ids in hex as types.ID prints them). A series
// exists only for a peer that was active at least once since the member
// started. etcd marks a link inactive when a send or a stream fails, and a
// stream that hears nothing for 5 s (rafthttp ConnReadTimeout; every
// stream carries a heartbeat every 1.7 s) fails: a link to a peer whose
// process died reads 0 within about 5 s, at once when its sockets were
// closed.
const PeerLinksMetric = "etcd_network_active_peers"

// PeerLinks is one member's view of its raft peer links, from its /metrics.
type PeerLinks struct {
	// Local is the member's own id (the Local label); 0 when no series.
	Local uint64
	// Active holds, by peer id, whether the link to that peer is active
	// now. A peer absent from it was never connected since the member
	// started.
	Active map[uint64]bool
}

// ErrNoPeerMetrics matches a /metrics page without the peer-link gauge:
// metrics turned off or renamed, or a member that was never linked to any
// peer. Nothing can be concluded from it.
var ErrNoPeerMetrics = errors.New("no " + PeerLinksMetric + " in its metrics")

// ParsePeerLinks reads the peer-link gauge out of a Prometheus text
// exposition (what etcd's /metrics serves).
func ParsePeerLinks(r io.Reader) (PeerLinks, error) {
	pl := PeerLinks{Active: map[uint64]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	found := false
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, PeerLinksMetric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "}")
		if !ok {
			return PeerLinks{}, fmt.Errorf("metrics: bad %s line %q", PeerLinksMetric, line)
		}
		local, remote, err := peerLabels(labels)
		if err != nil {
			return PeerLinks{}, fmt.Errorf("metrics: %s line %q: %w", PeerLinksMetric, line, err)
		}
		// The value may be followed by a timestamp.
		fields := strings.Fields(value)
		if len(fields) == 0 {
			return PeerLinks{}, fmt.Errorf("metrics: %s line %q has no value", PeerLinksMetric, line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return PeerLinks{}, fmt.Errorf("metrics: %s line %q: %w", PeerLinksMetric, line, err)
		}
		if found && local != pl.Local {
			return PeerLinks{}, fmt.Errorf("metrics: %s names two local members, %x and %x", PeerLinksMetric, pl.Local, local)
		}
		found, pl.Local = true, local
		pl.Active[remote] = v > 0
	}
	if err := sc.Err(); err != nil {
		return PeerLinks{}, fmt.Errorf("metrics: %w", err)
	}
	if !found {
		return PeerLinks{}, ErrNoPeerMetrics
	}
	return pl, nil
}

// peerLabels reads Local="..",Remote=".." (any order, other labels ignored).
func peerLabels(s string) (local, remote uint64, err error) {
	var haveL, haveR bool
	for s != "" {
		name, rest, ok := strings.Cut(s, `="`)
		if !ok {
			return 0, 0, errors.New("bad labels")
		}
		val, rest, ok := strings.Cut(rest, `"`)
		if !ok {
			return 0, 0, errors.New("bad labels")
		}
		s = strings.TrimPrefix(rest, ",")
		switch strings.TrimSpace(name) {
		case "Local":
			if local, err = strconv.ParseUint(val, 16, 64); err != nil {
				return 0, 0, fmt.Errorf("label Local=%q is not a hex member id", val)
			}
			haveL = true
		case "Remote":
			if remote, err = strconv.ParseUint(val, 16, 64); err != nil {
				return 0, 0, fmt.Errorf("label Remote=%q is not a hex member id", val)
			}
			haveR = true
		}
	}
	if !haveL || !haveR {
		return 0, 0, errors.New("no Local and Remote labels")
	}
	return local, remote, nil
}

// maxMetrics bounds the /metrics page read (etcd's is about 100 KiB).
const maxMetrics = 16 << 20

// PeerLinks asks the member at endpoint for its view of its raft peer
// links: GET endpoint/metrics over the route every other call takes (the
// SSH tunnel's dialer, or a direct connection) and with the same TLS
// config (CA, client certificate), bounded by the probe timeout. etcd
// serves /metrics on its client URLs without etcd auth. The connection is
// not kept: a stopping etcd waits for no idle client of ours.
func (c *Client) PeerLinks(ctx context.Context, endpoint string) (PeerLinks, error) {
	ctx, cancel := c.probe(ctx)
	defer cancel()
	tr := &http.Transport{DisableKeepAlives: true, ForceAttemptHTTP2: false, TLSHandshakeTimeout: c.cfg.DialTimeout}
	if c.tls != nil {
		tr.TLSClientConfig = c.tls.Clone()
	}
	if d := c.cfg.Dialer; d != nil {
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return d(ctx, addr) }
	} else {
		tr.DialContext = (&net.Dialer{Timeout: c.cfg.DialTimeout}).DialContext
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(endpoint, "/")+"/metrics", nil)
	if err != nil {
		return PeerLinks{}, fmt.Errorf("metrics of %s: %w", endpoint, err)
	}
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return PeerLinks{}, unreachableError{fmt.Errorf("metrics of %s: no answer in %s: %w", endpoint, time.Since(start).Round(time.Millisecond), err)}
		}
		return PeerLinks{}, unreachableError{fmt.Errorf("metrics of %s: %w", endpoint, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return PeerLinks{}, fmt.Errorf("metrics of %s: %s", endpoint, resp.Status)
	}
	pl, err := ParsePeerLinks(io.LimitReader(resp.Body, maxMetrics))
	if err != nil {
		return PeerLinks{}, fmt.Errorf("metrics of %s: %w", endpoint, err)
	}
	return pl, nil
}
