package sshx

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Pool holds one [Client] per host name. It is safe for concurrent use.
type Pool struct {
	opts []Option

	mu      sync.Mutex
	clients map[string]*Client
	closed  bool
}

// NewPool returns an empty pool whose clients get opts.
func NewPool(opts ...Option) *Pool {
	return &Pool{opts: opts, clients: map[string]*Client{}}
}

// Add registers host name with its configuration. It does not connect. Adding a
// name twice is an error.
func (p *Pool) Add(name string, cfg Config) (*Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if _, ok := p.clients[name]; ok {
		return nil, fmt.Errorf("ssh pool: host %s added twice", name)
	}
	c, err := New(name, cfg, p.opts...)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", name, err)
	}
	p.clients[name] = c
	return c, nil
}

// Get returns the client of host name.
func (p *Pool) Get(name string) (*Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	c, ok := p.clients[name]
	if !ok {
		return nil, fmt.Errorf("ssh pool: unknown host %s", name)
	}
	return c, nil
}

// Names returns the registered host names, sorted.
func (p *Pool) Names() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	names := make([]string, 0, len(p.clients))
	for n := range p.clients {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// HostKeyCheckDisabled returns, sorted, the hosts whose host key is not verified
// (see [Client.HostKeyCheckDisabled]); the caller warns about each.
func (p *Pool) HostKeyCheckDisabled() []string {
	var out []string
	for _, n := range p.Names() {
		if c, err := p.Get(n); err == nil && c.HostKeyCheckDisabled() {
			out = append(out, n)
		}
	}
	return out
}

// Close closes every client; the pool can no longer be used.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for _, c := range p.clients {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
