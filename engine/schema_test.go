package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestExamplesMatchSchema checks every example against the generated JSON
// Schema with a small validator for the keywords the generator emits, and
// checks that the schema rejects what the decoder rejects.
func TestExamplesMatchSchema(t *testing.T) {
	raw, err := json.Marshal(Schema(registry()))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../examples/*.yaml")
	for _, f := range files {
		doc := loadYAMLAsJSON(t, f)
		if errs := validateSchema(schema, doc, "$"); len(errs) > 0 {
			t.Errorf("%s: %s", f, strings.Join(errs, "; "))
		}
	}
	bad := map[string]string{
		"unknown step param": "version: 1\nname: x\nsteps:\n  - {id: a, type: restore, on: all, with: {snapshot: /s, bumpRevison: auto}}\n",
		"unknown step type":  "version: 1\nname: x\nsteps:\n  - {id: a, type: nope}\n",
		"unknown top key":    "version: 1\nname: x\nstepz: []\nsteps: []\n",
		"missing name":       "version: 1\nsteps: []\n",
	}
	for name, src := range bad {
		var v any
		if err := yaml.Unmarshal([]byte(src), &v); err != nil {
			t.Fatal(err)
		}
		if errs := validateSchema(schema, toJSON(t, v), "$"); len(errs) == 0 {
			t.Errorf("schema accepts a plan with %s", name)
		}
	}
}

func loadYAMLAsJSON(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return toJSON(t, v)
}

func toJSON(t *testing.T, v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	json.Unmarshal(b, &out)
	return out
}

// validateSchema supports type, properties, additionalProperties, required,
// enum, const, items, oneOf, allOf and if/then, pattern.
func validateSchema(s map[string]any, v any, at string) []string {
	var errs []string
	if typ, ok := s["type"].(string); ok && !isType(v, typ) {
		return []string{fmt.Sprintf("%s: want %s", at, typ)}
	}
	if enum, ok := s["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			if e == v {
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Sprintf("%s: %v not in enum", at, v))
		}
	}
	if c, ok := s["const"]; ok && c != v {
		errs = append(errs, fmt.Sprintf("%s: want %v", at, c))
	}
	if p, ok := s["pattern"].(string); ok {
		if str, ok := v.(string); ok && !regexp.MustCompile(p).MatchString(str) {
			errs = append(errs, fmt.Sprintf("%s: %q does not match %s", at, str, p))
		}
	}
	if obj, ok := v.(map[string]any); ok {
		props, _ := s["properties"].(map[string]any)
		for k, val := range obj {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, validateSchema(ps, val, at+"."+k)...)
			} else if ap, ok := s["additionalProperties"]; ok {
				if ap == false {
					errs = append(errs, fmt.Sprintf("%s: unknown key %q", at, k))
				} else if aps, ok := ap.(map[string]any); ok {
					errs = append(errs, validateSchema(aps, val, at+"."+k)...)
				}
			}
		}
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, ok := obj[r.(string)]; !ok {
					errs = append(errs, fmt.Sprintf("%s: missing %s", at, r))
				}
			}
		}
	}
	if arr, ok := v.([]any); ok {
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range arr {
				errs = append(errs, validateSchema(items, e, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	}
	if one, ok := s["oneOf"].([]any); ok {
		n := 0
		for _, o := range one {
			if len(validateSchema(o.(map[string]any), v, at)) == 0 {
				n++
			}
		}
		if n != 1 {
			errs = append(errs, fmt.Sprintf("%s: matches %d of oneOf", at, n))
		}
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, a := range all {
			am := a.(map[string]any)
			if cond, ok := am["if"].(map[string]any); ok {
				if len(validateSchema(cond, v, at)) == 0 {
					errs = append(errs, validateSchema(am["then"].(map[string]any), v, at)...)
				}
				continue
			}
			errs = append(errs, validateSchema(am, v, at)...)
		}
	}
	return errs
}

func isType(v any, typ string) bool {
	switch typ {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "integer":
		f, ok := v.(float64)
		return ok && f == float64(int64(f))
	}
	return true
}
