// Package config reads qfetch's QFETCH_* environment into plain structs for the
// cmd/* mains, and holds the Secret type that never prints its value (I7).
//
// A binary declares one spec struct composed of the sections here, named so
// the variables match design.md's table:
//
//	type spec struct {
//		Qualys config.Qualys // QFETCH_QUALYS_*
//		NATS   config.NATS   // QFETCH_NATS_*
//		S3     config.S3     // QFETCH_S3_*
//		Log    config.Log    // QFETCH_LOG_*
//		config.Fleet         // embedded: QFETCH_BATCH_SIZE, QFETCH_MAX_IN_FLIGHT
//	}
//	err := config.Load(config.Prefix, &s)
//
// Field tags follow envconfig (envconfig, split_words, ignored, default,
// required, desc) and the names come out exactly as envconfig.Process would
// make them; a test holds the two together. Load does its own reading,
// because envconfig v1.4.0 stops at the first problem, lets an empty variable
// override a default, quotes raw values (secrets too) in its errors, and
// silently falls back to the unprefixed envconfig tag (reading URL when
// QFETCH_QUALYS_URL is unset).
package config

import (
	"encoding"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/qfetch/qfetch/internal/logging"
)

// Prefix is the prefix of every qfetch variable.
const Prefix = "QFETCH"

// ErrRequired marks a missing value. Load adds "(or set NAME_FILE)" to it
// for Secret fields.
var ErrRequired = errors.New("required")

// FieldError is a Validate method's complaint about one field. Field is the
// Go field path from the struct being validated ("URL", "Qualys.URL");
// [Load] reports it under the field's environment variable.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, err error) error { return &FieldError{Field: field, Err: err} }

// VarError is one problem [Load] found, under the variable's name.
type VarError struct {
	Var string
	Err error
}

func (e *VarError) Error() string { return e.Var + ": " + e.Err.Error() }
func (e *VarError) Unwrap() error { return e.Err }

// Var describes one variable a spec reads, for help text and tests.
type Var struct {
	Name     string // QFETCH_QUALYS_URL
	Field    string // Go path: Qualys.URL
	Type     string // Go type of the field
	Default  string
	Required bool
	Secret   bool // NAME_FILE may be given instead of NAME
	Desc     string
}

// Vars lists the variables spec (a pointer to a struct) reads, in field
// order. It does not read the environment.
func Vars(prefix string, spec any) ([]Var, error) {
	w, err := walkSpec(prefix, spec)
	if err != nil {
		return nil, err
	}
	out := make([]Var, 0, len(w.fields))
	for _, f := range w.fields {
		out = append(out, Var{Name: f.key, Field: f.path, Type: f.v.Type().String(),
			Default: f.def, Required: f.required, Secret: f.secret, Desc: f.desc})
	}
	return out, nil
}

// Unknown lists the non-empty variables in the environment that start with
// prefix_ but that spec does not read — usually a typo, worth a warning at start. A
// ConfigMap shared between binaries also shows up here, so it is not an
// error.
func Unknown(prefix string, spec any) ([]string, error) {
	w, err := walkSpec(prefix, spec)
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool)
	for _, f := range w.fields {
		known[f.key] = true
		if f.secret {
			known[f.key+"_FILE"] = true
		}
	}
	p := strings.ToUpper(prefix) + "_"
	var out []string
	for _, kv := range os.Environ() {
		name, val, _ := strings.Cut(kv, "=")
		if val != "" && strings.HasPrefix(name, p) && !known[name] {
			out = append(out, name)
		}
	}
	return out, nil
}

// validator is what Load calls after filling a struct.
type validator interface{ Validate() error }

