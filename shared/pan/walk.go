package pan

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/billfn/billfn/shared/problem"
)

// walker checks a Go value as Checker.Value checked its JSON (json.Marshal,
// decoded with UseNumber, then find), with the same verdicts, in the same
// order, without the round trip: strings, integers and keys are read where
// they are, and only what encoding/json writes in its own way (a
// Marshaler's or TextMarshaler's member, a float, a []byte, a json.Number)
// is marshalled, alone. A struct whose JSON members encoding/json decides
// by rules the walker does not follow (an embedded field, a name two
// fields share, a ",string" or "omitzero" option) is marshalled alone too;
// a value too deep (a cycle) gives up, and the caller falls back on the
// round trip. When json.Marshal would have failed (NaN, a channel, a
// Marshaler's error), err is set and nothing is found, as before.
type walker struct {
	path  []byte // the JSON pointer of the value being walked (no "#/")
	out   []problem.FieldError
	probe bool // only tell whether anything is found (found), naming nothing
	found bool
	err   error
	depth int
}

// errTooDeep: the walker gives up; the caller marshals instead.
var errTooDeep = errors.New("pan: value too deep")

const maxDepth = 64

func (w *walker) hit(detail string) {
	w.found = true
	if !w.probe {
		w.out = append(w.out, problem.Field(string(w.path), detail))
	}
}

// push appends a reference token to the path; the caller restores it.
func (w *walker) push(token string) int {
	n := len(w.path)
	if n > 0 {
		w.path = append(w.path, '/')
	}
	w.path = appendEscaped(w.path, token)
	return n
}

func appendEscaped(b []byte, token string) []byte {
	if !strings.ContainsAny(token, "~/") {
		return append(b, token...)
	}
	return append(b, Escape(token)...)
}

var (
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	numberType        = reflect.TypeFor[json.Number]()
	mapOfStrings      = reflect.TypeFor[map[string]string]()
)

func (w *walker) text(s string) {
	if !utf8.ValidString(s) {
		s = jsonString(s)
	}
	if Contains(s) {
		w.hit(Detail)
	}
}

// jsonString is s as JSON carries it: each byte of an invalid UTF-8
// sequence becomes U+FFFD.
func jsonString(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

func (w *walker) walk(v reflect.Value) {
	if w.err != nil || (w.probe && w.found) {
		return
	}
	if !v.IsValid() {
		return // null
	}
	t := v.Type()
	if t.Implements(marshalerType) {
		if v.Kind() == reflect.Pointer && v.IsNil() {
			return // null
		}
		if !v.CanInterface() {
			w.err = errTooDeep // unexported: let encoding/json decide
			return
		}
		if v.Kind() == reflect.Interface && v.IsNil() {
			return
		}
		x := v
		if v.CanAddr() && v.Kind() != reflect.Interface {
			x = v.Addr() // its method set holds v's; a pointer is not boxed
		}
		b, err := x.Interface().(json.Marshaler).MarshalJSON()
		if err == nil && !json.Valid(b) {
			err = errors.New("pan: a Marshaler wrote invalid JSON")
		}
		if err != nil {
			w.err = err
			return
		}
		w.raw(b)
		return
	}
	if t.Kind() != reflect.Pointer && v.CanAddr() && reflect.PointerTo(t).Implements(marshalerType) {
		w.walk(v.Addr())
		return
	}
	if t.Implements(textMarshalerType) || (t.Kind() != reflect.Pointer && v.CanAddr() && reflect.PointerTo(t).Implements(textMarshalerType)) || t == numberType {
		w.marshal(v)
		return
	}
	w.depth++
	defer func() { w.depth-- }()
	if w.depth > maxDepth {
		w.err = errTooDeep
		return
	}
	switch t.Kind() {
	case reflect.String:
		w.text(v.String())
	case reflect.Bool:
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var buf [24]byte
		if Contains(string(strconv.AppendInt(buf[:0], v.Int(), 10))) {
			w.hit(Detail)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		var buf [24]byte
		if Contains(string(strconv.AppendUint(buf[:0], v.Uint(), 10))) {
			w.hit(Detail)
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			w.walk(v.Elem())
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			w.marshal(v) // base64, or a Marshaler's elements: encoding/json's rules
			return
		}
		if v.IsNil() {
			return
		}
		fallthrough
	case reflect.Array:
		for i := range v.Len() {
			n := w.push(strconv.Itoa(i))
			w.walk(v.Index(i))
			w.path = w.path[:n]
		}
	case reflect.Map:
		w.walkMap(v)
	case reflect.Struct:
		w.walkStruct(v)
	default: // floats (their format), complex numbers, channels, functions: encoding/json's
		w.marshal(v)
	}
}

// walkMap checks a map's keys and values; only when one holds a card
// number are its keys sorted, to name the members in the order find does.
func (w *walker) walkMap(v reflect.Value) {
	if v.IsNil() {
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		w.marshal(v) // int or TextMarshaler keys: encoding/json's
		return
	}
	if v.Type() == mapOfStrings && v.CanInterface() { // metadata: no reflection
		found := false
		for k, s := range v.Interface().(map[string]string) {
			if Contains(k) || Contains(s) || !utf8.ValidString(k) || !utf8.ValidString(s) {
				found = true
				break
			}
		}
		if !found {
			return
		}
	}
	if !w.probe {
		// Is there anything to name? Most maps hold nothing.
		p := walker{probe: true, depth: w.depth}
		p.walkMapUnsorted(v)
		if p.err != nil {
			w.err = p.err
			return
		}
		if !p.found {
			return
		}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		for _, k := range keys {
			w.member(k, v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key())))
		}
		return
	}
	w.walkMapUnsorted(v)
}

