package etcdapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// Status is one member's view of itself (etcdctl endpoint status).
type Status struct {
	Endpoint         string   `json:"endpoint"`
	MemberID         uint64   `json:"memberID"`
	ClusterID        uint64   `json:"clusterID"`
	Leader           uint64   `json:"leader"`
	IsLearner        bool     `json:"isLearner"`
	Version          string   `json:"version"`
	Revision         int64    `json:"revision"`
	RaftTerm         uint64   `json:"raftTerm"`
	RaftIndex        uint64   `json:"raftIndex"`
	RaftAppliedIndex uint64   `json:"raftAppliedIndex"`
	DBSize           int64    `json:"dbSize"`
	DBSizeInUse      int64    `json:"dbSizeInUse"`
	Errors           []string `json:"errors,omitempty"`
}

// IsLeader reports whether the member is the leader.
func (s Status) IsLeader() bool { return s.MemberID != 0 && s.MemberID == s.Leader }

// Status asks the member at endpoint for its status, within the probe timeout.
func (c *Client) Status(ctx context.Context, endpoint string) (Status, error) {
	p, err := c.At(endpoint)
	if err != nil {
		return Status{}, err
	}
	ctx, cancel := p.probe(ctx)
	defer cancel()
	if err := p.refused(ctx, endpoint); err != nil {
		return Status{}, wrap(err, "etcd status of %s", endpoint)
	}
	resp, err := p.cli.Status(ctx, endpoint)
	if err != nil {
		return Status{}, wrap(err, "etcd status of %s", endpoint)
	}
	s := Status{
		Endpoint:         endpoint,
		Leader:           resp.Leader,
		IsLearner:        resp.IsLearner,
		Version:          resp.Version,
		RaftTerm:         resp.RaftTerm,
		RaftIndex:        resp.RaftIndex,
		RaftAppliedIndex: resp.RaftAppliedIndex,
		DBSize:           resp.DbSize,
		DBSizeInUse:      resp.DbSizeInUse,
		Errors:           resp.Errors,
	}
	if h := resp.Header; h != nil {
		s.MemberID, s.ClusterID, s.Revision = h.MemberId, h.ClusterId, h.Revision
	}
	c.learners.set(hostPort(endpoint), s.IsLearner)
	return s, nil
}

// HealthResult describes a healthy member.
type HealthResult struct {
	Endpoint string        `json:"endpoint"`
	Took     time.Duration `json:"took"`
}

// Health checks the member at endpoint the way etcdctl endpoint health does: a
// linearizable read (which needs a leader and a quorum) of the "health" key within
// the probe timeout, and no active alarm (NOSPACE, CORRUPT). A nil error means
// healthy.
func (c *Client) Health(ctx context.Context, endpoint string) (HealthResult, error) {
	p, err := c.At(endpoint)
	if err != nil {
		return HealthResult{}, err
	}
	start := time.Now()
	ctx, cancel := p.probe(ctx)
	defer cancel()
	if err := p.refused(ctx, endpoint); err != nil {
		return HealthResult{}, wrap(err, "etcd member %s unreachable", endpoint)
	}
	_, err = p.cli.Get(ctx, "health")
	// Permission denied still proves that the member answered through raft.
	if err != nil && etcdDesc(err) != "etcdserver: permission denied" {
		return HealthResult{}, wrap(err, "etcd member %s unhealthy", endpoint)
	}
	// The alarms as the member's status lists them (its copy of the
	// cluster's alarm list): AlarmList would go through raft and append an
	// entry to every member's log, and a health check must change nothing.
	st, err := p.cli.Status(ctx, endpoint)
	if err != nil {
		return HealthResult{}, wrap(err, "etcd member %s unhealthy: its status (for alarms)", endpoint)
	}
	if list := alarmsIn(st.Errors); len(list) > 0 {
		return HealthResult{}, fmt.Errorf("etcd member %s unhealthy: active alarm %v", endpoint, list)
	}
	return HealthResult{Endpoint: endpoint, Took: time.Since(start)}, nil
}

// alarmsIn picks the alarms out of a status's errors, where etcd lists
// each active alarm as "memberID:N alarm:NAME", as "NAME on member ID".
func alarmsIn(errs []string) []string {
	var out []string
	for _, e := range errs {
		_, name, ok := strings.Cut(e, "alarm:")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		if f := strings.Fields(name); len(f) > 0 {
			name = f[0]
		}
		a := name
		if idText, _, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(e), "memberID:"), " "); ok && strings.HasPrefix(strings.TrimSpace(e), "memberID:") {
			if id, err := strconv.ParseUint(idText, 10, 64); err == nil {
				a += " on member " + FormatID(id)
			}
		}
		out = append(out, a)
	}
	return out
}

// HashKVResult is a member's hash of its key space up to a revision.
type HashKVResult struct {
	Endpoint string `json:"endpoint"`
	Hash     uint32 `json:"hash"`
	// HashRevision is the revision hashed (the current one when 0 was asked).
	HashRevision    int64 `json:"hashRevision"`
	CompactRevision int64 `json:"compactRevision"`
	// Revision is the member's current revision.
	Revision int64 `json:"revision"`
}