// Load fills spec (a pointer to a struct) from the environment:
//
//   - NAME unset or set to "" leaves the field at its default tag or zero
//     value; an empty variable never overrides a default.
//   - A Secret field may come from NAME_FILE instead: the file's content,
//     less one trailing "\n" or "\r\n". Both set is an error; so is an
//     unreadable or empty file.
//   - A Secret shorter than [logging.MinSecretLen] characters is refused
//     (its minlen tag may lower that for a key that only names itself, as
//     an S3 access key ID does): scrubbing cannot hide a short secret
//     without mangling text and so pointing at it. Every Secret read, and
//     the credentials in HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, are given
//     to [logging.Hold], so that no log line or scrubbed error shows them
//     in any encoding (I7).
//   - Then Validate is called on every struct in spec that has one,
//     innermost first; each Validate checks only its own fields.
//
// All problems come back together (errors.Join of *VarError and whatever
// Validate returned), one line each, naming the variable and never a
// secret's value.
func Load(prefix string, spec any) error {
	w, err := walkSpec(prefix, spec)
	if err != nil {
		return err
	}
	holdProxyCredentials()
	var errs []error
	bad := make(map[string]bool) // variables already reported
	report := func(name string, err error) {
		bad[name] = true
		errs = append(errs, &VarError{Var: name, Err: err})
	}
	for _, f := range w.fields {
		if err := f.load(); err != nil {
			var ve *VarError
			if errors.As(err, &ve) {
				// A bad NAME_FILE leaves NAME empty; "NAME: required" would
				// only repeat it.
				bad[f.key] = true
				report(ve.Var, ve.Err)
			} else {
				report(f.key, err)
			}
		}
	}
	seen := make(map[string]bool)
	for _, s := range w.structs {
		v, ok := s.v.Addr().Interface().(validator)
		if !ok {
			continue
		}
		for _, e := range flatten(v.Validate()) {
			var fe *FieldError
			if errors.As(e, &fe) {
				if f, ok := w.byPath[join(s.path, fe.Field)]; ok {
					if bad[f.key] {
						continue // one complaint per variable
					}
					e = &VarError{Var: f.key, Err: f.hint(fe.Err)}
				}
			}
			// A section's Validate is promoted to a struct embedding it, so
			// the same complaint can come twice.
			if !seen[e.Error()] {
				seen[e.Error()] = true
				errs = append(errs, e)
			}
		}
	}
	return errors.Join(errs...)
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

type field struct {
	key      string
	path     string
	v        reflect.Value
	def      string
	required bool
	secret   bool
	minLen   int // of a secret, in characters
	desc     string
}

type structInfo struct {
	path string
	v    reflect.Value
}

type walked struct {
	fields  []*field
	byPath  map[string]*field
	structs []structInfo // innermost first
}

var secretType = reflect.TypeFor[Secret]()

func walkSpec(prefix string, spec any) (*walked, error) {
	v := reflect.ValueOf(spec)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("config: spec must be a pointer to a struct, got %T", spec)
	}
	w := &walked{byPath: make(map[string]*field)}
	w.walk(prefix, v.Elem(), "", nil)
	return w, nil
}

var (
	gatherRE  = regexp.MustCompile("([^A-Z]+|[A-Z]+[^A-Z]+|[A-Z]+)")
	acronymRE = regexp.MustCompile("([A-Z]+)([A-Z][^A-Z]+)")
)

