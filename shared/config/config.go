// Package config loads a function's configuration from the environment with
// envconfig, and its secrets from files the platform mounts.
//
// A field tagged `secret:"<name>"` is read from the file <SecretsDir>/<name>
// (OpenFaaS mounts secrets at /var/openfaas/secrets/<name>; Knative and plain
// Kubernetes can mount a Secret volume at the same path), falling back to its
// environment variable when the file does not exist. Surrounding whitespace
// in a secret file is trimmed. A secret's value is kept in the struct only:
// Load never copies anything into the process environment, where
// /proc/<pid>/environ and every child process would see it.
//
// Load checks every field before failing, so one start-up error names every
// missing or invalid variable at once.
package config

import (
	"encoding"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// DefaultSecretsDir is where OpenFaaS mounts secrets.
const DefaultSecretsDir = "/var/openfaas/secrets"

// SecretsDirEnv overrides DefaultSecretsDir.
const SecretsDirEnv = "SECRETS_DIR"

// SecretsDir is the directory secret files are read from.
func SecretsDir() string {
	if d := os.Getenv(SecretsDirEnv); d != "" {
		return d
	}
	return DefaultSecretsDir
}

// Secret reads one secret: the file <SecretsDir>/<name>, else the
// environment variable env. ok is false when neither is set.
func Secret(name, env string) (value string, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(SecretsDir(), name))
	switch {
	case err == nil:
		return strings.TrimSpace(string(b)), true, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", false, fmt.Errorf("secret %s: %w", name, err)
	}
	v, ok := os.LookupEnv(env)
	return v, ok, nil
}

// unsetVariable names the variable envconfig is pointed at when a value was
// already read elsewhere (a secret file, a lower-case variable); nothing sets
// it, so envconfig falls back to the value handed over as the default.
const unsetVariable = "_BILLFN_CONFIG_VALUE_IN_MEMORY_"

// Load fills spec (a pointer to a struct) from the environment. Variable
// names are envconfig's: the `envconfig` tag, or the upper-cased field name,
// without a prefix. A tag in lower case names the variable as written;
// its upper-cased form, which envconfig reads, is the fallback.
func Load(spec any) error {
	v := reflect.ValueOf(spec)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: Load needs a pointer to a struct, got %T", spec)
	}
	var problems []string
	if err := loadStruct(v.Elem(), &problems); err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("configuration is invalid:\n  - %s", strings.Join(problems, "\n  - "))
	}
	return nil
}

// loadStruct processes each field on its own, so that every bad field is
// reported, not only the first one envconfig would stop at.
func loadStruct(s reflect.Value, problems *[]string) error {
	t := s.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("ignored") == "true" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && f.Tag.Get("envconfig") == "" && !implementsDecoder(f.Type) {
			if err := loadStruct(s.Field(i), problems); err != nil {
				return err
			}
			continue
		}
		key := f.Tag.Get("envconfig")
		if key == "" {
			key = strings.ToUpper(f.Name)
		}
		// envconfig only looks up the upper-cased name, so a tag written
		// in lower case (the watchdog's read_timeout) is read here, under
		// its own name, and handed over like a secret file's content.
		envKey := strings.ToUpper(key)
		var (
			val string
			ok  bool
		)
		if name := f.Tag.Get("secret"); name != "" {
			var err error
			val, ok, err = Secret(name, key)
			if err != nil {
				*problems = append(*problems, err.Error())
				continue
			}
		} else if key != envKey {
			val, ok = os.LookupEnv(key)
		}
		present := os.Getenv(envKey)
		if ok {
			present = val
		}
		if f.Tag.Get("required") == "true" && f.Tag.Get("default") == "" && present == "" {
			// envconfig accepts a variable set to ""; for a required value
			// that is as good as missing.
			*problems = append(*problems, describe(key, f, errors.New("missing value")))
			continue
		}
		tag := f.Tag
		if ok {
			// The value came from a secret file (or a lower-case variable):
			// hand it to envconfig in memory, as the default of a field
			// whose variable is never set, so decoding and validation stay
			// in envconfig and the value never enters the process
			// environment (/proc/<pid>/environ, child processes).
			tag = reflect.StructTag(fmt.Sprintf(`envconfig:%q default:%q`, unsetVariable, val))
		}
		one := reflect.New(reflect.StructOf([]reflect.StructField{{
			Name: f.Name, Type: f.Type, Tag: tag,
		}}))
		if err := envconfig.Process("", one.Interface()); err != nil {
			*problems = append(*problems, describe(key, f, err))
			continue
		}
		s.Field(i).Set(one.Elem().Field(0))
	}
	return nil
}

// implementsDecoder reports whether envconfig decodes a struct type t from
// one variable (as it does time.Time) instead of recursing into its fields.
func implementsDecoder(t reflect.Type) bool {
	for _, d := range []reflect.Type{
		reflect.TypeFor[envconfig.Decoder](),
		reflect.TypeFor[envconfig.Setter](),
		reflect.TypeFor[encoding.TextUnmarshaler](),
		reflect.TypeFor[encoding.BinaryUnmarshaler](),
	} {
		if t.Implements(d) || reflect.PointerTo(t).Implements(d) {
			return true
		}
	}
	return false
}

func describe(key string, f reflect.StructField, err error) string {
	where := key
	if name := f.Tag.Get("secret"); name != "" {
		where = fmt.Sprintf("%s (or secret file %s)", key, filepath.Join(SecretsDir(), name))
	}
	var pe *envconfig.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: invalid value %q: %v", where, pe.Value, pe.Err)
	}
	if strings.Contains(err.Error(), "missing value") {
		return where + ": required but not set"
	}
	return fmt.Sprintf("%s: %v", where, err)
}

// Duration is a time.Duration that also accepts a bare number of seconds,
// as the OpenFaaS watchdog does for read_timeout and write_timeout ("10s",
// "1m30s" or "10").
type Duration time.Duration

// Decode implements envconfig.Decoder.
func (d *Duration) Decode(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		*d = Duration(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("not a duration (\"10s\") or a number of seconds")
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