// HashKV hashes the key space of the member at endpoint up to rev (0: current).
// Members of a healthy cluster agree at the same revision.
func (c *Client) HashKV(ctx context.Context, endpoint string, rev int64) (HashKVResult, error) {
	p, err := c.At(endpoint)
	if err != nil {
		return HashKVResult{}, err
	}
	ctx, cancel := p.request(ctx)
	defer cancel()
	resp, err := p.cli.HashKV(ctx, endpoint, rev)
	if err != nil {
		return HashKVResult{}, wrap(err, "etcd hashkv of %s at revision %d", endpoint, rev)
	}
	r := HashKVResult{Endpoint: endpoint, Hash: resp.Hash, CompactRevision: resp.CompactRevision, HashRevision: rev}
	if resp.Header != nil {
		r.Revision = resp.Header.Revision
	}
	if resp.HashRevision != 0 {
		r.HashRevision = resp.HashRevision
	} else if rev == 0 {
		r.HashRevision = r.Revision
	}
	return r, nil
}

// KeyStats counts the keys of the key space.
type KeyStats struct {
	Count    int64 `json:"count"`
	Revision int64 `json:"revision"`
}

// KeyCount counts every key and returns the revision it was counted at
// (linearizable, or from the answering member's state when serializable).
// It goes to voting members only, like every cluster call.
func (c *Client) KeyCount(ctx context.Context, serializable bool) (KeyStats, error) {
	var resp *pb.RangeResponse
	err := c.clusterCall(ctx, func(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) (err error) {
		// Every key: from "\x00" to the end of the key space ("\x00").
		resp, err = pb.NewKVClient(conn).Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true, Serializable: serializable}, opts...)
		return err
	})
	if err != nil {
		return KeyStats{}, wrap(err, "etcd key count via %s", c.endpointsText())
	}
	return KeyStats{Count: resp.Count, Revision: resp.Header.Revision}, nil
}

// SnapshotInfo describes a snapshot saved by [Client.SnapshotSave].
type SnapshotInfo struct {
	Endpoint string `json:"endpoint"`
	// Size and SHA256 cover every byte written (the database and etcd's trailing
	// sha256 of it).
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Version is the server's storage version (etcd 3.6+; empty from 3.5).
	Version string `json:"version,omitempty"`
	// Revision is the member's revision when the snapshot started.
	Revision int64 `json:"revision,omitempty"`
}

// SnapshotSave streams a snapshot of the member at endpoint into w (as etcdctl
// snapshot save does) and checks etcd's sha256 trailer on the way. It is bounded
// by ctx only: a large database takes its time. On error, w holds an incomplete
// stream that must be discarded.
func (c *Client) SnapshotSave(ctx context.Context, endpoint string, w io.Writer) (SnapshotInfo, error) {
	p, err := c.At(endpoint)
	if err != nil {
		return SnapshotInfo{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := p.cli.SnapshotWithVersion(ctx)
	if err != nil {
		return SnapshotInfo{}, wrap(err, "etcd snapshot of %s", endpoint)
	}
	defer resp.Snapshot.Close()
	all := sha256.New()
	tv := newTrailerVerifier()
	n, err := io.Copy(io.MultiWriter(w, all, tv), resp.Snapshot)
	if err != nil {
		return SnapshotInfo{}, wrap(err, "etcd snapshot of %s: after %d bytes", endpoint, n)
	}
	if err := tv.verify(); err != nil {
		return SnapshotInfo{}, fmt.Errorf("etcd snapshot of %s (%d bytes): %w", endpoint, n, err)
	}
	info := SnapshotInfo{Endpoint: endpoint, Size: n, SHA256: hex.EncodeToString(all.Sum(nil)), Version: resp.Version}
	if resp.Header != nil {
		info.Revision = resp.Header.Revision
	}
	return info, nil
}

// VerifySnapshot checks the sha256 trailer etcd appends to every snapshot stream
// (the last 32 bytes are the sha256 of all bytes before them). It returns the
// size and sha256 of the whole stream, and an error matching [ErrSnapshotCorrupt]
// when the trailer is wrong.
func VerifySnapshot(r io.Reader) (size int64, sum string, err error) {
	all := sha256.New()
	tv := newTrailerVerifier()
	n, err := io.Copy(io.MultiWriter(all, tv), r)
	if err != nil {
		return n, "", fmt.Errorf("reading snapshot: %w", err)
	}
	if err := tv.verify(); err != nil {
		return n, "", err
	}
	return n, hex.EncodeToString(all.Sum(nil)), nil
}

// trailerVerifier hashes everything but the last sha256.Size bytes, which it keeps
// aside to compare at the end.
type trailerVerifier struct {
	h    hashWriter
	tail []byte
	n    int64
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func newTrailerVerifier() *trailerVerifier { return &trailerVerifier{h: sha256.New()} }

func (t *trailerVerifier) Write(p []byte) (int, error) {
	t.n += int64(len(p))
	t.tail = append(t.tail, p...)
	if over := len(t.tail) - sha256.Size; over > 0 {
		_, _ = t.h.Write(t.tail[:over])
		t.tail = append(t.tail[:0], t.tail[over:]...)
	}
	return len(p), nil
}

func (t *trailerVerifier) verify() error {
	if t.n < sha256.Size+512 {
		return fmt.Errorf("%w: only %d bytes, too short for an etcd snapshot", ErrSnapshotCorrupt, t.n)
	}
	if want := t.h.Sum(nil); !bytes.Equal(want, t.tail) {
		return fmt.Errorf("%w: trailer %x does not match content sha256 %x (truncated or damaged)", ErrSnapshotCorrupt, t.tail, want)
	}
	return nil
}
