// Package etcdconf reads the settings etcd's service starts with on a host:
// a systemd EnvironmentFile of ETCD_* variables, or the etcd container's
// flags in a kubelet static pod manifest. Both come back as ETCD_* keys
// (--peer-cert-file is ETCD_PEER_CERT_FILE), so that callers (the facts, the
// certificate steps) read one form.
package etcdconf

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// ParseEnvFile reads a systemd EnvironmentFile: KEY=VALUE lines, # and ;
// comments, values in double quotes (backslash escapes) or single quotes,
// a trailing backslash continuing the line. Only ETCD_* variables are kept;
// a later line wins, as for systemd.
func ParseEnvFile(content string) map[string]string {
	out := map[string]string{}
	lines := strings.Split(content, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, `\`) + strings.TrimSpace(lines[i])
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if k = strings.TrimSpace(k); strings.HasPrefix(k, "ETCD_") {
			out[k] = unquoteEnv(strings.TrimSpace(v))
		}
	}
	return out
}

// unquoteEnv reads one value of an environment file.
func unquoteEnv(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\'':
			j := strings.IndexByte(v[i+1:], '\'')
			if j < 0 {
				b.WriteString(v[i+1:])
				return b.String()
			}
			b.WriteString(v[i+1 : i+1+j])
			i += j + 1
		case '"':
			for i++; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				b.WriteByte(v[i])
			}
		case '\\':
			if i+1 < len(v) {
				i++
				b.WriteByte(v[i])
			}
		case '#':
			// An unquoted # after a blank starts a comment.
			if i > 0 && (v[i-1] == ' ' || v[i-1] == '\t') {
				return strings.TrimRight(b.String(), " \t")
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// boolFlags are etcd's boolean flags: written bare, they are "true", and
// only a following true or false is their value.
var boolFlags = map[string]bool{
	"ETCD_FORCE_NEW_CLUSTER": true, "ETCD_CLIENT_CERT_AUTH": true, "ETCD_PEER_CLIENT_CERT_AUTH": true,
	"ETCD_AUTO_TLS": true, "ETCD_PEER_AUTO_TLS": true, "ETCD_STRICT_RECONFIG_CHECK": true,
	"ETCD_ENABLE_PPROF": true, "ETCD_ENABLE_V2": true, "ETCD_PRE_VOTE": true, "ETCD_DEBUG": true,
	"ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK": true, "ETCD_SOCKET_REUSE_PORT": true, "ETCD_SOCKET_REUSE_ADDRESS": true,
}

// FlagKey turns a flag (--peer-cert-file) into its ETCD_* key
// (ETCD_PEER_CERT_FILE).
func FlagKey(flag string) string {
	return "ETCD_" + strings.ToUpper(strings.ReplaceAll(strings.TrimLeft(flag, "-"), "-", "_"))
}

// ParseManifest reads a static pod manifest: the etcd container's command
// and args flags (--name=x or --name x; a bare boolean flag is "true").
// source names the file in errors.
func ParseManifest(source, content string) (map[string]string, error) {
	var pod struct {
		Spec struct {
			Containers []struct {
				Name    string   `yaml:"name"`
				Command []string `yaml:"command"`
				Args    []string `yaml:"args"`
			} `yaml:"containers"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(content), &pod); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", source, err)
	}
	var argv []string
	for _, c := range pod.Spec.Containers {
		cmd := append(append([]string(nil), c.Command...), c.Args...)
		isEtcd := c.Name == "etcd" || (len(cmd) > 0 && (cmd[0] == "etcd" || strings.HasSuffix(cmd[0], "/etcd")))
		if isEtcd {
			argv = cmd
			break
		}
	}
	if argv == nil {
		return nil, fmt.Errorf("manifest %s: no etcd container", source)
	}
	out := map[string]string{}
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		if !strings.HasPrefix(a, "--") || a == "--" {
			continue
		}
		k, v, hasV := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		key := FlagKey(k)
		if !hasV {
			next := i+1 < len(argv)
			switch {
			case boolFlags[key]:
				v = "true"
				if next && (argv[i+1] == "true" || argv[i+1] == "false") {
					i++
					v = argv[i]
				}
			case next && !strings.HasPrefix(argv[i+1], "--"):
				i++
				v = argv[i]
			default:
				v = "true"
			}
		}
		out[key] = v
	}
	return out, nil
}
