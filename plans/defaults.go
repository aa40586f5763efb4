package plans

import (
	"fmt"
	"reflect"
	"strconv"

	"gopkg.in/yaml.v3"
)

// SetDefaults gives every field of the struct v points to that carries a
// `default:"..."` tag its default, and does the same inside nested struct
// values (a pointer field stays nil: an absent section is absent). It is the
// one place the default tags are applied: the [Decoder] calls it for every
// key a mapping leaves out, and callers call it for a section or a step's
// parameters that are absent altogether. It panics on a tag that does not
// parse as its field's type: that is a programming error, caught by the
// tests that decode every type.
func SetDefaults(v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("plans.SetDefaults: %T is not a pointer to a struct", v))
	}
	setDefaults(rv.Elem(), nil)
}

// setDefaults applies the defaults of struct v's fields whose key is not in
// present (the keys the YAML mapping had).
func setDefaults(v reflect.Value, present map[string]bool) {
	for _, f := range FieldsOf(v.Type()) {
		if present[f.Key] {
			continue
		}
		fv := v.Field(f.Index)
		if f.Default != "" {
			if err := setFromTag(fv, f.Default); err != nil {
				panic(fmt.Sprintf("plans: bad default tag of %s.%s: %v", v.Type(), f.Key, err))
			}
			continue
		}
		if fv.Kind() == reflect.Struct && fv.Type() != posType && fv.Type() != nodeType {
			setDefaults(fv, nil)
		}
	}
}

// setFromTag sets v (still zero) to the default written in a struct tag.
func setFromTag(v reflect.Value, tag string) error {
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecIf) {
		return v.Addr().Interface().(NodeDecoder).DecodeYAMLNode(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: tag})
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(tag)
	case reflect.Bool:
		b, err := strconv.ParseBool(tag)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, err := strconv.ParseInt(tag, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		i, err := strconv.ParseUint(tag, 10, 64)
		if err != nil {
			return err
		}
		v.SetUint(i)
	default:
		return fmt.Errorf("no default for a %s", v.Type())
	}
	return nil
}

// DefaultOf returns the default tag of the field with YAML key key of the
// struct type of v, or "" when it has none; it panics on an unknown key.
// Code that needs a default as a value (a message, a rule) reads it here
// instead of repeating it.
func DefaultOf(v any, key string) string {
	for _, f := range FieldsOf(reflect.TypeOf(v)) {
		if f.Key == key {
			return f.Default
		}
	}
	panic(fmt.Sprintf("plans.DefaultOf: %T has no key %q", v, key))
}