// walk mirrors envconfig's gatherInfo (v1.4.0) so names match it exactly.
// aliases are the extra paths an embedded struct's fields are reachable by.
func (w *walked) walk(prefix string, s reflect.Value, path string, aliases []string) {
	t := s.Type()
	for i := range s.NumField() {
		f, sf := s.Field(i), t.Field(i)
		if !f.CanSet() || isTrue(sf.Tag.Get("ignored")) {
			continue
		}
		for f.Kind() == reflect.Pointer {
			if f.IsNil() {
				if f.Type().Elem().Kind() != reflect.Struct {
					break
				}
				f.Set(reflect.New(f.Type().Elem()))
			}
			f = f.Elem()
		}
		key := sf.Name
		if isTrue(sf.Tag.Get("split_words")) {
			var words []string
			for _, m := range gatherRE.FindAllStringSubmatch(sf.Name, -1) {
				if a := acronymRE.FindStringSubmatch(m[0]); len(a) == 3 {
					words = append(words, a[1], a[2])
				} else {
					words = append(words, m[0])
				}
			}
			if len(words) > 0 {
				key = strings.Join(words, "_")
			}
		}
		if alt := sf.Tag.Get("envconfig"); alt != "" {
			key = alt
		}
		if prefix != "" {
			key = prefix + "_" + key
		}
		key = strings.ToUpper(key)

		fpath := join(path, sf.Name)
		var faliases []string
		for _, a := range aliases {
			faliases = append(faliases, join(a, sf.Name))
		}
		if sf.Anonymous {
			// Promoted fields answer to the outer path too.
			faliases = append(faliases, path)
			faliases = append(faliases, aliases...)
		}
		if f.Kind() == reflect.Struct && !unmarshals(f) {
			inner := key
			if sf.Anonymous {
				inner = prefix
			}
			w.walk(inner, f, fpath, faliases)
			continue
		}
		fd := &field{key: key, path: fpath, v: f, def: sf.Tag.Get("default"),
			required: isTrue(sf.Tag.Get("required")), secret: f.Type() == secretType, desc: sf.Tag.Get("desc")}
		if fd.secret {
			fd.minLen = logging.MinSecretLen
			if n, err := strconv.Atoi(sf.Tag.Get("minlen")); err == nil {
				fd.minLen = n
			}
		}
		w.fields = append(w.fields, fd)
		w.byPath[fpath] = fd
		if sf.Anonymous {
			continue
		}
		for _, a := range aliases {
			w.byPath[join(a, sf.Name)] = fd
		}
	}
	w.structs = append(w.structs, structInfo{path: path, v: s})
}

func isTrue(s string) bool {
	b, _ := strconv.ParseBool(s)
	return b
}

// unmarshals reports a struct that parses itself (time.Time, say) and is
// therefore one variable, not a section.
func unmarshals(v reflect.Value) bool {
	if !v.CanAddr() {
		return false
	}
	switch v.Addr().Interface().(type) {
	case encoding.TextUnmarshaler, encoding.BinaryUnmarshaler, setter, decoder:
		return true
	}
	return false
}

// setter and decoder are envconfig's own parsing interfaces.
type setter interface{ Set(string) error }
type decoder interface{ Decode(string) error }

// secretFileLimit caps a _FILE read; a secret is never this big, a wrong
// path (a log, an image) might be.
const secretFileLimit = 64 << 10

// load reads the field's variable(s) and sets the field.
func (f *field) load() error {
	val := os.Getenv(f.key) // "" is unset
	if f.secret {
		fileVar := f.key + "_FILE"
		if p := os.Getenv(fileVar); p != "" {
			if val != "" {
				return fmt.Errorf("set either %s or %s, not both", f.key, fileVar)
			}
			s, err := readSecretFile(p)
			if err != nil {
				return &VarError{Var: fileVar, Err: err}
			}
			val = s
		}
	}
	if val == "" {
		val = f.def
	}
	if val == "" {
		if f.required {
			return f.hint(ErrRequired)
		}
		return nil
	}
	if f.secret {
		if utf8.RuneCountInString(val) < f.minLen {
			// The length is not told either: it narrows a guess.
			return fmt.Errorf("is shorter than %d characters; a shorter secret cannot be kept out of logs safely", f.minLen)
		}
		logging.Hold(val)
	}
	if err := setValue(f.v, val); err != nil {
		if f.secret || logging.SecretKey(f.key) {
			return err
		}
		return fmt.Errorf("%w, got %s", err, quoteValue(val))
	}
	return nil
}

// proxyVars are the variables net/http's ProxyFromEnvironment reads (and
// ALL_PROXY, which other tools do), in the case variants it accepts.
var proxyVars = []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"}

