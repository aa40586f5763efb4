package plans

import (
	"net/url"
)

// S3 says how to reach the S3-compatible object store that holds snapshots
// (snapshot-save to: s3://..., snapshot-fetch). The credentials may be
// ${vars.NAME} references: a variable whose name contains "key" or
// "secret" is redacted everywhere. With neither accessKey nor secretKey,
// the AWS chain is used (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN, then the shared credentials file).
type S3 struct {
	Endpoint     string `yaml:"endpoint" doc:"scheme://host[:port] of the store, e.g. https://minio.example:9000; empty: AWS S3 of region"`
	Region       string `yaml:"region" default:"us-east-1" doc:"region of the bucket"`
	PathStyle    bool   `yaml:"pathStyle" doc:"address buckets as endpoint/bucket/key (MinIO, SeaweedFS, Ceph RGW); false: the client chooses"`
	CA           string `yaml:"ca" doc:"PEM bundle of the CAs that sign the endpoint's certificate, on the operator machine (relative to the file that defines s3:); empty: the system roots"`
	AccessKey    string `yaml:"accessKey" doc:"access key id, usually ${vars.NAME}; empty with secretKey: the AWS environment and shared-credentials chain"`
	SecretKey    string `yaml:"secretKey" doc:"secret access key: write ${vars.NAME} (a secret variable, redacted everywhere), never the key itself"`
	SessionToken string `yaml:"sessionToken" doc:"session token of temporary credentials, as ${vars.NAME}"`

	Pos    Pos            `yaml:"-"`
	KeyPos map[string]Pos `yaml:"-"`
}

// At is the position of a key of s3:, or of the section.
func (s *S3) At(key string) Pos {
	if p, ok := s.KeyPos[key]; ok {
		return p
	}
	return s.Pos
}

// Resolved returns the s3: section with ${vars.NAME} expanded in every
// field, and the names of variables that are not defined.
func (s *S3) Resolved(vars map[string]string) (S3, []string) {
	out := *s
	return out, resolveFields(out.fields(), vars)
}

func (s *S3) fields() []sectionField {
	return []sectionField{{"endpoint", &s.Endpoint}, {"region", &s.Region}, {"ca", &s.CA},
		{"accessKey", &s.AccessKey}, {"secretKey", &s.SecretKey}, {"sessionToken", &s.SessionToken}}
}

// checkS3 checks the s3: section: a usable endpoint URL, credentials that
// go together, variables that exist, and no secret written in the file.
func (p *Plan) checkS3() Findings {
	var fs Findings
	s := p.S3
	if s == nil {
		return fs
	}
	p.checkFieldRefs(&fs, "s3", s.fields(), s.At)
	r, _ := s.Resolved(p.Vars)
	if r.Endpoint != "" {
		u, err := url.Parse(r.Endpoint)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https"):
			fs.Add(s.At("endpoint"), "s3.endpoint %q must start with http:// or https://", s.Endpoint)
		case u.Host == "" || u.Hostname() == "":
			fs.Add(s.At("endpoint"), "s3.endpoint %q names no host", s.Endpoint).WithHint("scheme://host[:port], e.g. https://127.0.0.1:8333")
		case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil:
			fs.Add(s.At("endpoint"), "s3.endpoint %q must be scheme://host[:port] only", s.Endpoint).
				WithHint("the bucket and key go in the s3:// URLs of the steps")
		}
	}
	if (s.AccessKey == "") != (s.SecretKey == "") {
		key, other := "accessKey", "secretKey"
		if s.AccessKey == "" {
			key, other = other, key
		}
		fs.Add(s.At(key), "s3.%s without s3.%s", key, other).
			WithHint("set both (as ${vars.NAME}), or neither to use the AWS environment or shared-credentials chain")
	}
	if s.SessionToken != "" && s.AccessKey == "" {
		fs.Add(s.At("sessionToken"), "s3.sessionToken without s3.accessKey and s3.secretKey").
			WithHint("a session token belongs to temporary credentials; set all three, or none for the AWS chain")
	}
	for _, key := range []string{"secretKey", "sessionToken"} {
		v := s.SecretKey
		if key == "sessionToken" {
			v = s.SessionToken
		}
		if v != "" && len(Refs(v)) == 0 {
			fs.Warn(s.At(key), "s3.%s is written in the file", key).
				WithHint("write ${vars.NAME} with a variable whose name contains \"secret\" or \"key\" (redacted everywhere), set in the inventory, or leave the credentials out and use the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
		}
	}
	return fs
}
