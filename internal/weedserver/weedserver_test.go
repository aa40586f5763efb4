package weedserver

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	ports, err := NewPorts()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, name := range PortFlags {
		if ports[name] == 0 || seen[ports[name]] {
			t.Fatalf("ports %v: %s is 0 or taken twice", ports, name)
		}
		seen[ports[name]] = true
	}
	c := Config{Dir: "/d", DataDir: "/d/data", Ports: ports, IdentitiesFile: "/d/s3.json"}
	plain := Args(c)
	for _, name := range PortFlags {
		if want := fmt.Sprintf("-%s=%d", name, ports[name]); !slices.Contains(plain, want) {
			t.Errorf("no %s in %q", want, plain)
		}
	}
	for _, want := range []string{"server", "-s3", "-ip.bind=127.0.0.1", "-dir=/d/data", "-config_dir=/d", "-s3.config=/d/s3.json",
		"-master.volumeSizeLimitMB=256", "-volume.max=16"} {
		if !slices.Contains(plain, want) {
			t.Errorf("no %s in %q", want, plain)
		}
	}
	if strings.Contains(strings.Join(plain, " "), "-s3.cert.file") {
		t.Errorf("TLS flags without a certificate: %q", plain)
	}
	c.CertFile, c.KeyFile, c.VolumeSizeMB, c.VolumeMax = "/d/tls.crt", "/d/tls.key", 64, 8
	tls := Args(c)
	for _, want := range []string{"-s3.cert.file=/d/tls.crt", "-s3.key.file=/d/tls.key", "-master.volumeSizeLimitMB=64", "-volume.max=8"} {
		if !slices.Contains(tls, want) {
			t.Errorf("no %s in %q", want, tls)
		}
	}
}

func TestIdentities(t *testing.T) {
	b, err := Identities("lab", "AK1", "SK1")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Identities []struct {
			Name        string
			Credentials []struct{ AccessKey, SecretKey string }
			Actions     []string
		}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Identities) != 1 {
		t.Fatalf("%s", b)
	}
	id := got.Identities[0]
	if id.Name != "lab" || len(id.Credentials) != 1 || id.Credentials[0].AccessKey != "AK1" || id.Credentials[0].SecretKey != "SK1" ||
		!slices.Contains(id.Actions, "Write") || !slices.Contains(id.Actions, "Admin") {
		t.Fatalf("%s", b)
	}
}

func TestEnv(t *testing.T) {
	if env := Env("/h", ""); slices.ContainsFunc(env, func(s string) bool { return strings.HasPrefix(s, "GOMEMLIMIT=") }) || !slices.Contains(env, "HOME=/h") {
		t.Errorf("%q", env)
	}
	if env := Env("/h", "128MiB"); !slices.Contains(env, "GOMEMLIMIT=128MiB") {
		t.Errorf("%q", env)
	}
}