func (w *walker) walkMapUnsorted(v reflect.Value) {
	it := v.MapRange()
	for it.Next() {
		if w.err != nil || w.found {
			return
		}
		w.member(it.Key().String(), it.Value())
	}
}

// member checks one member of an object: its key, then its value.
func (w *walker) member(key string, v reflect.Value) {
	if !utf8.ValidString(key) {
		key = jsonString(key)
	}
	if Contains(key) {
		w.hit(keyDetail)
		return
	}
	n := w.push(key)
	w.walk(v)
	w.path = w.path[:n]
}

func (w *walker) walkStruct(v reflect.Value) {
	fs := fieldsOf(v.Type())
	if fs == nil {
		w.marshal(v)
		return
	}
	for _, f := range fs {
		if w.err != nil || (w.probe && w.found) {
			return
		}
		fv := v.Field(f.index)
		if f.omitEmpty && isEmpty(fv) {
			continue
		}
		if f.keyHit {
			w.hit(keyDetail)
			continue
		}
		n := w.push(f.name)
		w.walk(fv)
		w.path = w.path[:n]
	}
}

// isEmpty is encoding/json's omitempty test.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

// marshal checks v as encoding/json writes it, alone.
func (w *walker) marshal(v reflect.Value) {
	if !v.CanInterface() {
		w.err = errTooDeep
		return
	}
	x := v
	if v.CanAddr() {
		x = v.Addr() // addressable, as encoding/json found it: its pointer methods count
	}
	b, err := json.Marshal(x.Interface())
	if err != nil {
		w.err = err
		return
	}
	w.raw(b)
}

// raw checks a member's JSON as find checks it decoded: a string without
// escapes or a number directly, anything else decoded.
func (w *walker) raw(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return
	}
	switch c := b[0]; {
	case c == 'n' || c == 't' || c == 'f':
		return
	case c == '"' && bytes.IndexByte(b, '\\') < 0 && utf8.Valid(b):
		if Contains(string(b[1 : len(b)-1])) {
			w.hit(Detail)
		}
		return
	case c == '-' || (c >= '0' && c <= '9'):
		if Contains(string(b)) {
			w.hit(Detail)
		}
		return
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		w.err = err
		return
	}
	if fields := find(string(w.path), x, nil); len(fields) > 0 {
		w.found = true
		if !w.probe {
			w.out = append(w.out, fields...)
		}
	}
}

// field is a struct field as a JSON member.
type field struct {
	name      string
	index     int
	omitEmpty bool
	keyHit    bool // the name holds a card number
}

var fieldCache sync.Map // reflect.Type -> []field (nil: marshal the struct)

// fieldsOf is t's JSON members sorted by name, as find visits them, or
// nil when encoding/json's rules for them are not the walker's.
func fieldsOf(t reflect.Type) []field {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]field)
	}
	fs := []field{}
	seen := map[string]bool{}
	for i := range t.NumField() {
		sf := t.Field(i)
		if sf.Anonymous {
			fs = nil // embedded: promoted fields, conflicts
			break
		}
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if !validTag(name) {
			name = ""
		}
		if name == "" {
			name = sf.Name
		}
		f := field{name: name, index: i, keyHit: Contains(name)}
		for opts != "" {
			var o string
			o, opts, _ = strings.Cut(opts, ",")
			switch o {
			case "omitempty":
				f.omitEmpty = true
			case "string", "omitzero":
				fs = nil
			}
		}
		if fs == nil || seen[name] {
			fs = nil
			break
		}
		seen[name] = true
		fs = append(fs, f)
	}
	if fs != nil {
		sort.Slice(fs, func(i, j int) bool { return fs[i].name < fs[j].name })
	}
	fieldCache.Store(t, fs)
	return fs
}

// validTag is encoding/json's isValidTag.
func validTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}