// holdProxyCredentials hands the userinfo of the proxy URLs to the
// scrubber: net/http sends it as Proxy-Authorization, and a proxy's error
// page or a dial error may echo either form. A proxy password is not
// qfetch's to refuse when short; the scrubber hides a short one as a whole
// token.
func holdProxyCredentials() {
	for _, name := range proxyVars {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			continue
		}
		if !strings.Contains(v, "://") {
			v = "http://" + v // as ProxyFromEnvironment reads it
		}
		u, err := url.Parse(v)
		if err != nil || u.User == nil {
			continue
		}
		if pass, ok := u.User.Password(); ok {
			logging.HoldBasic(u.User.Username(), pass)
			logging.Hold(strings.TrimPrefix(u.User.String(), u.User.Username()+":"))
		} else {
			// http://TOKEN@proxy: a user name alone is the credential.
			logging.Hold(u.User.Username(), u.User.String())
		}
	}
}

// hint adds the _FILE alternative to a missing secret.
func (f *field) hint(err error) error {
	if f.secret && errors.Is(err, ErrRequired) {
		return fmt.Errorf("%w (or set %s_FILE)", err, f.key)
	}
	return err
}

func readSecretFile(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", unopened(path), pathReason(err))
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, secretFileLimit+1))
	if err != nil {
		return "", fmt.Errorf("cannot read %q: %w", path, pathReason(err))
	}
	if len(b) > secretFileLimit {
		return "", fmt.Errorf("%q is larger than %d KiB; is it the right file?", path, secretFileLimit>>10)
	}
	s := string(b)
	if t, ok := strings.CutSuffix(s, "\r\n"); ok {
		s = t
	} else {
		s = strings.TrimSuffix(s, "\n")
	}
	if s == "" {
		return "", fmt.Errorf("%q is empty", path)
	}
	return s, nil
}

// pathReason drops the path an *os.PathError repeats.
// unopened quotes a path that could not be opened only when its directory
// exists: a value that names no directory may be the credential itself,
// pasted where its file's path belongs (a seed in QFETCH_NATS_NKEY_FILE),
// and must not reach the error line.
func unopened(path string) string {
	if dir := filepath.Dir(path); dir != "." {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return strconv.Quote(path)
		}
	}
	return "the file it names (not shown: it is no path in an existing directory, and may be the secret itself)"
}

func pathReason(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// quoteValue echoes a bad non-secret value: scrubbed and kept short.
func quoteValue(s string) string {
	s = logging.Scrub(s)
	if r := []rune(s); len(r) > 64 {
		s = string(r[:64]) + "…"
	}
	return strconv.Quote(s)
}

var durationType = reflect.TypeFor[time.Duration]()

// setValue parses s into v the way envconfig does for the kinds qfetch uses.
func setValue(v reflect.Value, s string) error {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if v.CanAddr() {
		switch p := v.Addr().Interface().(type) {
		case decoder:
			return p.Decode(s)
		case setter:
			return p.Set(s)
		case encoding.TextUnmarshaler:
			return p.UnmarshalText([]byte(s))
		}
	}
	if v.Kind() != reflect.String {
		s = strings.TrimSpace(s)
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.Type() == durationType {
			d, err := time.ParseDuration(s)
			if err != nil {
				return errors.New("not a duration (like 30s, 10m or 1h30m)")
			}
			v.SetInt(int64(d))
			return nil
		}
		n, err := strconv.ParseInt(s, 0, v.Type().Bits())
		if err != nil {
			return numErr(err, "an integer")
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 0, v.Type().Bits())
		if err != nil {
			return numErr(err, "a non-negative integer")
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return numErr(err, "a number")
		}
		v.SetFloat(n)
	default:
		return fmt.Errorf("config: field type %s is not supported", v.Type())
	}
	return nil
}

func numErr(err error, what string) error {
	if errors.Is(err, strconv.ErrRange) {
		return errors.New("out of range")
	}
	return errors.New("not " + what)
}
