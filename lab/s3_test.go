package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// TestMakefileS3InSync: make s3-bins builds the version the lab looks for,
// from a module that pins the commit lab.mk names.
func TestMakefileS3InSync(t *testing.T) {
	b, err := os.ReadFile("lab.mk")
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(.*)$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("lab.mk has no %s", name)
		}
		return string(m[1])
	}
	if v := get("SEAWEEDFS_VERSION ?= "); v != SeaweedFSVersion {
		t.Errorf("lab.mk: SEAWEEDFS_VERSION %q, lab/s3.go: SeaweedFSVersion %q", v, SeaweedFSVersion)
	}
	if d := get("S3_BIN := "); d != "$(LAB_BIN)/seaweedfs/$(SEAWEEDFS_VERSION)" || SeaweedFSBin("/b") != "/b/seaweedfs/"+SeaweedFSVersion+"/weed" {
		t.Errorf("lab.mk builds weed into %s/weed, the lab looks for %s", d, SeaweedFSBin("$(LAB_BIN)"))
	}
	commit := get("SEAWEEDFS_COMMIT := ")
	mod, err := os.ReadFile(filepath.Join("s3build", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\s*(require\s+)?github\.com/seaweedfs/seaweedfs v0\.0\.0-[0-9]{14}-` + regexp.QuoteMeta(commit) + `\s*$`).Match(mod) {
		t.Errorf("s3build/go.mod does not pin SeaweedFS commit %s", commit)
	}
	// SeaweedFS's own replace: without it go-bip39 cannot be downloaded
	if !regexp.MustCompile(`(?m)^replace github\.com/tyler-smith/go-bip39 => github\.com/cosmos/go-bip39 `).Match(mod) {
		t.Error("s3build/go.mod does not repeat SeaweedFS's replace of github.com/tyler-smith/go-bip39")
	}
	if !strings.Contains(string(b), "lab-prereqs: $(LAB_PREREQS_BASE) kube-bins s3-bins") {
		t.Error("lab-prereqs does not build s3-bins")
	}
	// make test: weed is built in the background; the tests that run it
	// (named *S3Lab*) wait for it in the late stage, the others skip them
	top, err := os.ReadFile(filepath.Join("..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"LATE_TESTS := StaticPod|S3Lab",
		"LATE_NOLAB_PKGS := ./internal/objstore/ ./engine/",
		"$(MAKE) --no-print-directory kube-bins s3-bins",
		"test -short -race -count=1 -timeout 30m -skip '$(LATE_TESTS)' ./...",
		"-skip '$(LATE_TESTS)' $(LAB_PKGS)",
		"-run '$(LATE_TESTS)' $(LATE_NOLAB_PKGS)",
		"-run '$(LATE_TESTS)' $(LAB_PKGS)",
	} {
		if !strings.Contains(string(top), want) {
			t.Errorf("Makefile: no %q", want)
		}
	}
}

// TestInventoryS3Section: the s3: section and the vars the lab writes for
// its store, with ca: relative to where each inventory file is.
func TestInventoryS3Section(t *testing.T) {
	dir := t.TempDir()
	l := &Lab{dir: dir, st: state{Version: "v3.5.35", Token: "tok", S3: &s3State{Port: 40123, AccessKey: "LABACCESS", SecretKey: "s3cr3t"}}}
	for path, wantCA := range map[string]string{
		l.InventoryPath():                         "pki/ca.crt",
		filepath.Join(dir, "sub", "variant.yaml"): "../pki/ca.crt",
	} {
		b, err := l.inventoryAt(path, InventoryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		inv := readInventoryFile(t, path)
		if inv.S3 == nil {
			t.Fatalf("%s: no s3: section\n%s", path, b)
		}
		if inv.S3.Endpoint != "https://127.0.0.1:40123" || inv.S3.Region != "us-east-1" || !inv.S3.PathStyle || inv.S3.CA != wantCA ||
			inv.S3.AccessKey != "${vars.s3AccessKey}" || inv.S3.SecretKey != "${vars.s3SecretKey}" {
			t.Errorf("%s: s3: %+v, want endpoint https://127.0.0.1:40123, region us-east-1, pathStyle, ca %s, keys from vars", path, *inv.S3, wantCA)
		}
		if got := filepath.Join(filepath.Dir(path), inv.S3.CA); got != l.CACertPath() {
			t.Errorf("%s: ca: resolves to %s, want %s", path, got, l.CACertPath())
		}
		if inv.Vars["s3AccessKey"] != "LABACCESS" || inv.Vars["s3SecretKey"] != "s3cr3t" || inv.Vars["s3Bucket"] != S3Bucket {
			t.Errorf("%s: vars %v, want s3AccessKey, s3SecretKey, s3Bucket %s", path, inv.Vars, S3Bucket)
		}
	}
	if l.inventoryPerm() != 0o600 {
		t.Errorf("an inventory with the S3 secret key is written with mode %o, want 0600", l.inventoryPerm())
	}
	l.st.S3 = nil
	b, err := l.inventory(InventoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if inv := readInventoryFile(t, writeTemp(t, b)); inv.S3 != nil || inv.Vars["s3Bucket"] != "" {
		t.Errorf("a lab without --s3 writes an s3: section or its vars:\n%s", b)
	}
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// s3FromInventory is a minio-go client made only from what the lab's
// inventory says (endpoint, ca relative to the file, keys from vars),
// trusting nothing but that CA; secret replaces the secret key when set.
func s3FromInventory(t *testing.T, path, secret string) (*minio.Client, *inventory) {
	t.Helper()
	inv := readInventoryFile(t, path)
	if inv.S3 == nil {
		t.Fatalf("inventory %s has no s3: section", path)
	}
	ca := inv.S3.CA
	if !filepath.IsAbs(ca) {
		ca = filepath.Join(filepath.Dir(path), ca)
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatalf("s3: ca: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", ca)
	}
	vars := func(ref string) string {
		name, ok := strings.CutPrefix(ref, "${vars.")
		name, ok2 := strings.CutSuffix(name, "}")
		if !ok || !ok2 {
			t.Fatalf("s3: key %q is not a ${vars.NAME} reference", ref)
		}
		return inv.Vars[name]
	}
	access, sec := vars(inv.S3.AccessKey), vars(inv.S3.SecretKey)
	if access == "" || sec == "" {
		t.Fatalf("inventory vars have no S3 keys: %v", inv.Vars)
	}
	if secret != "" {
		sec = secret
	}
	host, ok := strings.CutPrefix(inv.S3.Endpoint, "https://")
	if !ok {
		t.Fatalf("s3: endpoint %q is not https", inv.S3.Endpoint)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	lookup := minio.BucketLookupDNS
	if inv.S3.PathStyle {
		lookup = minio.BucketLookupPath
	}
	cli, err := minio.New(host, &minio.Options{Creds: credentials.NewStaticV4(access, sec, ""), Secure: true, Transport: tr, Region: inv.S3.Region, BucketLookup: lookup})
	if err != nil {
		t.Fatal(err)
	}
	return cli, inv
}

// TestS3Lab: lab up --s3 runs a real S3 server that a client configured
// from the inventory alone can use (multipart upload, metadata, list,
// download), that refuses a wrong secret and plain http, that listens on
// loopback only, and that lab down removes entirely; a lab without --s3
// starts none.
func TestS3Lab(t *testing.T) {
	l := upLab(t, Options{Members: 1, Keys: 10, Layout: LayoutSystemd, S3: true})
	ctx := context.Background()
	info := l.S3()
	if info == nil {
		t.Fatal("lab up --s3: the lab has no S3 store")
	}
	st, err := os.Stat(l.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("inventory with the S3 secret has mode %o, want 0600", st.Mode().Perm())
	}
	cli, inv := s3FromInventory(t, l.InventoryPath(), "")
	bucket := inv.Vars["s3Bucket"]
	if bucket != S3Bucket {
		t.Fatalf("vars.s3Bucket = %q, want %q", bucket, S3Bucket)
	}
	if ok, err := cli.BucketExists(ctx, bucket); err != nil || !ok {
		t.Fatalf("bucket %s after lab up: exists %v, %v", bucket, ok, err)
	}
	if b, err := os.ReadFile(l.S3PIDPath()); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(info.PID) {
		t.Errorf("pid file %s: %q, %v; want %d", l.S3PIDPath(), b, err, info.PID)
	}
	if sid, err := getsid(info.PID); err != nil || sid != info.PID {
		t.Errorf("weed (pid %d) is not in a session of its own (sid %d, %v): it would not outlive lab up", info.PID, sid, err)
	}

	// 20 MiB in 5 MiB parts: a multipart upload (its ETag ends in -4)
	data := make([]byte, 20<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	key := "lab-test/snap-" + randHex(4) + ".db"
	t0 := time.Now()
	up, err := cli.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		PartSize:     5 << 20,
		UserMetadata: map[string]string{"etcd-rescue-sha256": want, "etcd-rescue-revision": "42"},
	})
	if err != nil {
		t.Fatalf("put %d MiB: %v", len(data)>>20, err)
	}
	t.Logf("put 20 MiB in 4 parts in %.2fs, etag %s; weed RSS now %.0f MiB", time.Since(t0).Seconds(), up.ETag, float64(rss(info.PID))/(1<<20))
	if !strings.HasSuffix(up.ETag, "-4") {
		t.Errorf("etag %q: not a 4-part multipart upload", up.ETag)
	}
	oi, err := cli.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	if oi.Size != int64(len(data)) {
		t.Errorf("stat: size %d, want %d", oi.Size, len(data))
	}
	meta := map[string]string{}
	for k, v := range oi.UserMetadata {
		meta[strings.ToLower(k)] = v
	}
	if meta["etcd-rescue-sha256"] != want || meta["etcd-rescue-revision"] != "42" {
		t.Errorf("stat: user metadata %v, want etcd-rescue-sha256 %s and etcd-rescue-revision 42", oi.UserMetadata, want)
	}
	var listed []string
	for o := range cli.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: "lab-test/", Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list: %v", o.Err)
		}
		listed = append(listed, fmt.Sprintf("%s %d", o.Key, o.Size))
	}
	if len(listed) != 1 || listed[0] != fmt.Sprintf("%s %d", key, len(data)) {
		t.Errorf("list lab-test/: %v, want [%s %d]", listed, key, len(data))
	}
	obj, err := cli.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("get: %d bytes that differ from the %d put", len(got), len(data))
	}

	// a wrong secret is refused
	bad, _ := s3FromInventory(t, l.InventoryPath(), strings.Repeat("0", 40))
	if _, err := bad.ListBuckets(ctx); err == nil {
		t.Error("a wrong secret key is accepted")
	} else if code := minio.ToErrorResponse(err).StatusCode; code != http.StatusForbidden {
		t.Errorf("a wrong secret key: status %d (%v), want 403", code, err)
	}
	if _, err := bad.StatObject(ctx, bucket, key, minio.StatObjectOptions{}); minio.ToErrorResponse(err).StatusCode != http.StatusForbidden {
		t.Errorf("stat with a wrong secret key: %v, want 403", err)
	}
	// plain http is not answered as S3
	port := strings.TrimPrefix(inv.S3.Endpoint, "https://127.0.0.1:")
	hc := &http.Client{Timeout: 5 * time.Second}
	if resp, err := hc.Get("http://127.0.0.1:" + port + "/" + bucket); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || bytes.Contains(body, []byte("<ListBucketResult")) || bytes.Contains(body, []byte("<Error>")) {
			t.Errorf("plain http to the S3 port: %s, %q; want no S3 answer", resp.Status, body)
		}
		t.Logf("plain http to the S3 port: %s %q", resp.Status, bytes.TrimSpace(body))
	}
	// loopback only: none of weed's ports answers on the lab bridge's address
	for name, p := range l.st.S3.Ports {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(GatewayAddr, fmt.Sprint(p)), time.Second); err == nil {
			c.Close()
			t.Errorf("weed's %s (%d) answers on %s, not only on 127.0.0.1", name, p, GatewayAddr)
		}
	}
	s := l.Status(ctx)
	if s.S3 == nil || s.S3.State != "up" || s.S3.RSS == 0 {
		t.Errorf("lab status: s3 %+v, want up with its RSS", s.S3)
	} else {
		t.Logf("lab status: s3 %s at %s, RSS %.0f MiB", s.S3.State, s.S3.Endpoint, float64(s.S3.RSS)/(1<<20))
	}

	// the secret key is in the inventory (0600) and lab.json (0600), not in weed's log
	if b, err := os.ReadFile(l.S3LogPath()); err != nil || len(b) == 0 || bytes.Contains(b, []byte(info.SecretKey)) {
		t.Errorf("weed's log %s: %d bytes, %v; it must exist and not hold the secret key", l.S3LogPath(), len(b), err)
	}

	// lab down: no weed, no STATE/s3, no socket weed left in /tmp
	pid, dir, ports := info.PID, l.S3Dir(), l.st.S3.Ports
	downAndCheck(t, l)
	if alive(pid) {
		t.Errorf("weed (pid %d) still runs after lab down: %s", pid, cmdline(pid))
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left after lab down", dir)
	}
	for _, svc := range []string{"master", "volume", "filer", "s3"} {
		sock := fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", svc, ports[svc+".port.grpc"])
		if _, err := os.Stat(sock); err == nil {
			t.Errorf("%s left after lab down", sock)
		}
	}
	if p := weedOf(testStateDir); p != 0 {
		t.Errorf("a weed of the test lab still runs after lab down: pid %d", p)
	}

	t.Run("without --s3", func(t *testing.T) {
		l := upLab(t, Options{Members: 1, Keys: -1, Layout: LayoutSystemd})
		if l.S3() != nil {
			t.Error("lab up without --s3 has an S3 store")
		}
		if _, err := os.Stat(l.S3Dir()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lab up without --s3 made %s", l.S3Dir())
		}
		if p := weedOf(testStateDir); p != 0 {
			t.Errorf("lab up without --s3 runs weed: pid %d", p)
		}
		if inv := readInventory(t, l); inv.S3 != nil {
			t.Error("lab up without --s3 wrote an s3: section")
		}
		if s := l.Status(ctx); s.S3 != nil {
			t.Errorf("lab status without --s3 shows a store: %+v", s.S3)
		}
	})
}

// weedOf is the pid of a weed whose data is under stateDir, or 0.
func weedOf(stateDir string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		if c := cmdline(pid); strings.Contains(c, "weed") && strings.Contains(c, "-dir="+stateDir+"/") && alive(pid) {
			return pid
		}
	}
	return 0
}

// getsid is the session id of pid (field 6 of /proc/PID/stat).
func getsid(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 4 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var sid int
	_, err = fmt.Sscanf(f[3], "%d", &sid)
	return sid, err
}
