package discovery

import (
	"reflect"
	"strings"
)

// structFields is what stale detection needs to know about a struct type:
// the msgpack names of the fields a current producer always writes.
//
// A field is required unless it is tagged omitempty (a current producer may
// leave it out) or skipped ("-"). Embedded structs, and fields tagged
// ",inline", contribute their own fields, as msgpack encodes them inline.
// Only the top level is checked: a nested struct's fields are not.
type structFields struct {
	required []string
	index    map[string]int // name -> position in required
	// checkable is false for types whose values are not msgpack maps (not
	// a struct, or a struct encoded as an array): they are never stale.
	checkable bool
}

func newStructFields(t reflect.Type) *structFields {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	sf := &structFields{index: map[string]int{}}
	if t.Kind() != reflect.Struct {
		return sf
	}
	sf.checkable = true
	sf.collect(t, map[reflect.Type]bool{})
	return sf
}

func (sf *structFields) collect(t reflect.Type, seen map[reflect.Type]bool) {
	if seen[t] {
		return
	}
	seen[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("msgpack")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Name == "_msgpack" {
			if hasOpt(opts, "as_array") || hasOpt(opts, "asArray") {
				sf.checkable = false
			}
			continue
		}
		if tag == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		inline := hasOpt(opts, "inline") || (f.Anonymous && name == "" && !hasOpt(opts, "noinline"))
		if inline && ft.Kind() == reflect.Struct {
			sf.collect(ft, seen)
			continue
		}
		if !f.IsExported() || hasOpt(opts, "omitempty") {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := sf.index[name]; !dup {
			sf.index[name] = len(sf.required)
			sf.required = append(sf.required, name)
		}
	}
}

func hasOpt(opts, want string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// missingFields returns the required fields that the msgpack value b lacks,
// reading only the top level of the map (see mapKeys). A well-formed value
// that is not a map lacks nothing: it is not stale (if it does not fit the
// struct, decoding it says so). A malformed value is an error.
func (sf *structFields) missingFields(b []byte) ([]string, error) {
	var present []bool
	if sf.checkable {
		present = make([]bool, len(sf.required))
	}
	isMap, err := mapKeys(b, func(k []byte) {
		if i, ok := sf.index[string(k)]; ok && present != nil {
			present[i] = true
		}
	})
	if err != nil || !isMap || !sf.checkable {
		return nil, err
	}
	var missing []string
	for i, ok := range present {
		if !ok {
			missing = append(missing, sf.required[i])
		}
	}
	return missing, nil
}
