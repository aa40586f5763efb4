package engine

import (
	"reflect"

	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// Schema returns a JSON Schema (draft 2020-12) for plan files, generated from
// the same Go definitions the decoder uses, with each step type's with:
// parameters selected by its type.
func Schema(reg map[string]*steps.Type) map[string]any {
	root := schemaOf(reflect.TypeOf(plans.Plan{}))
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["title"] = "etcd-rescue plan"
	props := root["properties"].(map[string]any)
	stepSchema := props["steps"].(map[string]any)["items"].(map[string]any)
	stepProps := stepSchema["properties"].(map[string]any)
	names := steps.Names(reg)
	stepProps["type"] = map[string]any{"type": "string", "enum": names, "description": "step type (etcd-rescue steps)"}
	var cases []any
	for _, n := range names {
		with := schemaOf(reflect.TypeOf(reg[n].New()))
		cases = append(cases, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"type": map[string]any{"const": n}}, "required": []string{"type"}},
			"then": map[string]any{"properties": map[string]any{"with": with}},
		})
	}
	stepSchema["allOf"] = cases
	return root
}

var (
	durationType = reflect.TypeOf(plans.Duration(0))
	stringsType  = reflect.TypeOf(plans.Strings(nil))
)

func schemaOf(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case durationType:
		return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}
	case stringsType:
		return map[string]any{"oneOf": []any{
			map[string]any{"type": "string"},
			map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
		}}
	}
	switch t.Kind() {
	case reflect.Struct:
		if t.Name() == "Node" { // with: before the step type is known
			return map[string]any{"type": "object"}
		}
		props := map[string]any{}
		var req []string
		for _, f := range plans.FieldsOf(t) {
			s := schemaOf(f.Type)
			if f.Doc != "" {
				s["description"] = f.Doc
			}
			if len(f.Enum) > 0 {
				s["enum"] = f.Enum
			}
			props[f.Key] = s
			if f.Required {
				req = append(req, f.Key)
			}
		}
		out := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(req) > 0 {
			out["required"] = req
		}
		return out
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem())}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32:
		return map[string]any{"type": "integer"}
	}
	return map[string]any{}
}
